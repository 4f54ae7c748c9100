package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/internal/browsertest"
)

// watchState is window.hc of the watch page.
type watchState struct {
	Path          string  `json:"path"`
	LatencyMs     *int    `json:"latencyMs"`
	Width         int     `json:"width"`
	Height        int     `json:"height"`
	Error         *string `json:"error"`
	Reason        *string `json:"reason"`
	HLSPlayer     *string `json:"hlsPlayer"`
	Audio         *string `json:"audio"`
	StartedMs     int     `json:"startedMs"`
	FallbackMs    *int    `json:"fallbackMs"`
	Paused        bool    `json:"paused"`
	ReadyState    int     `json:"readyState"`
	BufferedEnd   float64 `json:"bufferedEnd"`
	FramesDecoded int     `json:"framesDecoded"`
	CurrentTime   float64 `json:"currentTime"`
	Stalls        int     `json:"stalls"`
	StallMs       int     `json:"stallMs"`
	PlaybackRate  float64 `json:"playbackRate"`
	Level         *int    `json:"level"`
	LevelSwitches int     `json:"levelSwitches"`
	Levels        []struct {
		ID     string `json:"id"`
		Height int    `json:"height"`
	} `json:"levels"`
}

// publishState is window.hc of the publish page.
type publishState struct {
	State  string  `json:"state"`
	Error  *string `json:"error"`
	Codec  string  `json:"codec"`
	Layers map[string]struct {
		Width   int     `json:"width"`
		Height  int     `json:"height"`
		FPS     float64 `json:"fps"`
		Bitrate int     `json:"bitrate"`
	} `json:"layers"`
}

// dashboardState is window.hc of the dashboard.
type dashboardState struct {
	Updates int `json:"updates"`
	Streams []struct {
		Name          string  `json:"name"`
		Live          bool    `json:"live"`
		Viewers       int     `json:"webrtc_viewers"`
		UptimeSeconds float64 `json:"uptime_seconds"`
		Tracks        []struct {
			Kind string `json:"kind"`
		} `json:"tracks"`
	} `json:"streams"`
}

const hcExpr = "JSON.parse(JSON.stringify(window.hc))"

// needPlayers skips (or fails in CI) a test whose server has no hls.js.
func needPlayers(t *testing.T, srv *server) {
	t.Helper()
	if srv.players == nil {
		browsertest.SkipOrFail(t, "hls.js is not installed in web/node_modules: run scripts/setup")
	}
}

