// Package browsertest drives a headless Chromium from Go tests, so that a test
// can publish to a WHIP endpoint and play from a WHEP endpoint with a real
// browser.
//
// New starts one browser per test and stops it when the test ends. The browser
// loads a page that the helper serves from its own server on 127.0.0.1; that
// page holds the JavaScript for WHIP and WHEP (see page.html). The WHIP and
// WHEP URLs point at the server under test, which is another origin, so that
// server must answer CORS requests: Access-Control-Allow-Origin: *,
// Access-Control-Expose-Headers: Location, and a preflight (OPTIONS) answer
// that allows the methods POST and DELETE and the headers Content-Type and
// Authorization. The wildcard "*" in Access-Control-Allow-Headers does not
// cover Authorization, so the server must name it.
//
// The browser uses a fake camera and microphone, so the tests need no devices.
//
// A test publishes in one tab and plays in another:
//
//	b := browsertest.New(t)
//	pub, err := b.NewPage(ctx)
//	...
//	err = pub.Publish(ctx, srv.URL+"/whip", token, false)
//	viewer, err := b.NewPage(ctx)
//	err = viewer.Play(ctx, srv.URL+"/whep")
//	st, err := viewer.WaitFor(ctx, func(s browsertest.Stats) bool {
//		return s.Viewer != nil && s.Viewer.FramesDecoded > 0
//	})
//	firstFrame, ok := st.Timings.FirstFrame()
//	err = viewer.Stop(ctx) // DELETE the WHEP resource
//
// PlayHLS and PlayDASH open a tab that plays a live stream with hls.js or
// dash.js (see player.go and player.html). The helper's server serves the
// players from the npm install in the repository's web directory (package
// web); the media server is another origin and must send
// Access-Control-Allow-Origin. A test that plays for a minute and measures
// the latency:
//
//	b := browsertest.New(t, browsertest.WithPlayers())
//	p, err := b.PlayHLS(ctx, mediaURL+"/master.m3u8")
//	_, err = p.WaitFor(ctx, func(s browsertest.PlayerStats) bool { return s.CurrentTime > 1 })
//	samples, err := p.Sample(ctx, 500*time.Millisecond, time.Minute)
//	median := browsertest.Median(browsertest.Latencies(samples))
//
// Open opens any page, such as the pages of the server under test; Eval
// and WaitEval read its JavaScript state, and Screenshot saves a PNG at a
// viewport (Desktop, Phone) in ArtifactDir ($HYBRIDCAST_ARTIFACTS/<test>
// when set, so that people can look at them after the run):
//
//	p, err := b.Open(ctx, srv.URL+"/watch/demo")
//	path, err := browsertest.WaitEval(ctx, p, "window.hc.path", func(s string) bool { return s == "webrtc" })
//	file, err := p.Screenshot(ctx, "watch-phone", browsertest.Phone)
//
// The players must not reach the internet: dash.js's default UTC time source
// is replaced by the helper's server (see PlayDASH). A stream from a test
// must point only at loopback addresses.
package browsertest

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/media"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/hybridcast/hybridcast/web"
)

// DefaultExecPath is the path of the Chromium of the Debian package
// "chromium".
const DefaultExecPath = "/usr/bin/chromium"

// launchTimeout bounds the start of the browser process.
const launchTimeout = 30 * time.Second

// closeTimeout bounds the graceful close of the browser process. After it, the
// process is killed.
const closeTimeout = 10 * time.Second

//go:embed page.html
var pageHTML []byte

//go:embed player.html
var playerHTML []byte

// Browser is a headless Chromium that runs for the length of one test.
type Browser struct {
	t       testing.TB
	ctx     context.Context //nolint:containedctx // chromedp ties the browser process to this context for its whole life
	baseURL string          // the helper's server
	pageURL string          // the URL of the embedded page
	pages   atomic.Int64    // counts the pages, to name them in logs

	webDir     string                       // where the players are installed; "" finds it
	assetsOnce sync.Once                    // loads the players on first use
	assetsErr  error                        // the error of that load
	assets     *atomic.Pointer[web.Handler] // nil until loaded; read by the server
}

// Option changes how New starts the browser.
type Option func(*config)

type config struct {
	execPath   string
	fakeDevice string
	flags      []chromedp.ExecAllocatorOption
	webDir     string
	players    bool
}

