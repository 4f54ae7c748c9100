package browsertest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hybridcast/hybridcast/web"
)

// Player is a browser tab that plays one HLS stream with hls.js or one DASH
// stream with dash.js. Do not use a Player from several goroutines at once.
type Player struct {
	page *Page
	// Kind is "hls" or "dash".
	Kind string
	// Version is the version of hls.js or dash.js.
	Version string
}

// PlayerOption tunes PlayHLS and PlayDASH.
type PlayerOption func(*playerConfig)

type playerConfig struct {
	targetLatency time.Duration
	config        map[string]any
}

// WithTargetLatency sets the live latency that the player aims at: hls.js
// liveSyncDuration, dash.js streaming.delay.liveDelay. Without it, hls.js
// takes PART-HOLD-BACK (low-latency mode) or HOLD-BACK or three target
// durations from the playlist, and dash.js the MPD's ServiceDescription or
// four segments.
func WithTargetLatency(d time.Duration) PlayerOption {
	return func(c *playerConfig) { c.targetLatency = d }
}

// WithPlayerConfig merges cfg, recursively, over the player's settings: the
// configuration object of new Hls(...) for hls.js, over {lowLatencyMode:
// true}; the object given to player.updateSettings for dash.js, over the
// harness's defaults (live catch-up on, the helper's server as the default
// UTC time source). cfg must encode as JSON. The hls.js player carries the
// watch page's work-around for hls.js's 0.2 s buffer padding (a segment's
// last part left unloaded); {"hybridcastPadding": false} turns it off.
//
//	browsertest.WithPlayerConfig(map[string]any{"maxLiveSyncPlaybackRate": 1.5})
//	browsertest.WithPlayerConfig(map[string]any{"streaming": map[string]any{"liveCatchup": map[string]any{"maxDrift": 2}}})
func WithPlayerConfig(cfg map[string]any) PlayerOption {
	return func(c *playerConfig) {
		if c.config == nil {
			c.config = map[string]any{}
		}
		mergeMap(c.config, cfg)
	}
}

// mergeMap copies src into dst, merging nested maps.
func mergeMap(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				mergeMap(dm, sm)
				continue
			}
			cp := map[string]any{}
			mergeMap(cp, sm)
			v = cp
		}
		dst[k] = v
	}
}

// PlayHLS opens a tab that plays the HLS playlist src (a multivariant or a
// media playlist) with hls.js in low-latency mode. It returns once hls.js
// has started loading; wait for playback with WaitFor. Errors of loading
// the stream appear in PlayerStats.Errors, not here.
//
// The first PlayHLS or PlayDASH of a Browser loads the players (see
// WithPlayers): when they are not installed it skips the test, or fails it
// in CI, so call it on the test's goroutine.
func (b *Browser) PlayHLS(ctx context.Context, src string, opts ...PlayerOption) (*Player, error) {
	b.t.Helper()
	c := playerConfig{config: map[string]any{}}
	for _, o := range opts {
		o(&c)
	}
	cfg := map[string]any{}
	if c.targetLatency > 0 {
		cfg["liveSyncDuration"] = c.targetLatency.Seconds()
	}
	mergeMap(cfg, c.config)
	return b.startPlayer(ctx, "hls", web.HLSJS, src, func(lib string) (string, error) {
		return call("window.startHLS", lib, src, cfg)
	})
}

// PlayDASH opens a tab that plays the DASH MPD src with dash.js, with live
// catch-up on. It returns once dash.js has started loading; wait for
// playback with WaitFor.
//
// dash.js synchronises its clock with the MPD's UTCTiming source; when the
// MPD has none, the harness makes it use the helper's server (/time), never
// dash.js's default server on the internet. A live MPD should carry a
// UTCTiming that points at the origin (ffmpeg -utc_timing_url).
//
// Like PlayHLS, it loads the players on first use.
func (b *Browser) PlayDASH(ctx context.Context, src string, opts ...PlayerOption) (*Player, error) {
	b.t.Helper()
	c := playerConfig{config: map[string]any{}}
	for _, o := range opts {
		o(&c)
	}
	cfg := map[string]any{}
	if c.targetLatency > 0 {
		cfg["streaming"] = map[string]any{"delay": map[string]any{"liveDelay": c.targetLatency.Seconds()}}
	}
	mergeMap(cfg, c.config)
	timeURL := b.baseURL + "/time"
	return b.startPlayer(ctx, "dash", web.DashJS, src, func(lib string) (string, error) {
		return call("window.startDASH", lib, src, cfg, timeURL)
	})
}

func (b *Browser) startPlayer(ctx context.Context, kind, asset, src string, expr func(lib string) (string, error)) (*Player, error) {
	b.t.Helper()
	b.requirePlayers()
	e, err := expr("/assets/" + b.assets.Load().Path(asset))
	if err != nil {
		return nil, err
	}
	page, err := b.openTab(ctx, kind+" player", b.baseURL+"/player.html")
	if err != nil {
		return nil, err
	}
	version, err := evaluate[string](ctx, page, e)
	if err != nil {
		page.Close()
		return nil, fmt.Errorf("browsertest: %s: playing %s: %w", page.name, src, err)
	}
	return &Player{page: page, Kind: kind, Version: version}, nil
}