// shoot saves desktop and phone screenshots of the tab.
func shoot(ctx context.Context, t *testing.T, p *browsertest.Page, name string) {
	t.Helper()
	for _, v := range []struct {
		suffix string
		vp     browsertest.Viewport
	}{{"desktop", browsertest.Desktop}, {"phone", browsertest.Phone}} {
		if _, err := p.Screenshot(ctx, name+"-"+v.suffix, v.vp); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPagesPublishWatchDashboard: Chromium publishes its fake camera from
// /publish/t with the token (simulcast by default): the page shows three
// layers and the server reports three active layers. /watch/t plays over
// WebRTC (frames decoded grow), its quality menu pins a layer through the
// WHEP layer extension, and the dashboard lists the stream live with its
// layers and the viewer. Screenshots of the three pages at desktop and
// phone width are kept as artifacts.
func TestPagesPublishWatchDashboard(t *testing.T) {
	b := browsertest.New(t)
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	pub, err := b.Open(ctx, srv.URL()+"/publish/t?token="+testToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := browsertest.Eval[any](ctx, pub, "window.hcStart()"); err != nil {
		t.Fatal(err)
	}
	ps, err := browsertest.WaitEval(ctx, pub, hcExpr, func(s publishState) bool {
		if s.Error != nil {
			return true
		}
		n := 0
		for _, l := range s.Layers {
			if l.Width > 0 && l.Bitrate > 0 {
				n++
			}
		}
		return s.State == "live" && n == 3
	})
	if err != nil || ps.Error != nil {
		t.Fatalf("publish page: %v; state %+v, error %v", err, ps, deref(ps.Error))
	}
	t.Logf("publish page: %s, codec %s, layers %+v", ps.State, ps.Codec, ps.Layers)
	waitForCtx(ctx, t, func() bool {
		n := 0
		for _, l := range videoLayers(getStreams(t, srv.URL())) {
			if l.Active && l.Width > 0 {
				n++
			}
		}
		return n == 3
	})

	watch, err := b.Open(ctx, srv.URL()+"/watch/t")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := browsertest.WaitEval(ctx, watch, hcExpr, func(s watchState) bool {
		return s.Path == "webrtc" && s.FramesDecoded > 0 || s.Path == "hls" || s.Error != nil
	})
	if err != nil || ws.Path != "webrtc" {
		t.Fatalf("watch page: %v; state %+v", err, ws)
	}
	first := ws.FramesDecoded
	// The quality menu lists the active layers. The publishing Chromium
	// may pause its top layer at any time (its own bandwidth or CPU
	// adaptation: in one CI run h fell to 5 fps at 104 kbit/s and then
	// stopped for two minutes), so two layers are enough to pin one.
	ws, err = browsertest.WaitEval(ctx, watch, hcExpr, func(s watchState) bool {
		return s.FramesDecoded > first+20 && len(s.Levels) >= 2 && s.Width > 0
	})
	if err != nil || ws.Path != "webrtc" {
		t.Fatalf("watch page: %v; state %+v", err, ws)
	}
	t.Logf("watch page: %s %dx%d, %d frames, latency %v ms, layers %+v", ws.Path, ws.Width, ws.Height, ws.FramesDecoded, deref(ws.LatencyMs), ws.Levels)

	// Pin the smallest layer from the quality menu; the server follows.
	low := ws.Levels[len(ws.Levels)-1].ID
	if _, err := browsertest.Eval[bool](ctx, watch, fmt.Sprintf(
		`(() => { const q = document.getElementById('quality'); q.value = %q; q.dispatchEvent(new Event('change')); return true; })()`, low)); err != nil {
		t.Fatal(err)
	}
	waitForCtx(ctx, t, func() bool {
		st := getStreams(t, srv.URL())
		return len(st) == 1 && len(st[0].ViewerList) == 1 && st[0].ViewerList[0].Pinned == low && st[0].ViewerList[0].Layer == low
	})
	if _, err := browsertest.WaitEval(ctx, watch, hcExpr, func(s watchState) bool { return s.Height > 0 && s.Height <= 180 }); err != nil {
		t.Fatal(err)
	}

	dash, err := b.Open(ctx, srv.URL()+"/")
	if err != nil {
		t.Fatal(err)
	}
	ds, err := browsertest.WaitEval(ctx, dash, hcExpr, func(s dashboardState) bool {
		return s.Updates >= 2 && len(s.Streams) == 1 && s.Streams[0].Live && s.Streams[0].Viewers == 1 && len(s.Streams[0].Tracks) == 4
	})
	if err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	t.Logf("dashboard: %+v", ds.Streams)
	text, err := browsertest.Eval[string](ctx, dash, "document.body.innerText")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"/hls/t/index.m3u8", "/dash/t/manifest.mpd", "live", "uptime"} {
		if !strings.Contains(text, want) {
			t.Errorf("dashboard text lacks %q:\n%s", want, text)
		}
	}

	shoot(ctx, t, pub, "publish")
	shoot(ctx, t, watch, "watch-webrtc")
	shoot(ctx, t, dash, "dashboard")

	// Stop: DELETE on the WHIP resource ends the stream.
	if _, err := browsertest.Eval[any](ctx, pub, "window.hcStop()"); err != nil {
		t.Fatal(err)
	}
	waitForCtx(ctx, t, func() bool { return srv.whip.Sessions() == 0 })
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// watchTest starts a server (changed by mutate), checks that it serves the
// players, starts the browser and publishes the simulcast ladder with
// audio as stream "t", for a watch page test of at most two minutes.
func watchTest(t *testing.T, mutate ...func(*Config)) (*server, *browsertest.Browser, context.Context) {
	t.Helper()
	srv := startServer(t, mutate...)
	needPlayers(t, srv)
	b := browsertest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	t.Cleanup(cancel)
	publishLadder(ctx, t, srv, "t")
	return srv, b, ctx
}

// TestWatchFallsBackAtViewerCap: with --max-webrtc-viewers 1 the first
// watch page plays over WebRTC; the second gets 503 and plays LL-HLS with
// hls.js, time advancing, and says so on the page.
func TestWatchFallsBackAtViewerCap(t *testing.T) {
	srv, b, ctx := watchTest(t, func(c *Config) { c.MaxWebRTCViewers = 1 })

	first, err := b.Open(ctx, srv.URL()+"/watch/t")
	if err != nil {
		t.Fatal(err)
	}
	if ws, err := browsertest.WaitEval(ctx, first, hcExpr, func(s watchState) bool {
		return s.Path == "webrtc" && s.FramesDecoded > 0 || s.Path == "hls"
	}); err != nil || ws.Path != "webrtc" {
		t.Fatalf("first viewer: %v; state %+v", err, ws)
	}

	second, err := b.Open(ctx, srv.URL()+"/watch/t")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := browsertest.WaitEval(ctx, second, hcExpr, func(s watchState) bool {
		return s.Path == "hls" && s.CurrentTime > 2 && s.Width > 0 || s.Error != nil || s.Path == "webrtc"
	})
	if err != nil || ws.Path != "hls" || ws.Error != nil {
		t.Fatalf("second viewer: %v; state %+v", err, ws)
	}
	if ws.Reason == nil || !strings.Contains(*ws.Reason, "limit") {
		t.Errorf("fallback reason %v, want the viewer limit", deref(ws.Reason))
	}
	t.Logf("second viewer: %s via %v, %dx%d, t=%.1f s, latency %v ms, reason %q", ws.Path, deref(ws.HLSPlayer), ws.Width, ws.Height, ws.CurrentTime, deref(ws.LatencyMs), deref(ws.Reason))
	if deref(ws.Audio) != "opus" {
		t.Errorf("audio %q over LL-HLS in Chromium, want opus", deref(ws.Audio))
	}
	before := ws.CurrentTime
	if _, err := browsertest.WaitEval(ctx, second, hcExpr, func(s watchState) bool { return s.CurrentTime > before+1 && len(s.Levels) == 3 }); err != nil {
		t.Fatal(err)
	}
	text, err := browsertest.Eval[string](ctx, second, "document.body.innerText")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "LL-HLS") || !strings.Contains(text, "limit") {
		t.Errorf("the page does not say it plays LL-HLS because of the limit:\n%s", text)
	}
	shoot(ctx, t, second, "watch-hls")
}

// TestWatchHLSWithoutOpus plays /watch in a browser whose MSE cannot decode
// Opus in MP4 and that has no WebRTC, as Safari before 17 on a network
// that blocks WebRTC. Safari cannot run here, so an init script makes
// Chromium answer MediaSource.isTypeSupported(opus) with false and removes
// RTCPeerConnection. Every variant names opus in its CODECS, so hls.js
// would find none playable; the page must play the video without sound,
// keep the quality ladder, and say why.
func TestWatchHLSWithoutOpus(t *testing.T) {
	srv, b, ctx := watchTest(t)

	const noOpusNoWebRTC = `(() => {
	  for (const MS of [window.MediaSource, window.ManagedMediaSource]) {
	    if (!MS) continue;
	    const real = MS.isTypeSupported.bind(MS);
	    MS.isTypeSupported = type => /opus/i.test(type) ? false : real(type);
	  }
	  window.RTCPeerConnection = undefined;
	})();`
	page, err := b.Open(ctx, srv.URL()+"/watch/t", browsertest.WithInitScript(noOpusNoWebRTC))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := browsertest.Eval[bool](ctx, page, `MediaSource.isTypeSupported('audio/mp4; codecs="opus"')`); err != nil || ok {
		t.Fatalf("the init script did not take: opus supported %v, %v", ok, err)
	}
	ws, err := browsertest.WaitEval(ctx, page, hcExpr, func(s watchState) bool {
		return s.Path == "hls" && s.CurrentTime > 2 && s.Width > 0 && len(s.Levels) == 3 || s.Error != nil || s.Path == "webrtc"
	})
	if err != nil || ws.Path != "hls" || ws.Error != nil {
		t.Fatalf("watch without Opus: %v; state %+v", err, ws)
	}
	if deref(ws.Audio) != "none" {
		t.Errorf("audio %q, want none", deref(ws.Audio))
	}
	audioBytes, err := browsertest.Eval[int](ctx, page, "document.getElementById('video').webkitAudioDecodedByteCount")
	if err != nil || audioBytes != 0 {
		t.Errorf("audio decoded: %d bytes, %v; want none", audioBytes, err)
	}
	text, err := browsertest.Eval[string](ctx, page, "document.body.innerText")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "Opus") || !strings.Contains(text, "without sound") {
		t.Errorf("the page does not say it plays without sound for lack of Opus:\n%s", text)
	}
	t.Logf("without Opus: %s via %v, %dx%d, t=%.1f s, %d levels, reason %q", ws.Path, deref(ws.HLSPlayer), ws.Width, ws.Height, ws.CurrentTime, len(ws.Levels), deref(ws.Reason))
	shoot(ctx, t, page, "watch-hls-no-opus")
}

// TestWatchFallsBackWhenWebRTCUnreachable: Chromium with the WebRTC IP
// handling policy "disable_non_proxied_udp" (set in its profile's
// preferences, as a user or an administrator would; the command-line
// switch is not honoured by the headless browser) sends WebRTC only over
// TCP through a proxy. With no proxy and a server without ICE-TCP, WebRTC
// cannot connect; the watch page gives up after its 4 s connect timeout
// and plays LL-HLS. Nothing leaves loopback.
func TestWatchFallsBackWhenWebRTCUnreachable(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.disableICETCP = true })
	needPlayers(t, srv)
	profile := t.TempDir()
	if err := os.MkdirAll(filepath.Join(profile, "Default"), 0o700); err != nil {
		t.Fatal(err)
	}
	prefs := `{"webrtc":{"ip_handling_policy":"disable_non_proxied_udp"}}`
	if err := os.WriteFile(filepath.Join(profile, "Default", "Preferences"), []byte(prefs), 0o600); err != nil {
		t.Fatal(err)
	}
	b := browsertest.New(t, browsertest.WithFlag("user-data-dir", profile))
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	publishLadder(ctx, t, srv, "t")

	p, err := b.Open(ctx, srv.URL()+"/watch/t")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := browsertest.WaitEval(ctx, p, hcExpr, func(s watchState) bool { return s.Path == "hls" || s.Path == "webrtc" })
	if err != nil || ws.Path != "hls" {
		t.Fatalf("watch page: %v; state %+v", err, ws)
	}
	// The page's own clock, from the start of its script (loading the
	// page itself is not part of the WebRTC attempt; on a loaded test
	// machine it takes a second).
	if ws.FallbackMs == nil {
		t.Fatal("no fallback time")
	}
	took := *ws.FallbackMs - ws.StartedMs
	t.Logf("fell back %d ms after the page's script started (%d ms after navigation): %q", took, *ws.FallbackMs, deref(ws.Reason))
	if took > 5000 {
		t.Errorf("fallback after %d ms, want within 5000", took)
	}
	ws, err = browsertest.WaitEval(ctx, p, hcExpr, func(s watchState) bool { return s.CurrentTime > 1 || s.Error != nil })
	if err != nil || ws.Error != nil {
		t.Fatalf("HLS after the fallback: %v; state %+v", err, ws)
	}
	if n := srv.whep.Sessions(); n != 0 {
		t.Errorf("%d WHEP sessions left after the fallback, want 0 (the page DELETEs its session)", n)
	}
}

