package sfu

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// maxWorkers bounds a pool's shared workers (see Shared).
const maxWorkers = 8

// workerPool has the shared workers (Shared) of a publication's tracks,
// or of one track made by NewTrack alone. Its workers run while it has
// shared subscriptions: the first starts them, and they end when the last
// one leaves, so that no goroutine outlives the viewers it served.
//
// The tracks of a publication share the pool so that a subscriber's
// subscriptions to several of them (a viewer's audio and video, the
// simulcast layers it switches between) can be on one worker (the same
// affinity key): their packets then leave in the order the subscriber
// wrote them, from one batch, and its state stays on one core.
type workerPool struct {
	mu   sync.Mutex
	set  *workerSet        // nil while there are no shared subscriptions
	keys map[any]*affinity // workers by affinity key
}

type affinity struct {
	w    *fanoutWorker
	subs int
}

// workerSet is one run of a pool's workers.
type workerSet struct {
	ws   []*fanoutWorker
	quit chan struct{}
	wg   sync.WaitGroup
}

// stop ends the workers and waits for them. Their subscriptions are gone
// or stopped, so none has packets left to deliver.
func (ws *workerSet) stop() {
	close(ws.quit)
	ws.wg.Wait()
}

// fanoutWorker delivers the packets of the shared subscriptions assigned
// to it (Shared). A packet wakes each worker once instead of each
// subscriber's goroutine: at 200 viewers the per-subscriber wakeups
// (scheduler, channel, park) were a fifth of the server's CPU.
type fanoutWorker struct {
	set  *workerSet
	idx  int
	load int                             // subscriptions assigned; guarded by the pool's mu
	subs atomic.Pointer[[]*subscription] // copy-on-write; written under the pool's mu
	wake chan struct{}
	// batches are the worker's sends of a pass (BatchSubscriber), one per
	// Batcher; only the worker's goroutine touches them.
	batches []workerBatch
}

type workerBatch struct {
	by Batcher
	b  Batch
}

// A Batch collects the sends of one of a publication's shared workers (Shared)
// during a pass over its subscriptions; the worker flushes it at the end
// of the pass, so that the sends of a packet's fan-out leave together,
// from the worker's goroutine.
type Batch interface {
	Flush()
}

// A Batcher makes Batches. Subscribers with the same Batcher share a
// worker's batch.
type Batcher interface {
	NewBatch() Batch
}

// A BatchSubscriber can leave its sends in a worker's Batch: on a shared
// worker, WriteRTPBatch is called instead of WriteRTP when Batcher
// returns one. WriteRTP stays for a subscription of its own.
type BatchSubscriber interface {
	Subscriber
	// Batcher returns what makes this subscriber's batches, nil to have
	// WriteRTP called.
	Batcher() Batcher
	// WriteRTPBatch is WriteRTP with the send left in b, a batch made by
	// Batcher's NewBatch.
	WriteRTPBatch(p *Packet, b Batch) error
}

// batch returns the worker's batch for by.
func (w *fanoutWorker) batch(by Batcher) Batch {
	for _, x := range w.batches {
		if x.by == by {
			return x.b
		}
	}
	b := by.NewBatch()
	w.batches = append(w.batches, workerBatch{by: by, b: b})
	return b
}

func (w *fanoutWorker) flush() {
	for _, x := range w.batches {
		x.b.Flush()
	}
}

func (w *fanoutWorker) wakeUp() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run drains the worker's subscriptions until its set stops. Track.Close
// and unsubscribe stop a subscription before taking it off the worker,
// and a subscription's stop waits for a delivery in progress, so nothing
// is delivered after it.
func (w *fanoutWorker) run() {
	for {
		select {
		case <-w.wake:
		case <-w.set.quit:
			return
		}
		for w.pass() {
		}
	}
}

// pass drains each of the worker's subscriptions once, sends what it left
// in its batches, and reports whether it delivered anything (then more
// may have come meanwhile).
func (w *fanoutWorker) pass() bool {
	subs := w.subs.Load()
	if subs == nil {
		return false
	}
	delivered := false
	for _, s := range *subs {
		if n, _ := s.drain(w); n > 0 {
			delivered = true
		}
	}
	if delivered {
		w.flush()
	}
	return delivered
}

// add puts a shared subscription on a worker: the one its affinity key
// has, else the least loaded, starting the workers if there are none
// (one per core, at most maxWorkers).
func (p *workerPool) add(sub *subscription) {
	p.mu.Lock()
	defer p.mu.Unlock()
	set := p.set
	if set == nil {
		n := min(max(runtime.GOMAXPROCS(0), 1), maxWorkers)
		set = &workerSet{ws: make([]*fanoutWorker, n), quit: make(chan struct{})}
		for i := range set.ws {
			w := &fanoutWorker{set: set, idx: i, wake: make(chan struct{}, 1)}
			set.ws[i] = w
			set.wg.Go(w.run)
		}
		p.set = set
		p.keys = map[any]*affinity{}
	}
	var w *fanoutWorker
	if a := p.keys[sub.affinity]; sub.affinity != nil && a != nil {
		w = a.w
		a.subs++
	} else {
		w = set.ws[0]
		for _, x := range set.ws[1:] {
			if x.load < w.load {
				w = x
			}
		}
		if sub.affinity != nil {
			p.keys[sub.affinity] = &affinity{w: w, subs: 1}
		}
	}
	w.load++
	var list []*subscription
	if old := w.subs.Load(); old != nil {
		list = append(make([]*subscription, 0, len(*old)+1), *old...)
	}
	list = append(list, sub)
	w.subs.Store(&list)
	sub.w = w
}

// remove takes a shared subscription, already stopped, off its worker.
// The last one stops the workers.
func (p *workerPool) remove(sub *subscription) {
	p.mu.Lock()
	w := sub.w
	old := w.subs.Load()
	list := make([]*subscription, 0, len(*old))
	for _, s := range *old {
		if s != sub {
			list = append(list, s)
		}
	}
	if len(list) == len(*old) { // removed before
		p.mu.Unlock()
		return
	}
	w.subs.Store(&list)
	w.load--
	if a := p.keys[sub.affinity]; sub.affinity != nil && a != nil {
		if a.subs--; a.subs == 0 {
			delete(p.keys, sub.affinity)
		}
	}
	var idle *workerSet
	if p.set == w.set && w.set.idle() {
		idle, p.set, p.keys = w.set, nil, nil
	}
	p.mu.Unlock()
	if idle != nil {
		idle.stop()
	}
}

// idle says whether no subscription is left on the set's workers. The
// pool's mu is held.
func (ws *workerSet) idle() bool {
	for _, w := range ws.ws {
		if w.load > 0 {
			return false
		}
	}
	return true
}

// wakeUp wakes the set's workers whose bit is set in mask.
func (ws *workerSet) wakeUp(mask uint32) {
	for i := 0; mask != 0; i++ {
		if mask&1 != 0 {
			ws.ws[i].wakeUp()
		}
		mask >>= 1
	}
}
