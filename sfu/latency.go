package sfu

import (
	"sync/atomic"
	"time"
)

// LatencyHistogram counts durations in 100 µs buckets up to 100 ms (longer
// ones land in the last bucket). It is safe for concurrent use and costs
// one atomic add per observation: the forwarding path can afford it.
type LatencyHistogram struct {
	buckets [latencyBuckets]atomic.Uint64
	max     atomic.Int64
}

const (
	latencyBucket  = 100 * time.Microsecond
	latencyBuckets = 1000
)

// Observe adds one duration.
func (h *LatencyHistogram) Observe(d time.Duration) {
	i := int(d / latencyBucket)
	if i < 0 {
		i = 0
	}
	if i >= latencyBuckets {
		i = latencyBuckets - 1
	}
	h.buckets[i].Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// LatencySummary is a histogram's count and quantiles in milliseconds
// (upper bucket bounds, so within 0.1 ms).
type LatencySummary struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// Summary returns the count and quantiles.
func (h *LatencyHistogram) Summary() LatencySummary {
	var counts [latencyBuckets]uint64
	var total uint64
	for i := range counts {
		counts[i] = h.buckets[i].Load()
		total += counts[i]
	}
	s := LatencySummary{Count: total, Max: float64(h.max.Load()) / 1e6}
	if total == 0 {
		return s
	}
	q := func(p float64) float64 {
		want := uint64(p * float64(total))
		var seen uint64
		for i, c := range counts {
			seen += c
			if seen > want {
				return float64(i+1) * float64(latencyBucket) / 1e6
			}
		}
		return float64(latencyBuckets) * float64(latencyBucket) / 1e6
	}
	s.P50, s.P90, s.P99 = q(0.50), q(0.90), q(0.99)
	return s
}

// Cumulative returns the count, the sum (from bucket midpoints, within
// 50 µs per observation; durations of 100 ms and more count as 100 ms) in
// seconds, and for each upper bound in bounds (seconds, ascending,
// multiples of 100 µs below 100 ms) the count of durations below it: a
// Prometheus histogram.
func (h *LatencyHistogram) Cumulative(bounds []float64) (count uint64, sum float64, le map[float64]uint64) {
	le = make(map[float64]uint64, len(bounds))
	var seen uint64
	b := 0
	for i := range latencyBuckets {
		c := h.buckets[i].Load()
		upper := float64(i+1) * latencyBucket.Seconds()
		for b < len(bounds) && bounds[b] < upper-1e-9 {
			le[bounds[b]] = seen
			b++
		}
		seen += c
		sum += float64(c) * (float64(i) + 0.5) * latencyBucket.Seconds()
	}
	for ; b < len(bounds); b++ {
		le[bounds[b]] = seen
	}
	return seen, sum, le
}
