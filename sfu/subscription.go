package sfu

import (
	"sync"
	"sync/atomic"
	"time"
)

// subscription is one Subscriber's bounded queue and the goroutine that
// drains it. The track's goroutine only ever enqueues, and drops on overflow.
type subscription struct {
	t   *Track
	sub Subscriber

	mu           sync.Mutex // guards ring, head, tail, waitKeyframe, stopped
	ring         []*Packet
	mask         uint64
	head, tail   uint64 // packets in ring[tail&mask : head&mask]
	waitKeyframe bool
	stopped      bool
	forSwitch    bool // the keyframe request at the start is a switch's (ForSwitch)
	shared       bool // delivered by a pool's worker (Shared)
	affinity     any  // Shared's key
	// after is the newest packet queued from the history (FromRecentKeyframe):
	// the track may still hand it, or an older one, to enqueue.
	after       uint64
	backfillAge time.Duration
	backfilled  func(Backfill)

	// wake is the goroutine's only channel: packets to deliver, or stop.
	// One channel, not a select over two: the goroutine waits on it for
	// nearly every packet, and the two-way select, which locks both
	// channels, was 5 % of the server's CPU at 200 viewers.
	wake chan struct{}
	wg   sync.WaitGroup
	// w, when set, delivers the packets instead of a goroutine of the
	// subscription's own (Shared). deliverMu is held while a packet is
	// delivered, so that stop can wait for it.
	w         *fanoutWorker
	deliverMu sync.Mutex
	bsub      BatchSubscriber // sub, if it is one and shared

	delivered, dropped, writeErrors atomic.Uint64
	lastWarn                        atomic.Int64 // unix nanos of the last overflow warning
}

func newSubscription(t *Track, s Subscriber, opts ...SubscribeOption) *subscription {
	sub := &subscription{
		t:            t,
		sub:          s,
		ring:         make([]*Packet, t.queueSize),
		mask:         uint64(t.queueSize - 1),
		waitKeyframe: t.info.Kind == KindVideo,
		wake:         make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(sub)
	}
	return sub
}

// start starts the subscription's own goroutine; a shared one is on its
// worker's list already (workerPool.add).
func (s *subscription) start() {
	if s.w == nil {
		s.wg.Go(s.run)
	}
}

// overflowWarnEvery rate-limits the overflow warning per subscription.
const overflowWarnEvery = 5 * time.Second

// enqueue runs on the track's goroutine and never blocks. It reports
// whether it queued p; a shared subscription's worker is then for the
// caller to wake.
func (s *subscription) enqueue(p *Packet) bool {
	s.mu.Lock()
	if s.stopped || (s.waitKeyframe && !p.Keyframe) || p.Seq <= s.after {
		s.mu.Unlock()
		return false
	}
	s.waitKeyframe = false
	if s.head-s.tail == uint64(len(s.ring)) {
		// Overflow: the subscriber is too slow. Drop, and restart it at the
		// next keyframe so that its decoder never sees a broken reference.
		if s.t.info.Kind == KindVideo {
			s.waitKeyframe = true
		}
		s.mu.Unlock()
		n := s.dropped.Add(1)
		s.t.dropped.Add(1)
		if s.t.info.Kind == KindVideo {
			s.t.RequestKeyframe()
		}
		now := time.Now().UnixNano()
		if last := s.lastWarn.Load(); now-last > int64(overflowWarnEvery) && s.lastWarn.CompareAndSwap(last, now) {
			s.t.log.Warn("subscriber queue full, dropping packets", "dropped_total", n, "queue", len(s.ring))
		}
		return false
	}
	p.retain()
	s.ring[s.head&s.mask] = p
	s.head++
	s.mu.Unlock()
	if s.w == nil {
		s.wakeUp()
	}
	return true
}

// wakeUp tells the goroutine (or the worker) there are packets to
// deliver, or that it is stopped.
func (s *subscription) wakeUp() {
	if s.w != nil {
		s.w.wakeUp()
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscription) run() {
	for {
		<-s.wake
		if _, stopped := s.drain(nil); stopped {
			return
		}
	}
}

// drain delivers the queued packets and says how many, and whether the
// subscription is stopped. w is the worker delivering them, nil for the
// subscription's own goroutine.
func (s *subscription) drain(w *fanoutWorker) (n int, stopped bool) {
	s.deliverMu.Lock()
	defer s.deliverMu.Unlock()
	var batch Batch // the worker's, for a BatchSubscriber with a Batcher
	if w != nil && s.bsub != nil {
		if by := s.bsub.Batcher(); by != nil {
			batch = w.batch(by)
		}
	}
	for {
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			return n, true
		}
		if s.tail == s.head {
			s.mu.Unlock()
			return n, false
		}
		p := s.ring[s.tail&s.mask]
		s.ring[s.tail&s.mask] = nil
		s.tail++
		s.mu.Unlock()

		var err error
		if batch != nil {
			err = s.bsub.WriteRTPBatch(p, batch)
		} else {
			err = s.sub.WriteRTP(p)
		}
		if err != nil {
			s.writeErrors.Add(1)
		} else {
			s.delivered.Add(1)
		}
		p.Release()
		n++
	}
}

// wait returns once the goroutine has ended, or the worker is done with
// the subscription. stopped is set.
func (s *subscription) wait() {
	if s.w == nil {
		s.wg.Wait()
		return
	}
	s.deliverMu.Lock()
	//nolint:staticcheck // empty critical section: waits for a delivery in progress
	s.deliverMu.Unlock()
}

// stop ends the goroutine, waits for it and releases queued packets.
func (s *subscription) stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		s.wait()
		return
	}
	s.stopped = true
	s.mu.Unlock()
	if s.w == nil {
		s.wakeUp() // it sees stopped when it takes the lock next
	}
	s.wait()
	s.mu.Lock()
	for ; s.tail != s.head; s.tail++ {
		s.ring[s.tail&s.mask].Release()
		s.ring[s.tail&s.mask] = nil
	}
	s.mu.Unlock()
}
