package sfu

import (
	"runtime"
	"sync"
)

// maxWorkers bounds a track's shared workers (see Shared).
const maxWorkers = 8

// fanoutWorker delivers the packets of the track's shared subscriptions
// assigned to it (Shared). A packet wakes each worker once instead of
// each subscriber's goroutine: at 200 viewers the per-subscriber wakeups
// (scheduler, channel, park) were a fifth of the server's CPU.
type fanoutWorker struct {
	t    *Track
	set  *workerSet
	idx  int
	subs int // subscriptions assigned; guarded by t.mu
	wake chan struct{}
	// batches are the worker's sends of a pass (BatchSubscriber), one per
	// Batcher; only the worker's goroutine touches them.
	batches []workerBatch
}

type workerBatch struct {
	by Batcher
	b  Batch
}

// A Batch collects the sends of one of a track's shared workers (Shared)
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

// workerSet is a track's workers while it has shared subscriptions: the
// first starts them, and they end when the last one leaves or the track
// closes, so that no goroutine outlives the viewers it served.
type workerSet struct {
	ws     []*fanoutWorker
	shared int // shared subscriptions; guarded by t.mu
	quit   chan struct{}
	wg     sync.WaitGroup
}

// stop ends the workers and waits for them. Their subscriptions are gone
// or stopped, so none has packets left to deliver.
func (ws *workerSet) stop() {
	close(ws.quit)
	ws.wg.Wait()
}

// run drains the worker's subscriptions until its set stops or the track
// closes. Close stops every subscription after closing done, and a
// subscription's stop waits for a delivery in progress, so nothing is
// delivered after it.
func (w *fanoutWorker) run() {
	for {
		select {
		case <-w.wake:
		case <-w.set.quit:
			return
		case <-w.t.done:
			return
		}
		for w.pass() {
		}
	}
}

// pass drains each of the worker's subscriptions once and reports whether
// it delivered anything (then more may have come meanwhile).
func (w *fanoutWorker) pass() bool {
	subs := w.t.subs.Load()
	if subs == nil {
		return false
	}
	delivered := false
	for _, s := range *subs {
		if s.w == w {
			if n, _ := s.drain(w); n > 0 {
				delivered = true
			}
		}
	}
	if delivered {
		w.flush()
	}
	return delivered
}

// workerLocked assigns a shared subscription the least loaded of the
// track's workers, starting them if there are none: one per core, at most
// maxWorkers. t.mu is held.
func (t *Track) workerLocked() *fanoutWorker {
	set := t.workers
	if set == nil {
		n := min(max(runtime.GOMAXPROCS(0), 1), maxWorkers)
		set = &workerSet{ws: make([]*fanoutWorker, n), quit: make(chan struct{})}
		for i := range set.ws {
			w := &fanoutWorker{t: t, set: set, idx: i, wake: make(chan struct{}, 1)}
			set.ws[i] = w
			set.wg.Go(w.run)
		}
		t.workers = set
	}
	best := set.ws[0]
	for _, w := range set.ws[1:] {
		if w.subs < best.subs {
			best = w
		}
	}
	best.subs++
	set.shared++
	return best
}

// releaseWorkerLocked takes a leaving shared subscription off its worker.
// When it was the last, it returns the set, for the caller to stop once
// t.mu is released. t.mu is held.
func (t *Track) releaseWorkerLocked(w *fanoutWorker) *workerSet {
	w.subs--
	w.set.shared--
	if w.set.shared > 0 || t.workers != w.set {
		return nil
	}
	t.workers = nil
	return w.set
}

// wakeWorkers wakes the workers whose bit is set in mask.
func wakeWorkers(ws *[maxWorkers]*fanoutWorker, mask uint32) {
	for i := 0; mask != 0; i++ {
		if mask&1 != 0 {
			ws[i].wakeUp()
		}
		mask >>= 1
	}
}
