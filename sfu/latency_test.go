package sfu

import (
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
