package main

import (
	"testing"
	"time"
)

// TestSummarize: 1000 samples of 1..1000 µs, by nearest rank: p50 is the
// 500th (0.5 ms), p99.9 the 999th, the maximum the 1000th.
func TestSummarize(t *testing.T) {
	d := make([]time.Duration, 1000)
	for i := range d {
		d[len(d)-1-i] = time.Duration(i+1) * time.Microsecond // unsorted
	}
	r := summarize(d, "normal")
	if r.N != 1000 || r.P50 != 0.5 || r.P90 != 0.9 || r.P99 != 0.99 || r.P999 != 0.999 || r.Max != 1 || r.Policy != "normal" {
		t.Errorf("summarize = %+v", r)
	}
}
