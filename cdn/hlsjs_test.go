//go:build linux

package cdn

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/internal/browsertest"
)

var hlsjsDuration = flag.Duration("cdn.hlsjs", 20*time.Second, "how long the players of TestHLSJSThroughNginx and TestDashJSThroughNginx play (both at once)")

// TestHLSJSThroughNginx plays the stream with hls.js (low-latency mode,
// headless Chromium) straight from the origin and through the nginx edge
// at the same time, and compares the live latency (Date.now() − the
// playing PROGRAM-DATE-TIME): the edge should add little (the target is
// 0.3 s). Both players run side by side so that they share whatever else
// loads the machine (in CI, the other packages' tests): one after the other,
// a busy second half made the edge look seconds slower. One player is
// always the one whose request fills the cache, so nginx's 500 ms lock
// polling does not apply to it.
func TestHLSJSThroughNginx(t *testing.T) { testPlayerThroughNginx(t, "hls") }

// TestDashJSThroughNginx is the same with dash.js and the DASH manifest:
// the MPD, the /time clock and the segments (streamed while written) all
// come through the edge.
func TestDashJSThroughNginx(t *testing.T) { testPlayerThroughNginx(t, "dash") }

// playResult is what one player of testPlayerThroughNginx saw.
type playResult struct {
	median   time.Duration
	stalls   int
	timeline string
	err      error
}

func testPlayerThroughNginx(t *testing.T, kind string) {
	o := startOrigin(t)
	e := startNginx(t, o.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute+*hlsjsDuration)
	defer cancel()
	br := browsertest.New(t, browsertest.WithPlayers())
	open := func(src string) (*browsertest.Player, error) {
		if kind == "dash" {
			return br.PlayDASH(ctx, src)
		}
		// With catch-up (up to 1.5× speed) and no added target latency
		// after a stall (hls.js adds a second per stall by default), hls.js
		// returns to the same latency after a hiccup, run after run; without
		// them it keeps whatever its start or its stalls gave it, which
		// varies by seconds and would hide what the edge adds.
		return br.PlayHLS(ctx, src, browsertest.WithPlayerConfig(map[string]any{
			"maxLiveSyncPlaybackRate": 1.5, "liveSyncOnStallIncrease": 0,
		}))
	}
	play := func(p *browsertest.Player, src string) playResult {
		st, err := p.WaitFor(ctx, func(s browsertest.PlayerStats) bool { return s.CurrentTime > 1 || len(s.FatalErrors()) > 0 })
		if err != nil {
			return playResult{err: fmt.Errorf("%s did not play %s: %w; stats %+v", kind, src, err, st)}
		}
		if len(st.FatalErrors()) > 0 {
			return playResult{err: fmt.Errorf("%s did not play %s: fatal errors %+v", kind, src, st.FatalErrors())}
		}
		samples, err := p.Sample(ctx, 500*time.Millisecond, *hlsjsDuration)
		if err != nil {
			return playResult{err: err}
		}
		first, last := samples[0], samples[len(samples)-1]
		r := playResult{
			median:   browsertest.Median(browsertest.Latencies(samples)),
			stalls:   last.Stalls - first.Stalls,
			timeline: browsertest.Timeline(samples),
		}
		if n := len(last.FatalErrors()); n > 0 {
			r.err = fmt.Errorf("%s: %d fatal player errors: %+v", src, n, last.FatalErrors())
		} else if last.CurrentTime-first.CurrentTime < hlsjsDuration.Seconds()/2 {
			r.err = fmt.Errorf("%s: played %.1f s in %v", src, last.CurrentTime-first.CurrentTime, *hlsjsDuration)
		}
		return r
	}
	path := "/hls/b/index.m3u8"
	if kind == "dash" {
		path = "/dash/b/manifest.mpd"
	}
	srcs := []string{"http://" + o.addr + path, e.url + path}
	players := make([]*browsertest.Player, len(srcs))
	for i, src := range srcs {
		p, err := open(src)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		players[i] = p
	}
	results := make([]playResult, len(srcs))
	var wg sync.WaitGroup
	for i, p := range players {
		wg.Go(func() { results[i] = play(p, srcs[i]) })
	}
	wg.Wait()
	direct, edge := results[0], results[1]
	for _, r := range results {
		if r.err != nil {
			t.Error(r.err)
		}
	}
	t.Logf("%s median latency: direct %v (%d stalls), through nginx %v (%d stalls)", kind,
		direct.median.Round(time.Millisecond), direct.stalls, edge.median.Round(time.Millisecond), edge.stalls)
	if !t.Failed() && (direct.median == 0 || edge.median == 0) {
		t.Error("no latency samples (no PROGRAM-DATE-TIME?)")
	}
	// The bound: the edge adds at most 0.3 s.
	if d := edge.median - direct.median; d > 300*time.Millisecond {
		t.Errorf("nginx adds %v of latency", d.Round(time.Millisecond))
	}
	if t.Failed() {
		t.Logf("direct:\n%s", direct.timeline)
		t.Logf("through nginx:\n%s", edge.timeline)
	}
}
