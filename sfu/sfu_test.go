package sfu

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pion/rtp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// collector is a Subscriber that records what it gets.
type collector struct {
	mu   sync.Mutex
	seqs []uint64
	keys []bool
	got  chan struct{}
}

func newCollector() *collector { return &collector{got: make(chan struct{}, 4096)} }

func (c *collector) WriteRTP(p *Packet) error {
	c.mu.Lock()
	c.seqs = append(c.seqs, p.Seq)
	c.keys = append(c.keys, p.Keyframe)
	c.mu.Unlock()
	c.got <- struct{}{}
	return nil
}

func (c *collector) wait(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for range n {
		select {
		case <-c.got:
		case <-timeout:
			t.Fatalf("timed out waiting for %d packets", n)
		}
	}
}

// h264 payloads: a STAP-A with SPS+PPS, an FU-A IDR start, a P-slice.
var (
	payloadSPS   = []byte{24, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce}
	payloadIDR   = []byte{28, 0x85, 0xaa}
	payloadPFrag = []byte{0x41, 0x9a}
)

func videoPacket(seq uint16, ts uint32, payload []byte) *rtp.Packet {
	return &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 102, SequenceNumber: seq, Timestamp: ts, SSRC: 1}, Payload: payload}
}

func TestSubscriberStartsAtKeyframeAndRequestsOne(t *testing.T) {
	var requests atomic.Int32
	tr := NewTrack(TrackConfig{Info: TrackInfo{ID: "video", Kind: KindVideo, MimeType: MimeTypeH264, ClockRate: 90000},
		RequestKeyframe: func() { requests.Add(1) }})
	defer tr.Close()
	c := newCollector()
	unsub, err := tr.Subscribe(c)
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	if requests.Load() != 1 {
		t.Fatalf("keyframe requests on join = %d, want 1", requests.Load())
	}
	// P-frames before the keyframe are held back.
	must(t, tr.WriteRTP(videoPacket(10, 100, payloadPFrag)))
	must(t, tr.WriteRTP(videoPacket(11, 200, payloadPFrag)))
	must(t, tr.WriteRTP(videoPacket(12, 300, payloadSPS)))
	must(t, tr.WriteRTP(videoPacket(13, 300, payloadIDR)))
	must(t, tr.WriteRTP(videoPacket(14, 400, payloadPFrag)))
	c.wait(t, 3)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.keys) != 3 || !c.keys[0] || c.keys[1] || c.keys[2] {
		t.Fatalf("keyframe flags = %v, want [true false false] (SPS packet flagged, IDR of the same frame not)", c.keys)
	}
	if c.seqs[1]-c.seqs[0] != 1 || c.seqs[2]-c.seqs[1] != 1 {
		t.Fatalf("forwarding seqs not consecutive: %v", c.seqs)
	}
}

