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

// TestViewersOffDirectPath: viewers the direct send path (sfu/rtc) does
// not fit stay on pion's write path and still get every frame: one whose
// ICE runs over TCP (the server's ICE-TCP; the direct path writes to the
// UDP socket), and one that offers setup:passive (the server is then the
// DTLS client and cannot capture the keys).
func TestViewersOffDirectPath(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  client.PlayConfig
	}{
		{"ice-tcp", client.PlayConfig{TCP: true}},
		{"setup-passive", client.PlayConfig{OfferPassive: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			pub, err := client.Publish(ctx, client.PublishConfig{
				URL: srv.URL() + "/whip/off", Token: testToken, Loopback: true, Video: loadClip(t, "vp8-360p.ivf"),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			cfg := tc.cfg
			cfg.URL, cfg.Loopback = srv.URL()+"/whep/off", true
			v, err := client.Play(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			waitForCtx(ctx, t, func() bool { return v.Stats().Video.Frames >= 60 })
			st := v.Stats().Video
			t.Logf("%s viewer: %s, %d packets, %d frames, %d keyframes, lost %d", tc.name, st.MimeType, st.Packets, st.Frames, st.Keyframes, st.Lost)
			if st.Lost != 0 || st.Keyframes == 0 {
				t.Errorf("lost %d packets, saw %d keyframes", st.Lost, st.Keyframes)
			}
			streams := getStreams(t, srv.URL())
			if len(streams) != 1 || len(streams[0].ViewerList) != 1 || streams[0].ViewerList[0].SendPath != "pion" {
				t.Fatalf("/api/streams: want one viewer on pion's send path: %+v", streams)
			}
		})
	}
}