// TestWatchHLSOnRequest: /watch/t?hls plays LL-HLS without trying WebRTC,
// says why, and reports its latency against PROGRAM-DATE-TIME and its
// stalls in window.hc (BenchmarkWatchHLSLatency reads them).
func TestWatchHLSOnRequest(t *testing.T) {
	srv, b, ctx := watchTest(t)

	p, err := b.Open(ctx, srv.URL()+"/watch/t?hls")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := browsertest.WaitEval(ctx, p, hcExpr, func(s watchState) bool {
		return s.Path == "hls" && s.CurrentTime > 2 && s.LatencyMs != nil || s.Error != nil || s.Path == "webrtc"
	})
	if err != nil || ws.Path != "hls" || ws.Error != nil {
		t.Fatalf("watch page: %v; state %+v", err, ws)
	}
	if ws.Reason == nil || !strings.Contains(*ws.Reason, "?hls") {
		t.Errorf("reason %q, want one naming ?hls", deref(ws.Reason))
	}
	if srv.whep.Sessions() != 0 {
		t.Errorf("%d WHEP sessions, want none: ?hls must not try WebRTC", srv.whep.Sessions())
	}
	if l := *ws.LatencyMs; l <= 0 || l > 10000 {
		t.Errorf("latency %d ms, want a positive figure below 10 s", l)
	}
	t.Logf("?hls: t=%.1f s, latency %d ms, %d stalls, rate %.2f", ws.CurrentTime, *ws.LatencyMs, ws.Stalls, ws.PlaybackRate)
}

