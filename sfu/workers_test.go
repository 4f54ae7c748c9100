package sfu

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// audioTrack makes a track whose packets need no keyframe to start.
func audioTrack() *Track {
	return NewTrack(TrackConfig{Info: TrackInfo{ID: "audio", Kind: KindAudio, MimeType: "audio/opus", ClockRate: 48000}})
}

func audioPacket(seq uint16) []byte {
	p := videoPacket(seq, uint32(seq)*960, []byte{1, 2, 3})
	b, _ := p.Marshal()
	return b
}

// TestSharedSubscriptionsGetEveryPacketInOrder puts 40 subscribers on
// the track's shared workers and one on a goroutine of its own: each gets
// every packet once, in order. When the last shared subscriber leaves,
// the workers end, with the track still open.
func TestSharedSubscriptionsGetEveryPacketInOrder(t *testing.T) {
	const subs, packets = 40, 500
	before := goleak.IgnoreCurrent()
	tr := audioTrack()
	defer tr.Close()
	cs := make([]*collector, subs+1)
	unsubs := make([]func(), subs+1)
	for i := range cs {
		cs[i] = newCollector()
		opts := []SubscribeOption{WithQueueSize(packets)}
		if i < subs {
			opts = append(opts, Shared(nil))
		}
		u, err := tr.Subscribe(cs[i], opts...)
		if err != nil {
			t.Fatal(err)
		}
		unsubs[i] = u
	}
	if set := tr.workers.set; set == nil || len(set.ws) != min(runtime.GOMAXPROCS(0), maxWorkers) {
		t.Fatalf("workers = %v, want one per core", set)
	}
	for i := range packets {
		must(t, tr.Write(audioPacket(uint16(1000+i))))
	}
	for i, c := range cs {
		c.wait(t, packets)
		c.mu.Lock()
		if !consecutive(c.seqs) || len(c.seqs) != packets {
			t.Errorf("subscriber %d: %d packets, consecutive %v", i, len(c.seqs), consecutive(c.seqs))
		}
		c.mu.Unlock()
	}
	for _, u := range unsubs {
		u()
	}
	if tr.workers.set != nil {
		t.Fatal("workers still running after the last shared subscriber left")
	}
	goleak.VerifyNone(t, before) // the track is open: its workers ended on their own
}

// consecutive says whether seqs count up by one.
func consecutive(seqs []uint64) bool {
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			return false
		}
	}
	return true
}

// gate is a Subscriber whose WriteRTP waits until released.
type gate struct {
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	after   bool // a write started after the subscriber was removed
	removed bool
}

func (g *gate) WriteRTP(*Packet) error {
	g.mu.Lock()
	if g.removed {
		g.after = true
	}
	g.mu.Unlock()
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.release
	return nil
}

// TestSharedUnsubscribeWaitsForDelivery: unsubscribe returns only once
// the worker has finished the write in progress, and nothing is
// delivered after it. Other shared subscribers stay, so that the workers
// do not end (which would wait for the write too).
func TestSharedUnsubscribeWaitsForDelivery(t *testing.T) {
	tr := audioTrack()
	defer tr.Close()
	for range 2 * maxWorkers {
		u, err := tr.Subscribe(newCollector(), Shared(nil))
		if err != nil {
			t.Fatal(err)
		}
		defer u()
	}
	g := &gate{entered: make(chan struct{}, 1), release: make(chan struct{})}
	unsub, err := tr.Subscribe(g, Shared(nil))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		must(t, tr.Write(audioPacket(uint16(i+1))))
	}
	<-g.entered // the worker is inside WriteRTP
	done := make(chan struct{})
	go func() { unsub(); close(done) }()
	select {
	case <-done:
		close(g.release)
		t.Fatal("unsubscribe returned while a delivery was in progress")
	case <-time.After(50 * time.Millisecond): // absence of an event: no event to wait for
	}
	g.mu.Lock()
	g.removed = true
	g.mu.Unlock()
	close(g.release)
	<-done
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.after {
		t.Fatal("a packet was delivered after unsubscribe")
	}
}

// batchRecorder is a BatchSubscriber; its batches record what is left in
// them and what was flushed.
type batchRecorder struct {
	by      *recBatcher
	got     chan struct{} // one per WriteRTP call
	direct  int           // WriteRTP calls
	batched int           // WriteRTPBatch calls
	mu      sync.Mutex
}

type recBatcher struct {
	mu      sync.Mutex
	made    int
	flushed []uint64
	done    chan struct{}
	want    int
}

type recBatch struct {
	by      *recBatcher
	pending []uint64
}

func (r *recBatcher) NewBatch() Batch {
	r.mu.Lock()
	r.made++
	r.mu.Unlock()
	return &recBatch{by: r}
}

