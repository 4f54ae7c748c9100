package main

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/internal/client"
	"github.com/hybridcast/hybridcast/sfu/whep"
)

// publishClip publishes the small test clip to stream until the test ends.
func publishClip(ctx context.Context, t *testing.T, srv *server, stream string) *client.Publisher {
	t.Helper()
	pub, err := client.Publish(ctx, client.PublishConfig{
		URL: srv.URL() + "/whip/" + stream, Token: testToken, Loopback: true,
		Video: loadClip(t, "layer-q.h264"), Audio: loadClip(t, "audio.ogg"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	return pub
}

// play starts a pion viewer of stream and waits for its first video frame.
func play(ctx context.Context, t *testing.T, srv *server, stream string) *client.Viewer {
	t.Helper()
	v, err := client.Play(ctx, client.PlayConfig{ReceiveBuffer: testRcvBuf, URL: srv.URL() + "/whep/" + stream, Loopback: true})
	if err != nil {
		t.Fatalf("viewer of %s: %v", stream, err)
	}
	t.Cleanup(func() { _ = v.Close() })
	select {
	case <-v.VideoStarted():
	case <-ctx.Done():
		t.Fatalf("viewer of %s: no video", stream)
	}
	return v
}

// expectCapped plays stream and checks the refusal: 503, Retry-After, a
// plain-text reason containing reason, and Link headers to the stream's
// HLS playlist and DASH manifest.
func expectCapped(ctx context.Context, t *testing.T, srv *server, stream, reason string) {
	t.Helper()
	v, err := client.Play(ctx, client.PlayConfig{URL: srv.URL() + "/whep/" + stream, Loopback: true})
	if err == nil {
		_ = v.Close()
		t.Fatalf("viewer of %s past the cap was accepted", stream)
	}
	var he *client.HTTPError
	if !errors.As(err, &he) {
		t.Fatalf("viewer of %s past the cap: %v, want an HTTP error", stream, err)
	}
	if he.Status != http.StatusServiceUnavailable {
		t.Fatalf("viewer of %s past the cap: status %d (%s), want 503", stream, he.Status, he.Body)
	}
	if ra := he.Header.Get("Retry-After"); ra != "10" {
		t.Errorf("Retry-After = %q, want 10", ra)
	}
	if ct := he.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}
	if !strings.Contains(he.Body, reason) {
		t.Errorf("reason %q lacks %q", he.Body, reason)
	}
	// A player on another origin must be able to read them.
	if exp := he.Header.Get("Access-Control-Expose-Headers"); !strings.Contains(exp, "Link") || !strings.Contains(exp, "Retry-After") {
		t.Errorf("Access-Control-Expose-Headers = %q, want Link and Retry-After", exp)
	}
	links := he.Header.Values("Link")
	for _, want := range []string{
		`</hls/` + stream + `/index.m3u8>; rel="alternate"; type="application/vnd.apple.mpegurl"`,
		`</dash/` + stream + `/manifest.mpd>; rel="alternate"; type="application/dash+xml"`,
	} {
		if !slices.Contains(links, want) {
			t.Errorf("Link headers %q lack %q", links, want)
		}
	}
}

// TestWebRTCViewerCapPerStream: with --max-webrtc-viewers 1, the first
// viewer of a stream plays, the second gets 503 with Retry-After and links
// to HLS and DASH, while another stream still takes its own viewer. A
// refused offer (bad SDP) gives its slot back, and so does a viewer that
// leaves (DELETE): the next one plays.
func TestWebRTCViewerCapPerStream(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.MaxWebRTCViewers = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	publishClip(ctx, t, srv, "capped")
	publishClip(ctx, t, srv, "other")

	// A failed offer must not keep the slot.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL()+"/whep/capped", strings.NewReader("not sdp"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad offer: status %d, want 400", res.StatusCode)
	}

	first := play(ctx, t, srv, "capped")
	expectCapped(ctx, t, srv, "capped", `stream "capped" has reached its limit of 1 WebRTC viewers`)
	play(ctx, t, srv, "other") // the cap is per stream

	if err := first.Close(); err != nil { // DELETE: the slot is free when it returns
		t.Fatal(err)
	}
	play(ctx, t, srv, "capped")
	if got := srv.whep.Rejections(); got[whep.RejectStreamCap] != 1 || got[whep.RejectServerCap] != 0 {
		t.Fatalf("rejections = %v, want one at the stream cap", got)
	}
}

// TestWebRTCViewerCapTotal: with --max-webrtc-viewers-total 1, one viewer
// of one stream fills the server: a viewer of another stream gets 503
// until the first leaves.
func TestWebRTCViewerCapTotal(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.MaxWebRTCViewersTotal = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	publishClip(ctx, t, srv, "one")
	publishClip(ctx, t, srv, "two")

	first := play(ctx, t, srv, "one")
	expectCapped(ctx, t, srv, "two", "the server has reached its limit of 1 WebRTC viewers")
	expectCapped(ctx, t, srv, "one", "the server has reached its limit of 1 WebRTC viewers")
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	play(ctx, t, srv, "two")
	if got := srv.whep.Rejections(); got[whep.RejectServerCap] != 2 || got[whep.RejectStreamCap] != 0 {
		t.Fatalf("rejections = %v, want two at the server cap", got)
	}
}
