package cdn

import (
	"context"
	"flag"
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/internal/browsertest"
)

var hlsjsDuration = flag.Duration("cdn.hlsjs", 20*time.Second, "how long hls.js plays in TestHLSJSThroughNginx, each way")

// TestHLSJSThroughNginx plays the stream with hls.js (low-latency mode,
// headless Chromium) straight from the origin, then through the nginx
// edge, and compares the live latency (Date.now() − the playing
// PROGRAM-DATE-TIME): the edge should add little (the target is 0.3 s).
// One player is always the one whose request fills the cache, so nginx's
// 500 ms lock polling does not apply to it.
func TestHLSJSThroughNginx(t *testing.T) { testPlayerThroughNginx(t, "hls") }

// TestDashJSThroughNginx is the same with dash.js and the DASH manifest:
// the MPD, the /time clock and the segments (streamed while written) all
// come through the edge.
func TestDashJSThroughNginx(t *testing.T) { testPlayerThroughNginx(t, "dash") }

func testPlayerThroughNginx(t *testing.T, kind string) {
	o := startOrigin(t)
	e := startNginx(t, o.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute+2**hlsjsDuration)
	defer cancel()
	br := browsertest.New(t, browsertest.WithPlayers())
	play := func(src string) (median time.Duration, stalls int) {
		t.Helper()
		var p *browsertest.Player
		var err error
		if kind == "dash" {
			p, err = br.PlayDASH(ctx, src)
		} else {
			// With catch-up (up to 1.5× speed) hls.js settles at the same
			// latency run after run (about 1.1–1.2 s here); with its
			// default of none it keeps whatever its start gave it, which
			// varies by half a second and would hide what the edge adds.
			p, err = br.PlayHLS(ctx, src, browsertest.WithPlayerConfig(map[string]any{"maxLiveSyncPlaybackRate": 1.5}))
		}
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		st, err := p.WaitFor(ctx, func(s browsertest.PlayerStats) bool { return s.CurrentTime > 1 || len(s.FatalErrors()) > 0 })
		if err != nil || len(st.FatalErrors()) > 0 {
			t.Fatalf("%s did not play %s: %v; stats %+v", kind, src, err, st)
		}
		samples, err := p.Sample(ctx, 500*time.Millisecond, *hlsjsDuration)
		if err != nil {
			t.Fatal(err)
		}
		first, last := samples[0], samples[len(samples)-1]
		if n := len(last.FatalErrors()); n > 0 {
			t.Errorf("%s: %d fatal player errors: %+v", src, n, last.FatalErrors())
		}
		if last.CurrentTime-first.CurrentTime < hlsjsDuration.Seconds()/2 {
			t.Errorf("%s: played %.1f s in %v", src, last.CurrentTime-first.CurrentTime, *hlsjsDuration)
		}
		return browsertest.Median(browsertest.Latencies(samples)), last.Stalls - first.Stalls
	}
	path := "/hls/b/index.m3u8"
	if kind == "dash" {
		path = "/dash/b/manifest.mpd"
	}
	direct, ds := play("http://" + o.addr + path)
	edge, es := play(e.url + path)
	t.Logf("%s median latency: direct %v (%d stalls), through nginx %v (%d stalls)", kind,
		direct.Round(time.Millisecond), ds, edge.Round(time.Millisecond), es)
	if direct == 0 || edge == 0 {
		t.Fatal("no latency samples (no PROGRAM-DATE-TIME?)")
	}
	// The bound: the edge adds at most 0.3 s.
	if edge-direct > 300*time.Millisecond {
		t.Errorf("nginx adds %v of latency", (edge - direct).Round(time.Millisecond))
	}
}