func TestPaddingIsDroppedAndTakenOutOfSequence(t *testing.T) {
	tr := NewTrack(TrackConfig{Info: TrackInfo{ID: "video", Kind: KindVideo, MimeType: MimeTypeH264}})
	defer tr.Close()
	c := newCollector()
	unsub, _ := tr.Subscribe(c, WithoutKeyframeStart())
	defer unsub()
	must(t, tr.WriteRTP(videoPacket(65534, 1, payloadSPS)))
	pad := videoPacket(65535, 1, nil)
	pad.Padding, pad.PaddingSize = true, 200
	must(t, tr.WriteRTP(pad))
	must(t, tr.WriteRTP(videoPacket(0, 2, payloadPFrag))) // wraps
	must(t, tr.WriteRTP(videoPacket(2, 3, payloadPFrag))) // seq 1 lost upstream
	c.wait(t, 3)
	c.mu.Lock()
	defer c.mu.Unlock()
	if d1, d2 := c.seqs[1]-c.seqs[0], c.seqs[2]-c.seqs[1]; d1 != 1 || d2 != 2 {
		t.Fatalf("seq deltas = %d,%d; want 1 (padding removed) and 2 (upstream loss kept)", d1, d2)
	}
	if st := tr.Stats(); st.Padding != 1 || st.Packets != 3 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestLookupFromHistory(t *testing.T) {
	tr := NewTrack(TrackConfig{Info: TrackInfo{ID: "video", Kind: KindVideo, MimeType: MimeTypeH264}, HistorySize: 4})
	c := newCollector()
	unsub, _ := tr.Subscribe(c, WithoutKeyframeStart())
	for i := range 6 {
		must(t, tr.WriteRTP(videoPacket(uint16(100+i), uint32(i), []byte{0x41, byte(i)})))
	}
	c.wait(t, 6)
	unsub()
	first := c.seqs[0]
	if p := tr.Lookup(first); p != nil {
		t.Fatalf("packet %d should have left a 4-packet history", first)
	}
	p := tr.Lookup(first + 5)
	if p == nil || p.Payload[1] != 5 || p.SequenceNumber != 105 {
		t.Fatalf("lookup newest = %+v", p)
	}
	tr.Close()
	// The reference taken by Lookup keeps the bytes valid after Close.
	if p.Payload[1] != 5 {
		t.Fatal("payload changed under a held reference")
	}
	p.Release()
	if n := tr.pool.errors.Load(); n != 0 {
		t.Fatalf("%d double releases", n)
	}
}

// blocker is a Subscriber that blocks until released, to overflow its queue.
type blocker struct {
	release chan struct{}
	n       atomic.Int32
	first   chan struct{}
	done    chan struct{}
	once    sync.Once
}

func (b *blocker) WriteRTP(p *Packet) error {
	b.once.Do(func() { close(b.first) })
	<-b.release
	b.n.Add(1)
	b.done <- struct{}{}
	return nil
}

func TestSlowSubscriberDoesNotBlockOthers(t *testing.T) {
	var requests atomic.Int32
	tr := NewTrack(TrackConfig{Info: TrackInfo{ID: "video", Kind: KindVideo, MimeType: MimeTypeH264},
		RequestKeyframe: func() { requests.Add(1) }, KeyframeInterval: time.Nanosecond})
	defer tr.Close()
	slow := &blocker{release: make(chan struct{}), first: make(chan struct{}), done: make(chan struct{}, 100)}
	releaseSlow := sync.OnceFunc(func() { close(slow.release) })
	defer releaseSlow() // before tr.Close, or a failing test would hang in it
	unsubSlow, _ := tr.Subscribe(slow, WithQueueSize(8))
	fast := newCollector()
	unsubFast, _ := tr.Subscribe(fast)
	must(t, tr.WriteRTP(videoPacket(1, 1, payloadSPS)))
	<-slow.first // the slow subscriber holds packet 1; its queue is empty
	for i := range 100 {
		must(t, tr.WriteRTP(videoPacket(uint16(2+i), uint32(2+i), payloadPFrag)))
	}
	fast.wait(t, 101)
	s := slowSub(tr, slow)
	// The first packet past the 8 queued ones overflows; from then on the
	// subscription waits for a keyframe and skips P-frames without counting.
	if d := s.dropped.Load(); d != 1 {
		t.Fatalf("slow subscriber dropped %d, want 1", d)
	}
	if requests.Load() < 2 {
		t.Fatalf("overflow did not request a keyframe (requests=%d)", requests.Load())
	}
	releaseSlow()
	for range 9 {
		<-slow.done
	}
	unsubSlow()
	unsubFast()
	if got := slow.n.Load(); got != 1+8 {
		t.Fatalf("slow subscriber got %d packets, want the first and the 8 it could queue", got)
	}
}

func slowSub(tr *Track, s Subscriber) *subscription {
	for _, sub := range *tr.subs.Load() {
		if sub.sub == s {
			return sub
		}
	}
	return nil
}

// keyframeRecorder makes a video track whose keyframe requests are
// recorded, as times since its start, for sent to return.
func keyframeRecorder() (tr *Track, sent func() []time.Duration) {
	var mu sync.Mutex // the deferred request runs on a timer goroutine
	var times []time.Duration
	start := time.Now()
	tr = NewTrack(TrackConfig{Info: TrackInfo{ID: "video", Kind: KindVideo, MimeType: MimeTypeH264},
		RequestKeyframe: func() { mu.Lock(); times = append(times, time.Since(start)); mu.Unlock() }})
	return tr, func() []time.Duration { mu.Lock(); defer mu.Unlock(); return slices.Clone(times) }
}

func TestKeyframeRequestsAreThrottled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr, sentAt := keyframeRecorder()
		defer tr.Close()
		tr.RequestKeyframe()                // sent at 0
		time.Sleep(100 * time.Millisecond)  // synctest: fake time
		tr.RequestKeyframe()                // deferred to 500 ms
		tr.RequestKeyframe()                // merged
		time.Sleep(1000 * time.Millisecond) // deferred one fires at 500 ms
		tr.RequestKeyframe()                // 1100 ms: more than 500 ms after 500 ms, sent
		synctest.Wait()
		sent := sentAt()
		want := []time.Duration{0, 500 * time.Millisecond, 1100 * time.Millisecond}
		if len(sent) != len(want) {
			t.Fatalf("sent at %v, want %v", sent, want)
		}
		for i := range want {
			if sent[i] != want[i] {
				t.Fatalf("sent at %v, want %v", sent, want)
			}
		}
	})
}

