package origin

import (
	"testing"
	"time"
)

// Three LL-HLS players fetch five 200 ms parts a second each, one DASH
// player a 1 s segment a second, for ten seconds: the estimate is four.
func TestAudienceEstimate(t *testing.T) {
	o := New(Config{})
	m := o.meter("s")
	t0 := time.Unix(1_800_000_000, 0)
	for sec := range 10 {
		now := t0.Add(time.Duration(sec) * time.Second)
		for range 3 * 5 {
			m.add(now, true)
		}
		m.add(now, false)
	}
	parts, segs := m.rates(t0.Add(10 * time.Second))
	if parts != 15 || segs != 1 {
		t.Fatalf("rates %v parts/s, %v segments/s; want 15 and 1", parts, segs)
	}
	if got := parts*0.2 + segs*1; got != 4 {
		t.Fatalf("estimate %v, want 4", got)
	}
	// Ten seconds later with no request, nobody is counted.
	if p, s := m.rates(t0.Add(25 * time.Second)); p != 0 || s != 0 {
		t.Errorf("stale buckets counted: %v %v", p, s)
	}
	if a := o.Audience("unknown", 200*time.Millisecond, time.Second); a != 0 {
		t.Errorf("audience of an unknown stream %v", a)
	}
}
