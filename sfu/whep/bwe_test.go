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
	p := &layerPolicy{start: t0, canPad: true, layer: func(t *sfu.Track) sfu.LayerStats { return stats[t] }}
	name := func(t *sfu.Track) string { return t.Info().RID }

	cur := (*sfu.Track)(nil)
	steps := []struct {
		at       time.Duration
		estimate int
		want     *sfu.Track
		padding  int
		why      string
	}{
		{0, 0, h, 0, "a new viewer starts on the middle layer"},
		{5 * time.Second, 0, h, 0, "no estimate yet: stay"},
		{6 * time.Second, 1_000_000, h, 0, "estimate above the layer: headroom starts"},
		{8 * time.Second, 1_000_000, h, 0, "headroom held 2 s only"},
		{9 * time.Second, 1_000_000, h, 200_000, "held 3 s, f does not fit: pad up to the estimate"},
		{10 * time.Second, 1_500_000, h, 700_000, "the estimate grows with the probe, and the padding with it"},
		{11 * time.Second, 1_300_000, h, 500_000, "a dip above 90 % of the start is not overuse"},
		{12 * time.Second, 850_000, h, 0, "below 90 % of the probe's start: it failed, stop padding"},
		{13 * time.Second, 1_000_000, h, 0, "headroom again"},
		{17 * time.Second, 1_000_000, h, 0, "held 4 s, but f is backed off for 10 s"},
		{22 * time.Second, 1_000_000, h, 200_000, "backoff over: probe again"},
		{25 * time.Second, 2_600_000, f, 0, "the estimate reached f: up"},
		{26 * time.Second, 2_700_000, f, 0, "just stepped up, the estimate holds"},
		{31 * time.Second, 2_200_000, f, 0, "within 80 % of the layer: no congestion"},
		{32 * time.Second, 300_000, q, 0, "heavy congestion: straight to the layer that fits"},
	}
	for _, s := range steps {
		cur = p.choose(t0.Add(s.at), ranked, cur, s.estimate)
		if cur != s.want || p.padding != s.padding {
			t.Fatalf("at %v (%s): chose %s with %d bit/s of padding, want %s with %d", s.at, s.why, name(cur), p.padding, name(s.want), s.padding)
		}
	}
	// A probe that does not reach the next layer in probeTimeout stops.
	p3 := &layerPolicy{start: t0, canPad: true, layer: func(t *sfu.Track) sfu.LayerStats { return stats[t] }}
	for at := time.Duration(0); at <= 24*time.Second; at += 500 * time.Millisecond {
		p3.choose(t0.Add(at), ranked, h, 1_200_000)
		switch probing := p3.padding > 0; {
		case at >= upHold && at < upHold+probeTimeout && !probing:
			t.Fatalf("at %v: not probing", at)
		case at >= upHold+probeTimeout && probing:
			t.Fatalf("at %v: still probing after %v", at, probeTimeout)
		}
	}
	// A layer that stops is never kept; nobody stays on it.
	stats[q] = sfu.LayerStats{Bitrate: 250_000, Active: false}
	if got := p.choose(t0.Add(40*time.Second), ranked, q, 300_000); got == q {
		t.Fatal("stayed on an inactive layer")
	}
	// A viewer without RTX gets no padding: the layer above is the probe,
	// once the estimate has stayed 1.2 times the current layer for 3 s.
	p4 := &layerPolicy{start: t0, layer: func(t *sfu.Track) sfu.LayerStats { return stats[t] }}
	for _, s := range []struct {
		at       time.Duration
		estimate int
		want     *sfu.Track
	}{{0, 1_000_000, h}, {3 * time.Second, 1_000_000, f}, {4 * time.Second, 1_100_000, f}} {
		cur4 := h
		if s.at > 3*time.Second {
			cur4 = f
		}
		if got := p4.choose(t0.Add(s.at), ranked, cur4, s.estimate); got != s.want || p4.padding != 0 {
			t.Fatalf("no RTX, at %v: chose %s with %d bit/s of padding, want %s without", s.at, name(got), p4.padding, name(s.want))
		}
	}
	// A viewer that never sends an estimate gets the best layer after 8 s.
	p2 := &layerPolicy{start: t0, layer: func(t *sfu.Track) sfu.LayerStats { return stats[t] }}
	if got := p2.choose(t0.Add(9*time.Second), ranked, h, 0); got != f {
		t.Fatalf("no estimate after 9 s: chose %s, want f", name(got))
	}
}