// TestPagesWithoutPlayers: with a web directory without the players the
// server starts, /assets/ says how to install them, and a watch page that
// cannot play WebRTC says that the HLS fallback is unavailable.
func TestPagesWithoutPlayers(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "package.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, func(c *Config) { c.WebDir = dir })
	if srv.players != nil {
		t.Fatal("players loaded from an empty directory")
	}
	code, _, body := httpGet(t, srv.URL()+"/assets/hls.min.js")
	if code != http.StatusNotFound || !strings.Contains(string(body), "scripts/setup") {
		t.Fatalf("/assets/hls.min.js: %d %s", code, body)
	}
	code, _, body = httpGet(t, srv.URL()+"/watch/t")
	if code != http.StatusOK || strings.Contains(string(body), "hls.min.js") {
		t.Fatalf("/watch/t: %d, loads hls.js: %v", code, strings.Contains(string(body), "hls.min.js"))
	}
	code, _, _ = httpGet(t, srv.URL()+"/watch/bad%20name")
	if code != http.StatusBadRequest {
		t.Fatalf("/watch/bad name: %d, want 400", code)
	}

	b := browsertest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Nobody publishes "t": WHEP answers 404, the page falls back, and
	// has no HLS player.
	p, err := b.Open(ctx, srv.URL()+"/watch/t")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := browsertest.WaitEval(ctx, p, hcExpr, func(s watchState) bool { return s.Error != nil })
	if err != nil || !strings.Contains(*ws.Error, "HLS fallback unavailable") || !strings.Contains(*ws.Error, "scripts/setup") {
		t.Fatalf("watch page: %v; state %+v", err, ws)
	}
	t.Logf("watch page: %s", *ws.Error)
}

