package packager

import (
	"testing"
	"time"
)

func TestFrameAligner(t *testing.T) {
	var a frameAligner
	ms := time.Millisecond
	if adj, ok := a.align(1000 * ms); !ok || adj != 0 {
		t.Fatalf("first layer: adj %v, settled %v; want 0, true (the reference)", adj, ok)
	}
	for i := range 10 {
		a.note(time.Duration(1000+33*i) * ms)
	}
	for _, c := range []struct {
		t       time.Duration
		adj     time.Duration
		settled bool
	}{
		{1033*ms + 211*time.Microsecond, -211 * time.Microsecond, true}, // same frame, its report a little off
		{1066*ms - 2*ms, 2 * ms, true},
		{1099*ms + alignTolerance, -alignTolerance, true},
		{1016 * ms, 0, false}, // between two frames: another frame, not this one
		{2000 * ms, 0, false}, // a frame the reference has not reached: try again later
	} {
		adj, ok := a.align(c.t)
		if adj != c.adj || ok != c.settled {
			t.Errorf("align(%v) = %v, %v; want %v, %v", c.t, adj, ok, c.adj, c.settled)
		}
	}
	// The ring keeps the latest frames only.
	for i := range alignRing {
		a.note(time.Duration(5000+33*i) * ms)
	}
	if _, ok := a.align(1033 * ms); ok {
		t.Error("a frame older than the ring matched")
	}
}
