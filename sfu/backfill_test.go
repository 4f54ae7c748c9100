package sfu

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// TestSubscribeFromRecentKeyframe: a subscription asking for a recent
// keyframe gets the latest keyframe and every packet since from the
// history, in order, then the live packets with none twice, and no keyframe
// is requested; when the keyframe is too old or its packets do not fit, it
// starts at the next keyframe and asks for one, as a plain subscription.
func TestSubscribeFromRecentKeyframe(t *testing.T) {
	var requests atomic.Int32
	tr := NewTrack(TrackConfig{Info: TrackInfo{ID: "video", Kind: KindVideo, MimeType: MimeTypeH264, ClockRate: 90000},
		RequestKeyframe: func() { requests.Add(1) }, QueueSize: 16})
	defer tr.Close()
	must(t, tr.WriteRTP(videoPacket(10, 100, payloadSPS))) // an older keyframe
	must(t, tr.WriteRTP(videoPacket(11, 100, payloadIDR)))
	must(t, tr.WriteRTP(videoPacket(12, 200, payloadPFrag)))
	must(t, tr.WriteRTP(videoPacket(13, 300, payloadSPS))) // the latest keyframe
	must(t, tr.WriteRTP(videoPacket(14, 300, payloadIDR)))
	must(t, tr.WriteRTP(videoPacket(16, 400, payloadPFrag))) // 15 is lost upstream
	must(t, tr.WriteRTP(videoPacket(17, 500, payloadPFrag)))

	c := newCollector()
	var got Backfill
	calls := 0
	unsub, err := tr.Subscribe(c, FromRecentKeyframe(time.Minute, func(b Backfill) { got = b; calls++ }))
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	if requests.Load() != 0 {
		t.Fatalf("keyframe requests = %d, want none: the subscription starts from the history", requests.Load())
	}
	key := tr.Lookup(1<<16 + 13)
	if key == nil || !key.Keyframe {
		t.Fatal("the latest keyframe's first packet is not in the history")
	}
	first := key.Seq
	key.Release()
	if calls != 1 || got.Last != first+4 || got.LastTimestamp != 500 {
		t.Fatalf("backfill reported %+v (%d calls), want Last %d, LastTimestamp 500", got, calls, first+4)
	}
	must(t, tr.WriteRTP(videoPacket(18, 600, payloadPFrag)))
	c.wait(t, 5)
	c.mu.Lock()
	seqs, keys := slices.Clone(c.seqs), slices.Clone(c.keys)
	c.mu.Unlock()
	want := []uint64{first, first + 1, first + 3, first + 4, first + 5}
	if !slices.Equal(seqs, want) || !keys[0] || slices.Contains(keys[1:], true) {
		t.Fatalf("delivered seqs %v keyframe flags %v, want %v starting at the keyframe", seqs, keys, want)
	}

	// Too old: a plain keyframe-gated start with a request.
	old := newCollector()
	called := false
	unsubOld, err := tr.Subscribe(old, FromRecentKeyframe(time.Nanosecond, func(Backfill) { called = true }))
	if err != nil {
		t.Fatal(err)
	}
	defer unsubOld()
	if called || requests.Load() != 1 {
		t.Fatalf("a stale keyframe: backfill called %v, requests %d, want false and 1", called, requests.Load())
	}

	// More packets since the keyframe than half the queue (8): the same.
	for i := range 8 {
		must(t, tr.WriteRTP(videoPacket(uint16(19+i), uint32(700+100*i), payloadPFrag)))
	}
	big := newCollector()
	unsubBig, err := tr.Subscribe(big, FromRecentKeyframe(time.Minute, func(Backfill) { called = true }))
	if err != nil {
		t.Fatal(err)
	}
	defer unsubBig()
	if called {
		t.Fatal("backfilled 14 packets into a queue of 16")
	}
	must(t, tr.WriteRTP(videoPacket(27, 1500, payloadPFrag)))
	must(t, tr.WriteRTP(videoPacket(28, 1600, payloadSPS)))
	big.wait(t, 1)
	old.wait(t, 1)
	for _, c := range []*collector{old, big} {
		c.mu.Lock()
		if len(c.keys) != 1 || !c.keys[0] {
			t.Errorf("plain start delivered keyframe flags %v, want [true]", c.keys)
		}
		c.mu.Unlock()
	}
}

// TestRewriterCatchUp: backfilled frames get the last one's timestamp plus
// one tick per frame, the same for every packet of a frame; the live
// packets after them keep their natural timestamps, and the backfilled ones
// are not resent.
func TestRewriterCatchUp(t *testing.T) {
	r := NewRewriter(42, 96, 90000, 1000, 0)
	var h rtp.Header
	mk := func(seq uint64, ts uint32) *Packet {
		p := &Packet{Seq: seq, Arrival: time.Unix(100, 0).Add(time.Duration(ts) * time.Second / 90000)}
		p.Header = rtp.Header{SequenceNumber: uint16(seq), Timestamp: ts}
		return p
	}
	// A keyframe of two packets at 0 ms, frames at 100 and 200 ms from the
	// history; then live frames at 300 and 333 ms.
	r.CatchUp(104, 18000)
	for i, s := range []struct {
		p    *Packet
		want uint32
	}{
		{mk(100, 0), 18000},
		{mk(101, 0), 18000},
		{mk(102, 9000), 18001},
		{mk(103, 18000), 18002},
		{mk(104, 18000), 18002},
		{mk(105, 27000), 27000},
		{mk(106, 30000), 30000},
	} {
		r.Rewrite(s.p, &h)
		if h.Timestamp != s.want || h.SequenceNumber != uint16(1000+i) {
			t.Errorf("packet %d: seq %d timestamp %d, want %d %d", i, h.SequenceNumber, h.Timestamp, 1000+i, s.want)
		}
	}
	for out := uint16(1000); out <= 1004; out++ {
		if in, ok := r.SourceSeq(out); ok {
			t.Errorf("SourceSeq(%d) = %d: a caught-up packet would be resent with its natural timestamp", out, in)
		}
	}
	if in, ok := r.SourceSeq(1005); !ok || in != 105 {
		t.Errorf("SourceSeq(1005) = %d %v, want 105 true", in, ok)
	}
	// The next source starts without catch-up and its packets are resent.
	r.SwitchSource()
	r.Rewrite(mk(7, 50000), &h)
	if in, ok := r.SourceSeq(h.SequenceNumber); !ok || in != 7 {
		t.Errorf("after a switch SourceSeq = %d %v, want 7 true", in, ok)
	}
}