// Close closes the tab. It can be called more than once; the tab closes
// when the test ends in any case.
func (p *Player) Close() {
	p.page.Close()
}

// Stats reads the state of the player.
func (p *Player) Stats(ctx context.Context) (PlayerStats, error) {
	s, err := evaluate[PlayerStats](ctx, p.page, "window.stats()")
	if err != nil {
		return PlayerStats{}, fmt.Errorf("browsertest: %s: stats: %w", p.page.name, err)
	}
	return s, nil
}

// WaitFor reads the state of the player every 100 ms until cond returns true
// for it, and returns it. When ctx ends first, it returns the last state and
// an error that shows it. (The media element has events, but the counters
// that tests wait for, such as decoded frames or latency, have none.)
func (p *Player) WaitFor(ctx context.Context, cond func(PlayerStats) bool) (PlayerStats, error) {
	return poll(ctx, p.page.name, p.Stats, cond)
}

// Sample reads the state of the player every interval for the duration d,
// and returns the samples, the first one at once. When ctx ends first, it
// returns the samples so far and the cause. See Latencies and Median.
func (p *Player) Sample(ctx context.Context, interval, d time.Duration) ([]PlayerStats, error) {
	if interval <= 0 {
		return nil, fmt.Errorf("browsertest: Sample: interval %v, want > 0", interval)
	}
	samples := make([]PlayerStats, 0, int(d/interval)+1)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	end := time.Now().Add(d)
	for {
		s, err := p.Stats(ctx)
		if err != nil {
			return samples, err
		}
		samples = append(samples, s)
		if !time.Now().Add(interval).Before(end) {
			return samples, nil
		}
		select {
		case <-ctx.Done():
			return samples, fmt.Errorf("browsertest: %s: sampling stopped after %d samples: %w", p.page.name, len(samples), context.Cause(ctx))
		case <-ticker.C:
		}
	}
}

// Levels lists the video levels: hls.levels for hls.js, the video
// representations for dash.js (getRepresentationsByType). The list is empty
// until the player has read the playlist or the MPD.
func (p *Player) Levels(ctx context.Context) ([]Level, error) {
	l, err := evaluate[[]Level](ctx, p.page, "window.levels()")
	if err != nil {
		return nil, fmt.Errorf("browsertest: %s: levels: %w", p.page.name, err)
	}
	return l, nil
}

// SetLevel makes the player play the video level index of Levels, or choose
// by itself again with -1. hls.js switches at once (hls.currentLevel, which
// drops the buffered media); dash.js turns its video ABR off and replaces
// the buffered video (setRepresentationForTypeById). The switch is visible
// in PlayerStats.Level and VideoHeight when done.
func (p *Player) SetLevel(ctx context.Context, index int) error {
	expr, err := call("window.setLevel", index)
	if err != nil {
		return err
	}
	if _, err := evaluate[any](ctx, p.page, expr); err != nil {
		return fmt.Errorf("browsertest: %s: set level %d: %w", p.page.name, index, err)
	}
	return nil
}

