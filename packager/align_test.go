package packager

import (
	"testing"
	"time"
)

func TestFrameAligner(t *testing.T) {
	var a frameAligner
	ms := time.Millisecond
	if adj, ok, ref := a.align(1000 * ms); !ok || adj != 0 || !ref {
		t.Fatalf("first layer: adj %v, settled %v, reference %v; want 0, true, true", adj, ok, ref)
	}
	// Before the reference layer's frame interval is known, only frames
	// within alignMinTolerance match.
	a.note(1000*ms, true)
	if _, ok, _ := a.align(1000*ms + alignMinTolerance + time.Microsecond); ok {
		t.Error("with no frame interval known, a frame more than alignMinTolerance away matched")
	}
	for i := 1; i < 10; i++ {
		a.note(time.Duration(1000+33*i)*ms, true)
	}
	tol := 33 * ms * 2 / 5 // 13.2 ms
	for _, c := range []struct {
		t       time.Duration
		adj     time.Duration
		settled bool
	}{
		{1033*ms + 211*time.Microsecond, -211 * time.Microsecond, true}, // same frame, its report a little off
		{1066*ms - 2*ms, 2 * ms, true},
		{1099*ms + 5*ms + 260*time.Microsecond, -5*ms - 260*time.Microsecond, true}, // pion's extrapolated report on a busy machine (CI)
		{1132*ms + tol - time.Microsecond, -tol + time.Microsecond, true},
		{1132*ms + tol, 0, false},                  // too far from a frame to be sure it is the same one
		{1016*ms + 500*time.Microsecond, 0, false}, // between two frames: another frame, not this one
		{2000 * ms, 0, false},                      // a frame the reference has not reached: try again later
	} {
		adj, ok, ref := a.align(c.t)
		if adj != c.adj || ok != c.settled || ref {
			t.Errorf("align(%v) = %v, %v, reference %v; want %v, %v, false", c.t, adj, ok, ref, c.adj, c.settled)
		}
	}
	// Other layers' frames count as matches but do not change the interval.
	a.note(1300*ms+time.Millisecond, false)
	if adj, ok, _ := a.align(1302 * ms); !ok || adj != -time.Millisecond {
		t.Errorf("a frame next to another settled layer's: adj %v, settled %v; want -1ms, true", adj, ok)
	}
	// The ring keeps the latest frames only.
	for i := range alignRing {
		a.note(time.Duration(5000+33*i)*ms, true)
	}
	if _, ok, _ := a.align(1033 * ms); ok {
		t.Error("a frame older than the ring matched")
	}
}
