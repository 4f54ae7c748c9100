package main

import (
	"math"
	"testing"
)

func TestWindowOf(t *testing.T) {
	inf := math.Inf(1)
	// Before the window: 100 packets, all within 1 ms. During it, 1000
	// more: 900 within 1 ms, 95 between 1 and 10 ms, 4 between 10 and 50
	// ms, 1 above 50 ms.
	a := histSample{count: 100, le: map[float64]uint64{0.001: 100, 0.01: 100, 0.05: 100, inf: 100}}
	b := histSample{count: 1100, le: map[float64]uint64{0.001: 1000, 0.01: 1095, 0.05: 1099, inf: 1100}}
	w := windowOf(a, b)
	want := windowLatency{Packets: 1000, Within10msPct: 99.5, P50MS: 1, P90MS: 1, P99MS: 10}
	if w != want {
		t.Fatalf("got %+v, want %+v", w, want)
	}
	// p99 above the largest bound.
	b.le[0.05] = 1000
	b.le[0.01] = 1000
	if w := windowOf(a, b); w.P99MS != -1 || w.Within10msPct != 90 {
		t.Fatalf("got %+v, want p99 -1 and 90 %% within 10 ms", w)
	}
}
