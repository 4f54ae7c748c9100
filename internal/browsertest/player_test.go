package browsertest_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/internal/browsertest"
)

// liveSeconds bounds each ffmpeg run (-t); the tests need about 20 s.
const liveSeconds = 45

// mediaServer serves the files that ffmpeg writes into dir, with CORS (the
// player page is another origin), and the time of day at /time for the
// DASH UTCTiming.
type mediaServer struct {
	srv      *httptest.Server
	timeHits atomic.Int64
	mu       sync.Mutex
	bad      []string // requests that got a status >= 400
}

func newMediaServer(t *testing.T, dir string) *mediaServer {
	t.Helper()
	m := &mediaServer{}
	files := http.FileServer(http.Dir(dir))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /time", func(w http.ResponseWriter, _ *http.Request) {
		m.timeHits.Add(1)
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(time.Now().UTC().Format("2006-01-02T15:04:05.000Z")))
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".m3u8") || strings.HasSuffix(r.URL.Path, ".mpd") {
			w.Header().Set("Cache-Control", "no-store") // live: always the newest
		}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		files.ServeHTTP(rec, r)
		if rec.status >= 400 {
			m.mu.Lock()
			m.bad = append(m.bad, r.URL.Path+": "+strconv.Itoa(rec.status))
			m.mu.Unlock()
		}
	})
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		if r.Method == http.MethodOptions {
			w.Header().Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
			w.Header().Set("Access-Control-Allow-Headers", "*")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *mediaServer) badRequests() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.bad)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// ffmpegRun is an ffmpeg process that the test's cleanup kills.
type ffmpegRun struct {
	exited chan struct{} // closed when the process ended
	err    error         // the result of Wait, set before exited closes
	stderr bytes.Buffer
}

// startFFmpeg runs ffmpeg with args in dir: a live test signal at real
// speed (-re), 640x360 at 30 fps with a 440 Hz tone, for liveSeconds, then
// the output args. The cleanup kills it and waits for it.
func startFFmpeg(t *testing.T, dir string, output ...string) *ffmpegRun {
	t.Helper()
	path, err := exec.LookPath("ffmpeg")
	if err != nil {
		browsertest.SkipOrFail(t, "ffmpeg not found ("+err.Error()+"); install it with apt-get install ffmpeg")
	}
	args := []string{"-hide_banner", "-nostdin", "-loglevel", "error",
		"-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
		"-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", strconv.Itoa(liveSeconds)}
	args = append(args, output...)
	cmd := exec.Command(path, args...) //nolint:noctx // the cleanup kills it
	cmd.Dir = dir
	f := &ffmpegRun{exited: make(chan struct{})}
	cmd.Stderr = &f.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		f.err = cmd.Wait()
		close(f.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-f.exited
		if s := f.stderr.String(); s != "" {
			t.Logf("ffmpeg stderr:\n%s", s)
		}
	})
	return f
}

// waitForFile polls until the file rel in dir exists and holds at least n
// times the string marker (ffmpeg has no event for a written playlist).
func waitForFile(ctx context.Context, t *testing.T, f *ffmpegRun, dir, rel, marker string, n int) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := os.ReadFile(filepath.Join(dir, rel))
		if err == nil && bytes.Count(b, []byte(marker)) >= n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not get %d × %q: %v", rel, n, marker, context.Cause(ctx))
		case <-f.exited:
			t.Fatalf("ffmpeg ended (%v) before %s was written: %s", f.err, rel, f.stderr.String())
		case <-tick.C:
		}
	}
}

// x264 is the video encoding of both tests: two renditions (360p and 180p),
// a keyframe every second, so that 1 s segments start with one.
var x264 = []string{
	"-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency",
	"-g", "30", "-keyint_min", "30", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
	"-s:v:1", "320x180", "-b:v:0", "800k", "-b:v:1", "200k",
	"-c:a", "libopus", "-b:a", "64k", "-ac", "2",
}

