package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/internal/browsertest"
	"github.com/hybridcast/hybridcast/sfu"
)

// TestChromiumSimulcast: headless Chromium publishes a 1280x720 fake camera
// with three encodings; the server reports three active layers with
// distinct resolutions, and a Chromium viewer gets the layers chosen for it.
func TestChromiumSimulcast(t *testing.T) {
	b := browsertest.New(t)
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	pub, err := b.NewPage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, srv.URL()+"/whip/sim", testToken, true); err != nil {
		t.Fatal(err)
	}
	// The API is polled: a layer's resolution is known at its first keyframe
	// and its bitrate after a second; no event announces either.
	var layers []sfu.TrackEntry
	waitForCtx(ctx, t, func() bool {
		layers = videoLayers(getStreams(t, srv.URL()))
		if len(layers) != 3 {
			return false
		}
		sizes := map[string]bool{}
		for _, l := range layers {
			if !l.Active || l.Width == 0 || l.Bitrate == 0 {
				return false
			}
			sizes[fmt.Sprintf("%dx%d", l.Width, l.Height)] = true
		}
		return len(sizes) == 3
	})
	for _, l := range layers {
		t.Logf("layer %s: %dx%d %.0f fps %d bit/s", l.RID, l.Width, l.Height, l.FPS, l.Bitrate)
	}

	viewer, err := b.NewPage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := viewer.Play(ctx, srv.URL()+"/whep/sim", browsertest.WithoutGathering()); err != nil {
		t.Fatal(err)
	}
	st, err := viewer.WaitFor(ctx, func(s browsertest.Stats) bool { return s.Viewer != nil && s.Viewer.FramesDecoded > 30 })
	if err != nil {
		t.Fatal(err)
	}
	v := getStreams(t, srv.URL())[0].ViewerList[0]
	t.Logf("viewer decodes %dx%d; server: layer %q, estimate %d bit/s", st.Viewer.FrameWidth, st.Viewer.FrameHeight, v.Layer, v.EstimatedBitrate)
	if v.Layer != "m" {
		t.Fatalf("a new viewer should start on the middle layer, got %q", v.Layer)
	}
	// The viewer reports its bandwidth (REMB, thanks to abs-send-time)
	// within a few seconds; the API shows it. (Polled: no event for it.)
	waitForCtx(ctx, t, func() bool { return getStreams(t, srv.URL())[0].ViewerList[0].EstimatedBitrate > 0 })
	v = getStreams(t, srv.URL())[0].ViewerList[0]
	t.Logf("viewer REMB estimate %d bit/s, layer %q", v.EstimatedBitrate, v.Layer)
}

func videoLayers(streams []sfu.StreamStats) []sfu.TrackEntry {
	var out []sfu.TrackEntry
	for _, s := range streams {
		for _, tr := range s.Tracks {
			if tr.Kind == "video" {
				out = append(out, tr)
			}
		}
	}
	return out
}

// waitForCtx polls cond until ctx ends: for server state that has no event.
func waitForCtx(ctx context.Context, t testing.TB, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal("condition not reached before the deadline")
		case <-time.After(50 * time.Millisecond):
		}
	}
}
