package whep

import (
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/sfu"
)

func TestLayerPolicy(t *testing.T) {
	f := sfu.NewTrack(sfu.TrackConfig{Info: sfu.TrackInfo{ID: "f", RID: "f", Kind: sfu.KindVideo}})
	h := sfu.NewTrack(sfu.TrackConfig{Info: sfu.TrackInfo{ID: "h", RID: "h", Kind: sfu.KindVideo}})
	q := sfu.NewTrack(sfu.TrackConfig{Info: sfu.TrackInfo{ID: "q", RID: "q", Kind: sfu.KindVideo}})
	for _, tr := range []*sfu.Track{f, h, q} {
		defer tr.Close()
	}
	stats := map[*sfu.Track]sfu.LayerStats{
		f: {Bitrate: 2_500_000, Active: true},
		h: {Bitrate: 800_000, Active: true},
		q: {Bitrate: 250_000, Active: true},
	}
	ranked := []*sfu.Track{f, h, q}
	t0 := time.Unix(1000, 0)
	p := &layerPolicy{start: t0, layer: func(t *sfu.Track) sfu.LayerStats { return stats[t] }}
	name := func(t *sfu.Track) string { return t.Info().RID }

	cur := (*sfu.Track)(nil)
	steps := []struct {
		at       time.Duration
		estimate int
		want     *sfu.Track
		why      string
	}{
		{0, 0, h, "a new viewer starts on the middle layer"},
		{5 * time.Second, 0, h, "no estimate yet: stay"},
		{6 * time.Second, 1_000_000, h, "estimate 1.25× the layer: headroom starts"},
		{8 * time.Second, 1_000_000, h, "headroom held 2 s only"},
		{9 * time.Second, 1_000_000, f, "held 3 s: probe the layer above"},
		{9500 * time.Millisecond, 1_100_000, f, "probing: the estimate lags the new rate, but it is not falling"},
		{10 * time.Second, 900_000, h, "the estimate falls: the probe failed, down at once"},
		{11 * time.Second, 1_000_000, h, "headroom again"},
		{15 * time.Second, 1_000_000, h, "held 4 s, but f is backed off for 10 s"},
		{20 * time.Second, 1_000_000, f, "backoff over: probe again"},
		{21 * time.Second, 1_400_000, f, "the estimate grows with the probe"},
		{26 * time.Second, 3_000_000, f, "it fits"},
		{27 * time.Second, 300_000, q, "heavy congestion: straight to the layer that fits"},
	}
	for _, s := range steps {
		cur = p.choose(t0.Add(s.at), ranked, cur, s.estimate)
		if cur != s.want {
			t.Fatalf("at %v (%s): chose %s, want %s", s.at, s.why, name(cur), name(s.want))
		}
	}
	// A layer that stops is never kept; nobody stays on it.
	stats[q] = sfu.LayerStats{Bitrate: 250_000, Active: false}
	if got := p.choose(t0.Add(30*time.Second), ranked, q, 300_000); got == q {
		t.Fatal("stayed on an inactive layer")
	}
	// A viewer that never sends an estimate gets the best layer after 8 s.
	p2 := &layerPolicy{start: t0, layer: func(t *sfu.Track) sfu.LayerStats { return stats[t] }}
	if got := p2.choose(t0.Add(9*time.Second), ranked, h, 0); got != f {
		t.Fatalf("no estimate after 9 s: chose %s, want f", name(got))
	}
}
