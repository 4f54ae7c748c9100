package sfu

import (
	"maps"
	"math"
	"testing"
	"time"
)

func TestLatencyHistogram(t *testing.T) {
	var h LatencyHistogram
	for i := range 100 {
		h.Observe(time.Duration(i) * time.Millisecond / 10) // 0.0 … 9.9 ms
	}
	h.Observe(time.Second) // beyond the range: last bucket, but the max is exact
	s := h.Summary()
	if s.Count != 101 || s.P50 < 4.9 || s.P50 > 5.2 || s.P99 < 9.8 || s.P99 > 10.1 || s.Max != 1000 {
		t.Fatalf("summary = %+v", s)
	}
}

func TestLatencyHistogramCumulative(t *testing.T) {
	var h LatencyHistogram
	for _, d := range []time.Duration{50 * time.Microsecond, 500 * time.Microsecond, 999 * time.Microsecond,
		time.Millisecond, 9900 * time.Microsecond, 10 * time.Millisecond, 50 * time.Millisecond, 200 * time.Millisecond} {
		h.Observe(d)
	}
	count, sum, le := h.Cumulative([]float64{0.001, 0.01, 0.05})
	want := map[float64]uint64{0.001: 3, 0.01: 5, 0.05: 6}
	if count != 8 || !maps.Equal(le, want) {
		t.Fatalf("count %d, buckets %v; want 8, %v", count, le, want)
	}
	// Midpoints: 0.05+0.55+0.95+1.05+9.95+10.05+50.05+99.95 ms (200 ms counts as the last bucket).
	if wantSum := 0.17260; math.Abs(sum-wantSum) > 1e-6 {
		t.Fatalf("sum %.6f s, want %.6f", sum, wantSum)
	}
}
