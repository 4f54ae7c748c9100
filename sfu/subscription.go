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

func (s *subscription) start() { s.wg.Go(s.run) }

// overflowWarnEvery rate-limits the overflow warning per subscription.
const overflowWarnEvery = 5 * time.Second

// enqueue runs on the track's goroutine and never blocks.
func (s *subscription) enqueue(p *Packet) {
	s.mu.Lock()
	if s.stopped || (s.waitKeyframe && !p.Keyframe) || p.Seq <= s.after {
		s.mu.Unlock()
		return
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
		return
	}
	p.retain()
	s.ring[s.head&s.mask] = p
	s.head++
	s.mu.Unlock()
	s.wakeUp()
}

// wakeUp tells the goroutine there are packets to deliver, or that it is
// stopped.
func (s *subscription) wakeUp() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscription) run() {
	for {
		<-s.wake
		for {
			s.mu.Lock()
			if s.stopped {
				s.mu.Unlock()
				return
			}
			if s.tail == s.head {
				s.mu.Unlock()
				break
			}
			p := s.ring[s.tail&s.mask]
			s.ring[s.tail&s.mask] = nil
			s.tail++
			s.mu.Unlock()

			if err := s.sub.WriteRTP(p); err != nil {
				s.writeErrors.Add(1)
			} else {
				s.delivered.Add(1)
			}
			p.Release()
		}
	}
}

// stop ends the goroutine, waits for it and releases queued packets.
func (s *subscription) stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		s.wg.Wait()
		return
	}
	s.stopped = true
	s.mu.Unlock()
	s.wakeUp() // it sees stopped when it takes the lock next
	s.wg.Wait()
	s.mu.Lock()
	for ; s.tail != s.head; s.tail++ {
		s.ring[s.tail&s.mask].Release()
		s.ring[s.tail&s.mask] = nil
	}
	s.mu.Unlock()
}