// Level is a video level (HLS variant, DASH representation).
type Level struct {
	// Index is the position in Player.Levels, for SetLevel.
	Index int `json:"index"`
	// ID is the player's identifier: the hls.js level id, the DASH
	// Representation@id.
	ID     string `json:"id"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
	// Bitrate is in bits per second: BANDWIDTH or Representation@bandwidth.
	Bitrate int `json:"bitrate"`
	// Codecs is the codec string, when known.
	Codecs string `json:"codecs"`
}

// PlayerError is an error event of the player or of the media element.
type PlayerError struct {
	// Type is the hls.js error type (networkError, mediaError, ...),
	// "dash" for a dash.js ERROR event, or "media" for an error of the
	// media element.
	Type string `json:"type"`
	// Details is the hls.js error details with its reason, HTTP status and
	// URL, or the dash.js error code and message.
	Details string `json:"details"`
	// Fatal is the hls.js fatal flag. dash.js has none: its errors are
	// counted fatal except those it recovers from by itself (time sync,
	// one segment download, buffer removal, text parsing). A media element
	// error is always fatal.
	Fatal bool `json:"fatal"`
	// AtMs is the time of the error in ms after the player started.
	AtMs float64 `json:"atMs"`
}

func (e PlayerError) String() string {
	f := ""
	if e.Fatal {
		f = " (fatal)"
	}
	return fmt.Sprintf("%.0f ms: %s: %s%s", e.AtMs, e.Type, e.Details, f)
}

// PlayerStats is the state of a player at one moment.
type PlayerStats struct {
	// Kind is "hls" or "dash".
	Kind string `json:"kind"`
	// WallMs is the page's Date.now() when the state was read.
	WallMs float64 `json:"wallMs"`

	// CurrentTime is video.currentTime in seconds.
	CurrentTime float64 `json:"currentTime"`
	// BufferEnd is the end of the last buffered range, in seconds.
	BufferEnd    float64 `json:"bufferEnd"`
	Paused       bool    `json:"paused"`
	ReadyState   int     `json:"readyState"`
	PlaybackRate float64 `json:"playbackRate"`
	// VideoWidth and VideoHeight are the size of the current frame.
	VideoWidth  int `json:"videoWidth"`
	VideoHeight int `json:"videoHeight"`

	// TotalVideoFrames and DroppedVideoFrames come from
	// video.getVideoPlaybackQuality().
	TotalVideoFrames   int64 `json:"totalVideoFrames"`
	DroppedVideoFrames int64 `json:"droppedVideoFrames"`
	// AudioDecodedBytes is video.webkitAudioDecodedByteCount.
	AudioDecodedBytes int64 `json:"audioDecodedBytes"`

	// Errors holds the first 100 errors; ErrorCount counts them all.
	Errors     []PlayerError `json:"errors"`
	ErrorCount int           `json:"errorCount"`

	// Stalls counts the "waiting" events after playback began (the
	// start-up is not a stall); StallMs is their total time until the
	// next "playing", including a stall that lasts. Stalled tells whether
	// the player waits now.
	Stalls  int     `json:"stalls"`
	StallMs float64 `json:"stallMs"`
	Stalled bool    `json:"stalled"`

	// FirstPlayingMs and FirstFrameMs are the times of the first "playing"
	// event and of the first presented frame, in ms after the player
	// started; 0 until then.
	FirstPlayingMs float64 `json:"firstPlayingMs"`
	FirstFrameMs   float64 `json:"firstFrameMs"`

	// LatencyMs is the wall-clock latency of the frame that plays: for
	// hls.js Date.now() - hls.playingDate (EXT-X-PROGRAM-DATE-TIME), for
	// dash.js player.getCurrentLiveLatency(). nil while unknown.
	LatencyMs *float64 `json:"latencyMs"`
	// EdgeLatencyMs is hls.js's hls.latency, the distance to the live edge
	// of the playlist (hls.js only).
	EdgeLatencyMs *float64 `json:"edgeLatencyMs"`
	// TargetLatencyMs is the latency that the player aims at
	// (hls.targetLatency, player.getTargetLiveDelay()).
	TargetLatencyMs *float64 `json:"targetLatencyMs"`

	// Level is the index in Player.Levels of the video level that plays
	// (hls.currentLevel; -1 while unknown). AutoLevel tells whether the
	// player chooses it.
	Level     int  `json:"level"`
	AutoLevel bool `json:"autoLevel"`
}

// Latency returns the wall-clock latency of the frame that plays, and
// whether it is known.
func (s PlayerStats) Latency() (time.Duration, bool) {
	if s.LatencyMs == nil {
		return 0, false
	}
	return msDuration(*s.LatencyMs), true
}

// FatalErrors returns the fatal errors among Errors.
func (s PlayerStats) FatalErrors() []PlayerError {
	var out []PlayerError
	for _, e := range s.Errors {
		if e.Fatal {
			out = append(out, e)
		}
	}
	return out
}

// StallTime returns the total time of the stalls.
func (s PlayerStats) StallTime() time.Duration {
	return msDuration(s.StallMs)
}

// FirstFrame returns the time from the start of the player to its first
// presented frame, and whether that frame came.
func (s PlayerStats) FirstFrame() (time.Duration, bool) {
	return msDuration(s.FirstFrameMs), s.FirstFrameMs > 0
}

// Timeline renders samples one line each (seconds since the first,
// currentTime, buffered end, latency and target, playback rate, level,
// stall count, errors), the errors that are new at a sample listed under
// it: what a failing test prints to say how playback went.
func Timeline(samples []PlayerStats) string {
	var b strings.Builder
	if len(samples) == 0 {
		return "(no samples)\n"
	}
	ms := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return strconv.FormatFloat(*p/1000, 'f', 3, 64)
	}
	fmt.Fprintf(&b, "from %s\n", time.UnixMilli(int64(samples[0].WallMs)).UTC().Format("15:04:05.000"))
	errs := 0
	for _, s := range samples {
		fmt.Fprintf(&b, "%6.2fs cur %7.3f buf %7.3f lat %s tgt %s rate %.2f level %d stalls %d stalled %v\n",
			(s.WallMs-samples[0].WallMs)/1000, s.CurrentTime, s.BufferEnd, ms(s.LatencyMs), ms(s.TargetLatencyMs),
			s.PlaybackRate, s.Level, s.Stalls, s.Stalled)
		for ; errs < len(s.Errors); errs++ {
			e := s.Errors[errs]
			fmt.Fprintf(&b, "        error %s %s fatal=%v\n", e.Type, e.Details, e.Fatal)
		}
	}
	return b.String()
}

// Latencies returns the known latencies of the samples, in order.
func Latencies(samples []PlayerStats) []time.Duration {
	out := make([]time.Duration, 0, len(samples))
	for _, s := range samples {
		if l, ok := s.Latency(); ok {
			out = append(out, l)
		}
	}
	return out
}

// Median returns the median of d (the mean of the two middle values for an
// even count), or 0 for none. d is not changed.
func Median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Page returns the tab that plays, for Eval of what PlayerStats lacks.
func (p *Player) Page() *Page { return p.page }
