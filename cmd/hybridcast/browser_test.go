package main

import (
	"context"
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/internal/browsertest"
)

// TestChromiumPublishAndPlay: headless Chromium publishes its fake camera
// through WHIP; a second Chromium tab plays the stream through WHEP.
func TestChromiumPublishAndPlay(t *testing.T) {
	b := browsertest.New(t)
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	pub, err := b.NewPage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, srv.URL()+"/whip/cam", testToken, false); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.WaitFor(ctx, func(s browsertest.Stats) bool {
		return s.Publisher != nil && s.Publisher.ConnectionState == "connected"
	}); err != nil {
		t.Fatal(err)
	}

	viewer, err := b.NewPage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := viewer.Play(ctx, srv.URL()+"/whep/cam", browsertest.WithoutGathering()); err != nil {
		t.Fatal(err)
	}
	st, err := viewer.WaitFor(ctx, func(s browsertest.Stats) bool {
		return s.Viewer != nil && s.Viewer.FramesDecoded >= 30 && s.Viewer.AudioPacketsReceived > 0
	})
	if err != nil {
		t.Fatal(err)
	}
	ff, _ := st.Timings.FirstFrame()
	t.Logf("viewer: %d frames decoded at %dx%d, %d audio packets; first frame %v after Play (answer %.0f ms, connected %.0f ms)",
		st.Viewer.FramesDecoded, st.Viewer.FrameWidth, st.Viewer.FrameHeight, st.Viewer.AudioPacketsReceived,
		ff, st.Timings.AnswerMs, st.Timings.ConnectedMs)
	// Chromium offers setup:actpass over UDP: the frames it decoded came
	// on the direct send path (sfu/rtc), encrypted with keys of our own
	// derivation.
	if streams := getStreams(t, srv.URL()); len(streams) != 1 || len(streams[0].ViewerList) != 1 ||
		streams[0].ViewerList[0].SendPath != "direct" {
		t.Errorf("/api/streams: want one viewer on the direct send path: %+v", streams)
	}

	if err := viewer.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pub.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return srv.whip.Sessions() == 0 && srv.whep.Sessions() == 0 })
}

// waitFor polls cond: used only for server-side counters that have no event.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
