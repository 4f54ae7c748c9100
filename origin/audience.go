package origin

import (
	"sync"
	"time"
)

// meter counts one stream's media requests (parts and segments) in
// one-second buckets over the last ten seconds.
type meter struct {
	mu      sync.Mutex
	buckets [10]struct {
		second int64
		parts  int // part requests
		segs   int // segment requests (DASH players, HLS players without parts)
	}
}

func (m *meter) add(now time.Time, part bool) {
	s := now.Unix()
	m.mu.Lock()
	b := &m.buckets[s%int64(len(m.buckets))]
	if b.second != s {
		b.second, b.parts, b.segs = s, 0, 0
	}
	if part {
		b.parts++
	} else {
		b.segs++
	}
	m.mu.Unlock()
}

// rates returns part and segment requests per second over the window,
// leaving out the second in progress.
func (m *meter) rates(now time.Time) (parts, segs float64) {
	s := now.Unix()
	m.mu.Lock()
	defer m.mu.Unlock()
	var p, g int
	for _, b := range m.buckets {
		if b.second < s && b.second >= s-int64(len(m.buckets)) {
			p += b.parts
			g += b.segs
		}
	}
	n := float64(len(m.buckets))
	return float64(p) / n, float64(g) / n
}

func (o *Origin) meter(stream string) *meter {
	o.audMu.Lock()
	defer o.audMu.Unlock()
	m := o.aud[stream]
	if m == nil {
		m = &meter{}
		o.aud[stream] = m
	}
	return m
}

// Audience estimates how many HLS/DASH players watch a stream, from the
// media requests of the last ten seconds: a low-latency HLS player fetches
// every part of one video rendition, a DASH player (or an HLS player that
// ignores parts) every segment. Audio requests are not counted, and
// players behind a CDN count once per cache, so this is the origin's view
// of the audience.
func (o *Origin) Audience(stream string, part, segment time.Duration) float64 {
	o.audMu.Lock()
	m := o.aud[stream]
	o.audMu.Unlock()
	if m == nil || part <= 0 || segment <= 0 {
		return 0
	}
	parts, segs := m.rates(time.Now())
	return parts*part.Seconds() + segs*segment.Seconds()
}