// WithExecPath makes New start the browser at path instead of
// DefaultExecPath.
func WithExecPath(path string) Option {
	return func(c *config) { c.execPath = path }
}

// WithFakeDevice sets the value of the flag --use-fake-device-for-media-stream,
// for example "fps=30". The default fake camera of Chromium runs at 20 frames
// per second; the empty string keeps that default.
func WithFakeDevice(params string) Option {
	return func(c *config) { c.fakeDevice = params }
}

// WithFlag adds the command line flag --name=value to the browser, or --name
// when value is true. Examples are "use-file-for-fake-video-capture" with the
// path of a .y4m file, or "use-file-for-fake-audio-capture" with a .wav file.
// A flag that New sets itself is replaced.
func WithFlag(name string, value any) Option {
	return func(c *config) { c.flags = append(c.flags, chromedp.Flag(name, value)) }
}

// WithWebDir makes the players come from the npm install in dir instead of
// the web directory of the repository (web.FindDir).
func WithWebDir(dir string) Option {
	return func(c *config) { c.webDir = dir }
}

// WithPlayers makes New load hls.js and dash.js before it starts the
// browser, so that a test that needs them skips (or fails in CI) before it
// starts anything else. Without it, the first PlayHLS or PlayDASH loads them.
func WithPlayers() Option {
	return func(c *config) { c.players = true }
}

// SkipOrFail ends the test t because something that it needs is missing:
// it skips on a developer's machine, and fails when the environment
// variable CI is true, because CI must install everything (scripts/test
// does). msg should name the missing thing and how to install it.
func SkipOrFail(t testing.TB, msg string) {
	t.Helper()
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatal(msg + "; CI must install it")
	}
	t.Skip(msg)
}

// New starts a headless Chromium for the test t, and stops it when the test
// ends.
//
// When the browser is missing, New skips the test, except when the
// environment variable CI is true: then New fails the test, because CI must
// install Chromium (apt-get install chromium). The same holds for the
// players with WithPlayers.
func New(t testing.TB, opts ...Option) *Browser {
	t.Helper()
	cfg := config{execPath: DefaultExecPath}
	for _, o := range opts {
		o(&cfg)
	}
	if _, err := os.Stat(cfg.execPath); err != nil {
		SkipOrFail(t, fmt.Sprintf("browsertest: Chromium not found at %s (%v); install it with apt-get install chromium", cfg.execPath, err))
	}
	b := &Browser{t: t, webDir: cfg.webDir, assets: &atomic.Pointer[web.Handler]{}}
	if cfg.players {
		b.requirePlayers()
	}

	srv := httptest.NewServer(pageHandler(b.assets))
	t.Cleanup(srv.Close) // runs after the browser stopped: cleanups run last first

	fakeDevice := any(true)
	if cfg.fakeDevice != "" {
		fakeDevice = cfg.fakeDevice
	}
	// The defaults of chromedp give headless mode, --no-first-run,
	// --disable-background-networking, --disable-sync and
	// --disable-dev-shm-usage. chromedp gives each browser a fresh temporary
	// --user-data-dir and removes it after the process ended.
	flags := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(cfg.execPath),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		// A fake camera and microphone, and an automatic "allow" for
		// getUserMedia.
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", fakeDevice),
		// Gather 127.0.0.1 candidates. A network namespace with only lo
		// needs this.
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		// Raw IP candidates instead of <uuid>.local names. This replaces the
		// default "Translate,BlinkGenPropertyTrees" of chromedp.
		chromedp.Flag("disable-features", "Translate,WebRtcHideLocalIpsWithMdns"),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
	)
	flags = append(flags, cfg.flags...)

	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), flags...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() {
		// Close the browser gracefully, then make sure that the process
		// ended. cancelAlloc waits until chromedp removed the user data
		// directory.
		ctx, cancel := context.WithTimeout(bctx, closeTimeout)
		err := chromedp.Cancel(ctx)
		cancel()
		cancelBrowser()
		cancelAlloc()
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("browsertest: closing the browser: %v", err)
		}
	})

	// The first Run starts the process. The process lives as long as the
	// context of that Run, so the timeout cannot be set on that context;
	// cancel the browser instead when the start takes too long.
	start := make(chan error, 1)
	go func() { start <- chromedp.Do(bctx) }()
	timer := time.NewTimer(launchTimeout)
	defer timer.Stop()
	select {
	case err := <-start:
		if err != nil {
			t.Fatalf("browsertest: starting %s: %v", cfg.execPath, err)
		}
	case <-timer.C:
		cancelBrowser()
		<-start
		t.Fatalf("browsertest: %s did not start within %v", cfg.execPath, launchTimeout)
	}
	b.ctx, b.baseURL, b.pageURL = bctx, srv.URL, srv.URL+"/page.html"
	return b
}

