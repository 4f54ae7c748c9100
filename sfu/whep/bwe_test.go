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
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	name := func(t *sfu.Track) string { return t.Info().RID }

	steps := []struct {
		at       time.Duration
		cur      *sfu.Track
		estimate int
		want     *sfu.Track
		why      string
	}{
		{0, nil, 0, h, "a new viewer starts on the middle layer"},
		{500 * time.Millisecond, h, 0, h, "no estimate yet: stay"},
		{2500 * time.Millisecond, h, 0, f, "no estimate for 2 s: the best layer"},
		{3 * time.Second, f, 1_000_000, h, "congestion: down at once"},
		{3100 * time.Millisecond, h, 250_000, q, "worse: down again"},
		{4 * time.Second, q, 5_000_000, q, "a high estimate: wait"},
		{6 * time.Second, q, 5_000_000, q, "still waiting (2 s < 3 s)"},
		{7 * time.Second, q, 5_000_000, f, "held 3 s: up"},
		{8 * time.Second, f, 2_000_000, h, "2.5 Mbit/s no longer fits 85 % of 2 Mbit/s"},
	}
	for _, s := range steps {
		if got := p.choose(at(s.at), ranked, s.cur, s.estimate); got != s.want {
			t.Fatalf("at %v (%s): chose %s, want %s", s.at, s.why, name(got), name(s.want))
		}
	}
	// A layer that stops is never chosen; nobody stays on it.
	stats[f] = sfu.LayerStats{Bitrate: 2_500_000, Active: false}
	if got := p.choose(at(20*time.Second), ranked, f, 10_000_000); got != h {
		t.Fatalf("current layer inactive: chose %s, want h", name(got))
	}
}