// TestAPIStreamsUptimeAndURLs: GET /api/streams gives each live stream its
// uptime and its URLs.
func TestAPIStreamsUptimeAndURLs(t *testing.T) {
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	publishClip(ctx, t, srv, "up")
	var got struct {
		Streams []apiStream `json:"streams"`
	}
	waitForCtx(ctx, t, func() bool {
		_, _, body := httpGet(t, srv.URL()+"/api/streams")
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		return len(got.Streams) == 1 && got.Streams[0].Live && got.Streams[0].UptimeSeconds > 0
	})
	u := got.Streams[0].URLs
	if u.Watch != "/watch/up" || u.HLS != "/hls/up/index.m3u8" || u.DASH != "/dash/up/manifest.mpd" || u.Publish != "/publish/up" {
		t.Fatalf("urls = %+v", u)
	}
}

// TestPublishPageErrors: the publish page explains a missing token (401),
// a wrong one (403) and a stream that is already live (409).
func TestPublishPageErrors(t *testing.T) {
	b := browsertest.New(t)
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	publishClip(ctx, t, srv, "busy")
	p, err := b.Open(ctx, srv.URL()+"/publish/busy")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ token, want string }{
		{"", "needs a publish token"},
		{"wrong", "token is wrong"},
		{testToken, "already live"},
	} {
		expr := fmt.Sprintf(`(() => { document.getElementById('token').value = %q; return window.hcStart(); })()`, tc.token)
		if _, err := browsertest.Eval[any](ctx, p, expr); err != nil {
			t.Fatal(err)
		}
		ps, err := browsertest.WaitEval(ctx, p, hcExpr, func(s publishState) bool { return s.State == "error" || s.State == "live" })
		if err != nil || ps.State != "error" || !strings.Contains(*ps.Error, tc.want) {
			t.Fatalf("token %q: %v; state %+v, error %v; want an error with %q", tc.token, err, ps, deref(ps.Error), tc.want)
		}
		t.Logf("token %q: %s", tc.token, *ps.Error)
		text, err := browsertest.Eval[string](ctx, p, "document.getElementById('msg').textContent")
		if err != nil || !strings.Contains(text, tc.want) {
			t.Fatalf("the page shows %q, want %q (%v)", text, tc.want, err)
		}
	}
}