// pageHandler serves the embedded pages at /page.html and /player.html, the
// players under /assets/ once loaded, and the time of day at /time for
// dash.js (see player.html).
func pageHandler(assets *atomic.Pointer[web.Handler]) http.Handler {
	mux := http.NewServeMux()
	page := func(body []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			_, _ = w.Write(body)
		}
	}
	mux.HandleFunc("GET /page.html", page(pageHTML))
	mux.HandleFunc("GET /player.html", page(playerHTML))
	mux.Handle("GET /assets/", http.StripPrefix("/assets", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := assets.Load()
		if h == nil {
			http.Error(w, "browsertest: the players are not loaded", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})))
	mux.HandleFunc("GET /time", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = io.WriteString(w, time.Now().UTC().Format(xsDateTime))
	})
	return mux
}

// xsDateTime is the format of urn:mpeg:dash:utc:http-xsdate:2014, with
// milliseconds.
const xsDateTime = "2006-01-02T15:04:05.000Z"

// requirePlayers loads hls.js and dash.js once. When they are not
// installed, it skips the test, or fails it in CI. It must run on the
// test's goroutine.
func (b *Browser) requirePlayers() {
	b.t.Helper()
	b.assetsOnce.Do(func() {
		dir := b.webDir
		if dir == "" {
			var err error
			if dir, err = web.FindDir(); err != nil {
				b.assetsErr = err
				return
			}
		}
		h, err := web.Assets(dir)
		if err != nil {
			b.assetsErr = err
			return
		}
		b.assets.Store(h)
	})
	switch {
	case errors.Is(b.assetsErr, web.ErrNotInstalled):
		SkipOrFail(b.t, "browsertest: "+b.assetsErr.Error())
	case b.assetsErr != nil:
		b.t.Fatalf("browsertest: %v", b.assetsErr)
	}
}

// PageURL returns the URL of the embedded page. Its origin is the origin of
// the requests to the server under test.
func (b *Browser) PageURL() string {
	return b.pageURL
}

// NewPage opens a new tab on the embedded page. The tab closes when the test
// ends, or earlier with Page.Close. ctx bounds the opening only.
func (b *Browser) NewPage(ctx context.Context) (*Page, error) {
	b.t.Helper()
	return b.openTab(ctx, "page", b.pageURL)
}

// enableMedia turns on the media domain of a tab, whose events carry
// Chromium's media log (see Page.onEvent).
var enableMedia = chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
	_, err := cdp.Call(ctx, t, media.Enable, cdp.Empty{})
	return err
})

// openTab opens a new tab on url; kind names the tab in logs. The scripts
// run in every document of the tab before its own.
func (b *Browser) openTab(ctx context.Context, kind, url string, scripts ...string) (*Page, error) {
	b.t.Helper()
	p := &Page{t: b.t, name: fmt.Sprintf("%s %d", kind, b.pages.Add(1))}
	tctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithListener(p.onEvent))
	p.ctx, p.cancel = tctx, cancel
	b.t.Cleanup(p.Close)

	// As with the browser, the first Run binds the tab to its context, so
	// ctx cannot be given to it; close the tab instead when ctx ends.
	done := make(chan error, 1)
	// The media domain reports Chromium's media log (see Page.onEvent).
	steps := []chromedp.Action[chromedp.Void]{enableMedia}
	for _, js := range scripts {
		steps = append(steps, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := cdp.Call(ctx, t, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: js})
			return err
		}))
	}
	steps = append(steps, chromedp.Navigate(url))
	go func() { done <- chromedp.Do(tctx, steps...) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		p.Close()
		<-done
		err = context.Cause(ctx)
	}
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("browsertest: opening %s: %w", url, err)
	}
	return p, nil
}
