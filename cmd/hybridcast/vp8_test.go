package main

import (
	"context"
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/internal/client"
)

// TestVP8Forwarding: a VP8 publisher (the IVF test clip) reaches a viewer
// through the SFU, which answers VP8 when H.264 is not offered, and the
// viewer's first packet starts a key frame.
func TestVP8Forwarding(t *testing.T) {
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub, err := client.Publish(ctx, client.PublishConfig{
		URL: srv.URL() + "/whip/vp8", Token: testToken, Loopback: true, Video: loadClip(t, "vp8-360p.ivf"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	v, err := client.Play(ctx, client.PlayConfig{URL: srv.URL() + "/whep/vp8", Loopback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	waitForCtx(ctx, t, func() bool { return v.Stats().Video.Packets >= 100 })
	st := v.Stats().Video
	t.Logf("viewer: %s, %d packets, %d frames, %d keyframes, lost %d", st.MimeType, st.Packets, st.Frames, st.Keyframes, st.Lost)
	if st.MimeType != "video/VP8" || st.Lost != 0 {
		t.Fatalf("viewer got %s with %d lost packets", st.MimeType, st.Lost)
	}
	layers := videoLayers(getStreams(t, srv.URL()))
	if len(layers) != 1 || layers[0].Width != 640 || layers[0].Height != 360 {
		t.Fatalf("VP8 layer measured as %+v, want 640x360 from the key frame header", layers)
	}
}