func (b *recBatch) Flush() {
	b.by.mu.Lock()
	b.by.flushed = append(b.by.flushed, b.pending...)
	if len(b.by.flushed) == b.by.want {
		close(b.by.done)
	}
	b.by.mu.Unlock()
	b.pending = b.pending[:0]
}

func (s *batchRecorder) WriteRTP(*Packet) error {
	s.mu.Lock()
	s.direct++
	s.mu.Unlock()
	if s.got != nil {
		s.got <- struct{}{}
	}
	return nil
}

func (s *batchRecorder) Batcher() Batcher { return s.by }

func (s *batchRecorder) WriteRTPBatch(p *Packet, b Batch) error {
	s.mu.Lock()
	s.batched++
	s.mu.Unlock()
	rb := b.(*recBatch)
	rb.pending = append(rb.pending, p.Seq)
	return nil
}

// TestSharedBatches: a shared BatchSubscriber's sends go to its worker's
// batch, one batch per worker, and every one is flushed; the same
// subscriber on a goroutine of its own gets WriteRTP.
func TestSharedBatches(t *testing.T) {
	const subs, packets = 10, 100
	tr := audioTrack()
	defer tr.Close()
	by := &recBatcher{done: make(chan struct{}), want: subs * packets}
	rs := make([]*batchRecorder, subs)
	for i := range rs {
		rs[i] = &batchRecorder{by: by}
		u, err := tr.Subscribe(rs[i], Shared(nil), WithQueueSize(packets))
		if err != nil {
			t.Fatal(err)
		}
		defer u()
	}
	own := &batchRecorder{by: by, got: make(chan struct{}, packets)}
	u, err := tr.Subscribe(own, WithQueueSize(packets))
	if err != nil {
		t.Fatal(err)
	}
	defer u()
	for i := range packets {
		must(t, tr.Write(audioPacket(uint16(i+1))))
	}
	select {
	case <-by.done:
	case <-time.After(5 * time.Second):
		by.mu.Lock()
		t.Fatalf("flushed %d of %d sends", len(by.flushed), by.want)
	}
	by.mu.Lock()
	if n := len(tr.workers.set.ws); by.made > n {
		t.Errorf("%d batches made for %d workers", by.made, n)
	}
	by.mu.Unlock()
	for i, r := range rs {
		r.mu.Lock()
		if r.batched != packets || r.direct != 0 {
			t.Errorf("shared subscriber %d: %d batched, %d direct writes; want %d, 0", i, r.batched, r.direct, packets)
		}
		r.mu.Unlock()
	}
	deadline := time.After(5 * time.Second)
	for range packets {
		select {
		case <-own.got:
		case <-deadline:
			t.Fatal("own-goroutine subscriber: timed out waiting for its WriteRTP calls")
		}
	}
	own.mu.Lock()
	defer own.mu.Unlock()
	if own.direct != packets || own.batched != 0 {
		t.Fatalf("own-goroutine subscriber: %d direct, %d batched writes; want %d, 0", own.direct, own.batched, packets)
	}
}

// TestSharedAffinity: a publication's tracks share its workers, and
// subscriptions with the same affinity key are on the same worker, the
// others spread over the workers. Closing the publication ends them.
func TestSharedAffinity(t *testing.T) {
	before := goleak.IgnoreCurrent()
	r := NewRegistry(nil).RouterFor("s")
	pub, err := r.Publish("p")
	if err != nil {
		t.Fatal(err)
	}
	var tracks []*Track
	for _, id := range []string{"audio", "video-h", "video-l"} {
		tr, err := pub.AddTrack(TrackConfig{Info: TrackInfo{ID: id, Kind: KindAudio, MimeType: "audio/opus", ClockRate: 48000}})
		if err != nil {
			t.Fatal(err)
		}
		tracks = append(tracks, tr)
	}
	const viewers = 16
	subs := map[int][]*subscription{}
	for v := range viewers {
		key := &struct{ v int }{v}
		for _, tr := range tracks {
			if _, err := tr.Subscribe(newCollector(), Shared(key)); err != nil {
				t.Fatal(err)
			}
			list := *tr.subs.Load()
			subs[v] = append(subs[v], list[len(list)-1])
		}
	}
	used := map[*fanoutWorker]int{}
	for v, ss := range subs {
		for _, s := range ss[1:] {
			if s.w != ss[0].w {
				t.Fatalf("viewer %d's subscriptions on different workers", v)
			}
		}
		used[ss[0].w]++
	}
	if n := len(tracks[0].workers.set.ws); len(used) != n {
		t.Fatalf("viewers on %d of %d workers", len(used), n)
	}
	pub.Close()
	goleak.VerifyNone(t, before)
}
