package sfu

import (
	"testing"
	"time"
)

func TestArrivals(t *testing.T) {
	var a Arrivals
	now := time.Now()
	at := now.Add(-3 * time.Millisecond)
	a.Record(7, 100, at)
	if got := a.Arrival(7, 100, now); got.UnixNano() != at.UnixNano() || !got.Before(now) {
		t.Errorf("recorded packet arrives at %v, want %v (3 ms before now)", got, at)
	}
	// On now's monotonic clock: the distance to now is the recorded age.
	if d := now.Sub(a.Arrival(7, 100, now)); d != 3*time.Millisecond {
		t.Errorf("age on the monotonic clock %v, want 3ms", d)
	}
	for _, c := range []struct {
		name      string
		ssrc      uint32
		seq       uint16
		record    time.Time
		recordKey bool
	}{
		{"unknown sequence number", 7, 101, time.Time{}, false},
		{"unknown SSRC", 8, 100, time.Time{}, false},
		{"stale", 9, 1, now.Add(-2 * time.Second), true},
		{"in the future (clock stepped)", 9, 2, now.Add(time.Second), true},
	} {
		if c.recordKey {
			a.Record(c.ssrc, c.seq, c.record)
		}
		if got := a.Arrival(c.ssrc, c.seq, now); got != now {
			t.Errorf("%s: arrival %v, want now", c.name, got)
		}
	}
	// A later packet in the same slot overwrites the entry.
	k, slot := arrivalKey(7, 100)
	for seq := range uint16(65535) {
		if k2, s2 := arrivalKey(7, seq); s2 == slot && k2 != k {
			a.Record(7, seq, now)
			if got := a.Arrival(7, 100, now); got != now {
				t.Errorf("overwritten entry still found: %v", got)
			}
			break
		}
	}
	// Each lookup that found the kernel's time measured the ingress (3 ms);
	// the misses did not.
	found, missed := a.Counts()
	if s := a.Ingress.Summary(); found != 2 || missed != 5 || s.Count != found || s.Max != 3 {
		t.Errorf("found %d, missed %d, ingress %+v: want 2 found, 5 missed, both 3 ms in the histogram", found, missed, s)
	}
	var none *Arrivals
	if got := none.Arrival(7, 100, now); got != now {
		t.Errorf("nil table: %v, want now", got)
	}
}

// TestTrackArrivalFromKernel: a packet the table has arrives at the
// recorded time, one it lacks when it reaches the track.
func TestTrackArrivalFromKernel(t *testing.T) {
	arrivals := &Arrivals{}
	tr := NewTrack(TrackConfig{Info: TrackInfo{ID: "video", Kind: KindVideo, MimeType: MimeTypeH264, ClockRate: 90000},
		Arrivals: arrivals})
	defer tr.Close()
	got := make(arrivalSub, 2)
	unsub, err := tr.Subscribe(got)
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	kernel := time.Now().Add(-4 * time.Millisecond)
	arrivals.Record(1, 20, kernel)
	must(t, tr.WriteRTP(videoPacket(20, 100, payloadSPS)))
	before := time.Now()
	must(t, tr.WriteRTP(videoPacket(21, 100, payloadIDR)))
	if a := <-got; a.UnixNano() != kernel.UnixNano() {
		t.Errorf("stamped packet arrived at %v, want the kernel's %v", a, kernel)
	}
	if a := <-got; a.Before(before) {
		t.Errorf("unstamped packet arrived at %v, before it was written (%v)", a, before)
	}
}

// arrivalSub is a Subscriber that passes each packet's arrival on.
type arrivalSub chan time.Time

func (s arrivalSub) WriteRTP(p *Packet) error { s <- p.Arrival; return nil }