// TestSwitchKeyframeRequests: a switch waits for a keyframe already asked
// for; once that arrived it asks, at least SwitchKeyframeInterval after the
// last request of any kind, bringing a deferred request forward.
func TestSwitchKeyframeRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr, sentAt := keyframeRecorder()
		defer tr.Close()
		seq, ts := uint16(0), uint32(0)
		keyframe := func() { // the publisher's answer arrives
			seq++
			ts += 3000
			if err := tr.WriteRTP(videoPacket(seq, ts, payloadSPS)); err != nil {
				t.Fatal(err)
			}
		}
		ms := time.Millisecond
		tr.RequestKeyframe()       // 0: sent
		time.Sleep(50 * ms)        // synctest: fake time
		tr.RequestSwitchKeyframe() // 50: the keyframe asked for at 0 is on its way: nothing sent
		keyframe()                 // 50: it arrives
		time.Sleep(50 * ms)        //
		tr.RequestSwitchKeyframe() // 100: answered, but a browser ignores a request 100 ms after one: deferred to 300
		time.Sleep(50 * ms)        //
		tr.RequestSwitchKeyframe() // 150: merged into it
		time.Sleep(200 * ms)       // 350: sent at 300
		keyframe()
		tr.RequestKeyframe()       // 350: deferred to 800 (KeyframeInterval after 300)
		time.Sleep(200 * ms)       //
		tr.RequestSwitchKeyframe() // 550: brings it forward to 600 (SwitchKeyframeInterval after 300)
		synctest.Wait()
		time.Sleep(time.Second) // nothing else fires
		want := []time.Duration{0, 300 * ms, 600 * ms}
		if sent := sentAt(); !slices.Equal(sent, want) {
			t.Fatalf("sent at %v, want %v", sent, want)
		}
	})
}

func TestRewriterContinuesAcrossSources(t *testing.T) {
	r := NewRewriter(42, 96, 90000, 1000, 5000)
	var h rtp.Header
	t0 := time.Unix(100, 0)
	mk := func(seq uint64, ts uint32, at time.Duration) *Packet {
		p := &Packet{Seq: seq, Arrival: t0.Add(at)}
		p.Header = rtp.Header{SequenceNumber: uint16(seq), Timestamp: ts, SSRC: 7, PayloadType: 102,
			Extension: true, Extensions: []rtp.Extension{}}
		return p
	}
	r.Rewrite(mk(70000, 900000, 0), &h)
	if h.SequenceNumber != 1000 || h.Timestamp != 5000 || h.SSRC != 42 || h.PayloadType != 96 || h.Extension {
		t.Fatalf("first = %+v", h)
	}
	r.Rewrite(mk(70001, 903000, 33*time.Millisecond), &h)
	if h.SequenceNumber != 1001 || h.Timestamp != 8000 {
		t.Fatalf("second = %+v", h)
	}
	if in, ok := r.SourceSeq(1000); !ok || in != 70000 {
		t.Fatalf("SourceSeq(1000) = %d %v", in, ok)
	}
	// New publisher: unrelated numbering, 1 s later.
	r.SwitchSource()
	r.Rewrite(mk(500, 12345, 1033*time.Millisecond), &h)
	if h.SequenceNumber != 1002 || h.Timestamp != 8000+90000 {
		t.Fatalf("after switch = %+v, want seq 1002 ts %d", h, 8000+90000)
	}
	if _, ok := r.SourceSeq(1001); ok {
		t.Fatal("a number from the old source must not map into the new one")
	}
	if in, ok := r.SourceSeq(1002); !ok || in != 500 {
		t.Fatalf("SourceSeq(1002) = %d %v", in, ok)
	}
}