// checkPlayback waits until the player plays, checks that the time
// advances with decoded video and audio, lists the levels and switches to
// the 180p one, samples the latency, and checks that no fatal error came.
func checkPlayback(ctx context.Context, t *testing.T, p *browsertest.Player) browsertest.PlayerStats {
	t.Helper()
	start := time.Now()
	s0, err := p.WaitFor(ctx, func(s browsertest.PlayerStats) bool {
		return s.CurrentTime > 0 && s.TotalVideoFrames > 0 && !s.Paused
	})
	if err != nil {
		t.Fatal(err)
	}
	ff, _ := s0.FirstFrame()
	t.Logf("%s %s plays after %v (first frame %v after start): currentTime %.2f, %dx%d, level %d",
		p.Kind, p.Version, time.Since(start).Round(time.Millisecond), ff.Round(time.Millisecond),
		s0.CurrentTime, s0.VideoWidth, s0.VideoHeight, s0.Level)

	// The media time advances (faster than the wall clock while a player
	// catches up with the live edge).
	s1, err := p.WaitFor(ctx, func(s browsertest.PlayerStats) bool { return s.CurrentTime >= s0.CurrentTime+3 })
	if err != nil {
		t.Fatal(err)
	}
	wall := time.Duration(s1.WallMs-s0.WallMs) * time.Millisecond
	t.Logf("3 s of media in %v of wall time; frames %d (+%d), dropped %d, audio %d bytes",
		wall.Round(time.Millisecond), s1.TotalVideoFrames, s1.TotalVideoFrames-s0.TotalVideoFrames, s1.DroppedVideoFrames, s1.AudioDecodedBytes)
	if got := s1.TotalVideoFrames - s0.TotalVideoFrames; got < 60 {
		t.Errorf("%d frames decoded during 3 s of 30 fps video, want >= 60", got)
	}
	if s1.AudioDecodedBytes == 0 {
		t.Error("no audio decoded")
	}

	levels, err := p.Levels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("levels: %+v", levels)
	low := -1
	for _, l := range levels {
		if l.Height == 180 {
			low = l.Index
		}
	}
	if len(levels) != 2 || low < 0 {
		t.Fatalf("levels %+v: want two, one of them 180 lines high", levels)
	}
	switched := time.Now()
	if err := p.SetLevel(ctx, low); err != nil {
		t.Fatal(err)
	}
	s2, err := p.WaitFor(ctx, func(s browsertest.PlayerStats) bool {
		return s.Level == low && s.VideoHeight == 180 && s.CurrentTime > s1.CurrentTime+1
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("switched to level %d (%dx%d, auto %v) in %v", s2.Level, s2.VideoWidth, s2.VideoHeight, s2.AutoLevel,
		time.Since(switched).Round(time.Millisecond))
	if s2.AutoLevel {
		t.Error("automatic level selection still on after SetLevel")
	}
	if err := p.SetLevel(ctx, len(levels)); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("SetLevel(%d): %v, want an out of range error", len(levels), err)
	}

	samples, err := p.Sample(ctx, 500*time.Millisecond, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	lat := browsertest.Latencies(samples)
	last := samples[len(samples)-1]
	t.Logf("%d samples, %d latencies, median %v, target %v; stalls %d (%v)", len(samples), len(lat),
		browsertest.Median(lat).Round(time.Millisecond), ptrMs(last.TargetLatencyMs), last.Stalls, last.StallTime().Round(time.Millisecond))
	if len(samples) < 6 || len(lat) != len(samples) {
		t.Errorf("%d samples with %d latencies over 3 s every 500 ms; want >= 6, each with a latency", len(samples), len(lat))
	}
	if m := browsertest.Median(lat); m <= 0 || m > 15*time.Second {
		t.Errorf("median latency %v, want in (0, 15 s]", m)
	}
	for _, e := range last.Errors {
		t.Logf("player error: %v", e)
	}
	if fe := last.FatalErrors(); len(fe) > 0 {
		t.Errorf("fatal errors: %v", fe)
	}
	return last
}

func ptrMs(ms *float64) time.Duration {
	if ms == nil {
		return 0
	}
	return time.Duration(*ms * float64(time.Millisecond))
}

// TestPlayHLSLive plays live fMP4 HLS from ffmpeg (two variants with
// EXT-X-PROGRAM-DATE-TIME, 1 s segments) with hls.js.
func TestPlayHLSLive(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	b := browsertest.New(t, browsertest.WithPlayers())
	dir := t.TempDir()
	ms := newMediaServer(t, dir)
	out := append([]string{"-map", "0:v", "-map", "0:v", "-map", "1:a", "-map", "1:a"}, x264...)
	out = append(out, "-f", "hls", "-hls_time", "1", "-hls_list_size", "6",
		"-hls_flags", "delete_segments+independent_segments+program_date_time",
		"-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
		"-master_pl_name", "master.m3u8", "-var_stream_map", "v:0,a:0,name:360p v:1,a:1,name:180p",
		"-hls_segment_filename", "%v/seg%05d.m4s", "%v/index.m3u8")
	f := startFFmpeg(t, dir, out...)
	waitForFile(ctx, t, f, dir, "180p/index.m3u8", "#EXTINF", 2)
	waitForFile(ctx, t, f, dir, "master.m3u8", "#EXT-X-STREAM-INF", 2)

	p, err := b.PlayHLS(ctx, ms.srv.URL+"/master.m3u8")
	if err != nil {
		t.Fatal(err)
	}
	last := checkPlayback(ctx, t, p)
	if last.EdgeLatencyMs == nil {
		t.Error("hls.latency unknown")
	}
	if bad := ms.badRequests(); len(bad) > 0 {
		t.Logf("media requests that failed: %v", bad)
	}
}

// TestPlayDASHLive plays a live DASH stream from ffmpeg (two video
// representations, Opus audio in MP4, 1 s segments) with dash.js, whose
// clock comes from the media server's /time (UTCTiming).
func TestPlayDASHLive(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	b := browsertest.New(t, browsertest.WithPlayers())
	dir := t.TempDir()
	ms := newMediaServer(t, dir)
	out := append([]string{"-map", "0:v", "-map", "0:v", "-map", "1:a"}, x264...)
	out = append(out, "-f", "dash", "-dash_segment_type", "mp4", "-seg_duration", "1",
		"-use_template", "1", "-use_timeline", "0", "-window_size", "10", "-extra_window_size", "5",
		"-utc_timing_url", ms.srv.URL+"/time",
		"-adaptation_sets", "id=0,streams=v id=1,streams=a", "manifest.mpd")
	f := startFFmpeg(t, dir, out...)
	waitForFile(ctx, t, f, dir, "manifest.mpd", "<Representation", 3)
	waitForFile(ctx, t, f, dir, "chunk-stream1-00002.m4s", "", 1) // the second 180p segment began

	p, err := b.PlayDASH(ctx, ms.srv.URL+"/manifest.mpd", browsertest.WithTargetLatency(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	last := checkPlayback(ctx, t, p)
	if ms.timeHits.Load() == 0 {
		t.Error("dash.js never asked the MPD's UTCTiming URL")
	}
	for _, e := range last.Errors {
		if strings.HasPrefix(e.Details, "16:") {
			t.Errorf("time synchronisation failed: %v", e)
		}
	}
	if tl := ptrMs(last.TargetLatencyMs); tl != 3*time.Second {
		t.Errorf("target latency %v, want 3s (WithTargetLatency)", tl)
	}
	if bad := ms.badRequests(); len(bad) > 0 {
		t.Logf("media requests that failed: %v", bad)
	}
}

// TestPlayersMissing checks that WithPlayers skips without the npm install
// on a developer's machine, and fails in CI, before the browser starts.
func TestPlayersMissing(t *testing.T) {
	exe, err := os.Executable() // an existing file: New must not get to start it
	if err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	for _, tc := range []struct {
		ci       string
		wantSkip bool
	}{{"", true}, {"true", false}} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			f := &fakeTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				browsertest.New(f, browsertest.WithExecPath(exe), browsertest.WithWebDir(empty), browsertest.WithPlayers())
			}()
			<-done
			f.mu.Lock()
			defer f.mu.Unlock()
			msg := f.skipped
			if !tc.wantSkip {
				msg = f.fatal
			}
			if !strings.Contains(msg, "npm ci --prefix web") {
				t.Errorf("skip %q, fatal %q; want the fix in the %s", f.skipped, f.fatal,
					map[bool]string{true: "skip", false: "fatal"}[tc.wantSkip])
			}
		})
	}
}

func TestMedian(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	for _, tc := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{ms(5), 5 * time.Millisecond},
		{ms(9, 1, 5), 5 * time.Millisecond},
		{ms(4, 1, 3, 2), 2500 * time.Microsecond},
	} {
		in := append([]time.Duration(nil), tc.in...)
		if got := browsertest.Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Errorf("Median changed its argument: %v", tc.in)
			}
		}
	}
	one := 1500.0
	got := browsertest.Latencies([]browsertest.PlayerStats{{}, {LatencyMs: &one}})
	if len(got) != 1 || got[0] != 1500*time.Millisecond {
		t.Errorf("Latencies = %v, want [1.5s]", got)
	}
}
