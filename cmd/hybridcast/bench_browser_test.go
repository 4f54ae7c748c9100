package main

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/internal/browsertest"
)

// BenchmarkChromiumFirstFrame measures how long a headless Chromium WHEP
// viewer takes from the start of its connection (the call to whepPlay: offer,
// POST, ICE, DTLS) to its first decoded frame, with a Chromium publisher
// (which answers keyframe requests at once). Run with a fixed count:
//
//	go test -run '^$' -bench ChromiumFirstFrame -benchtime 10x ./cmd/hybridcast/
func BenchmarkChromiumFirstFrame(b *testing.B) {
	br := browsertest.New(b)
	srv := startServer(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	pub, err := br.NewPage(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := pub.Publish(ctx, srv.URL()+"/whip/ttff", testToken, false); err != nil {
		b.Fatal(err)
	}
	if _, err := pub.WaitFor(ctx, func(s browsertest.Stats) bool {
		return s.Publisher != nil && s.Publisher.Video[""].FramesEncoded > 10
	}); err != nil {
		b.Fatal(err)
	}
	var firsts []time.Duration
	for b.Loop() {
		v, err := br.NewPage(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := v.Play(ctx, srv.URL()+"/whep/ttff", browsertest.WithoutGathering()); err != nil {
			b.Fatal(err)
		}
		st, err := v.WaitFor(ctx, func(s browsertest.Stats) bool { _, ok := s.Timings.FirstFrame(); return ok })
		if err != nil {
			b.Fatal(err)
		}
		ff, _ := st.Timings.FirstFrame()
		firsts = append(firsts, ff)
		_ = v.Stop(ctx)
		v.Close()
	}
	slices.Sort(firsts)
	q := func(p float64) float64 { return float64(firsts[int(p*float64(len(firsts)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "ms-first-frame-p50")
	b.ReportMetric(q(0.9), "ms-first-frame-p90")
	b.ReportMetric(float64(firsts[len(firsts)-1].Microseconds())/1000, "ms-first-frame-max")
	b.Logf("first frame after connect start: %v", firsts)
}