func TestRouterPublishAndNotify(t *testing.T) {
	g := NewRegistry(nil)
	if g.Router("a") != nil {
		t.Fatal("unknown stream has a router")
	}
	r := g.RouterFor("a")
	tracks, changed := r.Tracks()
	if len(tracks) != 0 {
		t.Fatal("tracks before publish")
	}
	p, err := r.Publish("p1")
	if err != nil {
		t.Fatal(err)
	}
	<-changed
	if _, err := r.Publish("p2"); err == nil {
		t.Fatal("second publisher accepted")
	}
	_, changed = r.Tracks()
	if _, err := p.AddTrack(TrackConfig{Info: TrackInfo{ID: "audio", Kind: KindAudio, MimeType: MimeTypeOpus}}); err != nil {
		t.Fatal(err)
	}
	<-changed
	tracks, changed = r.Tracks()
	if len(tracks) != 1 {
		t.Fatalf("tracks = %d", len(tracks))
	}
	p.Close()
	<-changed
	<-tracks[0].Done()
	if r.Live() {
		t.Fatal("live after close")
	}
	if _, err := r.Publish("p3"); err != nil {
		t.Fatalf("republish: %v", err)
	}
	if s := g.Streams(); len(s) != 1 || !s[0].Live || s[0].Publisher != "p3" {
		t.Fatalf("streams = %+v", s)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// countingViewer is a viewer whose counters the test sets.
type countingViewer struct{ packets atomic.Uint64 }

func (v *countingViewer) Stats() ViewerStats { return ViewerStats{Packets: v.packets.Load()} }
func (v *countingViewer) Counters() ViewerCounters {
	return ViewerCounters{Packets: v.packets.Load(), Bytes: 100 * v.packets.Load()}
}

// TestCountersKeepWhatLeft: a stream's cumulative counters include the
// tracks of a publication that ended and the viewers that left, so they
// never decrease; the live gauges do.
func TestCountersKeepWhatLeft(t *testing.T) {
	g := NewRegistry(nil)
	r := g.RouterFor("s")
	pub, err := r.Publish("p1")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := pub.AddTrack(TrackConfig{Info: TrackInfo{ID: "video", Kind: KindVideo, MimeType: MimeTypeH264, ClockRate: 90000}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := tr.WriteRTP(videoPacket(uint16(i), 0, payloadIDR)); err != nil {
			t.Fatal(err)
		}
	}
	v := &countingViewer{}
	v.packets.Store(7)
	leave := r.AddViewer(v)

	c := g.Counters()
	if len(c) != 1 || c[0].Name != "s" || !c[0].Live || c[0].Viewers != 1 || c[0].PacketsIn != 3 ||
		c[0].BytesIn != uint64(3*len(payloadIDR)) || c[0].Viewer.Packets != 7 || c[0].Viewer.Bytes != 700 {
		t.Fatalf("live: %+v", c)
	}

	v.packets.Store(9)
	leave()
	leave() // counted once
	pub.Close()
	c = g.Counters()
	if c[0].Live || c[0].Viewers != 0 || c[0].PacketsIn != 3 || c[0].Viewer.Packets != 9 {
		t.Fatalf("after leaving: %+v", c[0])
	}

	// The next publisher adds to the totals.
	pub2, err := r.Publish("p2")
	if err != nil {
		t.Fatal(err)
	}
	defer pub2.Close()
	tr2, err := pub2.AddTrack(TrackConfig{Info: TrackInfo{ID: "video", Kind: KindVideo, MimeType: MimeTypeH264, ClockRate: 90000}})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr2.WriteRTP(videoPacket(100, 0, payloadIDR)); err != nil {
		t.Fatal(err)
	}
	if c = g.Counters(); !c[0].Live || c[0].PacketsIn != 4 {
		t.Fatalf("second publisher: %+v", c[0])
	}
}

// TestDropsCounted: a subscriber whose queue is full loses packets, and the
// track counts them.
func TestDropsCounted(t *testing.T) {
	tr := NewTrack(TrackConfig{Info: TrackInfo{ID: "audio", Kind: KindAudio, MimeType: "audio/opus", ClockRate: 48000}, QueueSize: 1})
	defer tr.Close()
	block := make(chan struct{})
	entered := make(chan struct{}, 1)
	unsub, err := tr.Subscribe(blockingSubscriber{entered: entered, release: block})
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	audio := func(seq uint16) *rtp.Packet {
		return &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, SSRC: 2}, Payload: []byte{1}}
	}
	if err := tr.WriteRTP(audio(1)); err != nil { // taken by the subscriber, which blocks
		t.Fatal(err)
	}
	<-entered
	for seq := uint16(2); seq <= 4; seq++ { // one fits the queue, two are dropped
		if err := tr.WriteRTP(audio(seq)); err != nil {
			t.Fatal(err)
		}
	}
	if st := tr.Stats(); st.Dropped != 2 {
		t.Fatalf("dropped = %d, want 2", st.Dropped)
	}
	close(block)
}

type blockingSubscriber struct {
	entered chan struct{}
	release chan struct{}
}

func (b blockingSubscriber) WriteRTP(*Packet) error {
	select {
	case b.entered <- struct{}{}:
	default:
	}
	<-b.release
	return nil
}
