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
// (which answers keyframe requests at once). It also reports what the start
// costs the playback after it: the mean time the viewer's first 90 frames
// (3 s) spent in its jitter buffer, and its freezes then. Run with a fixed
// count:
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
	var firsts, jitter []time.Duration
	var freezes int64
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
		st, err = v.WaitFor(ctx, func(s browsertest.Stats) bool { return s.Viewer != nil && s.Viewer.JitterBufferEmittedCount >= 90 })
		if err != nil {
			b.Fatal(err)
		}
		jitter = append(jitter, time.Duration(st.Viewer.JitterBufferDelay/float64(st.Viewer.JitterBufferEmittedCount)*float64(time.Second)))
		freezes += st.Viewer.FreezeCount
		_ = v.Stop(ctx)
		v.Close()
	}
	slices.Sort(firsts)
	q := func(p float64) float64 { return float64(firsts[int(p*float64(len(firsts)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "ms-first-frame-p50")
	b.ReportMetric(q(0.9), "ms-first-frame-p90")
	b.ReportMetric(float64(firsts[len(firsts)-1].Microseconds())/1000, "ms-first-frame-max")
	slices.Sort(jitter)
	b.ReportMetric(float64(jitter[len(jitter)/2].Microseconds())/1000, "ms-jitter-buffer-p50")
	b.ReportMetric(float64(jitter[len(jitter)-1].Microseconds())/1000, "ms-jitter-buffer-max")
	b.ReportMetric(float64(freezes)/float64(len(firsts)), "freezes/viewer")
	b.Logf("first frame after connect start: %v", firsts)
	b.Logf("mean jitter buffer delay of the first 90 frames: %v", jitter)
}
