package browsertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Open opens a new tab on url, any page (the pages of the server under
// test, for example), and returns it. Use Eval and WaitEval to read the
// page's state and Screenshot to keep a picture of it. The tab closes when
// the test ends, or earlier with Page.Close. ctx bounds the opening only.
// The methods for the embedded page (Publish, Play, Stats, …) do not work
// on such a tab.
func (b *Browser) Open(ctx context.Context, url string, opts ...OpenOption) (*Page, error) {
	b.t.Helper()
	var o openOptions
	for _, opt := range opts {
		opt(&o)
	}
	return b.openTab(ctx, "tab", url, o.initScripts...)
}

// OpenOption tunes Open.
type OpenOption func(*openOptions)

type openOptions struct {
	initScripts []string
}

// WithInitScript runs the JavaScript js in the tab's every document before
// the document's own scripts: to stand in for a browser feature that this
// Chromium has and another browser lacks, for example. A test that uses it
// says what it imitates and why the real thing cannot run here.
func WithInitScript(js string) OpenOption {
	return func(o *openOptions) { o.initScripts = append(o.initScripts, js) }
}

// Eval evaluates the JavaScript expression expr in the tab p, waits for the
// promise it returns if any, and decodes the result (JSON) into T.
func Eval[T any](ctx context.Context, p *Page, expr string) (T, error) {
	v, err := evaluate[T](ctx, p, expr)
	if err != nil {
		return v, fmt.Errorf("browsertest: %s: %s: %w", p.name, expr, err)
	}
	return v, nil
}

// WaitEval evaluates expr every 100 ms until cond returns true for its
// value, and returns that value. When ctx ends first, the error shows the
// last value. It polls for page state that has no DevTools event (a
// JavaScript object the page updates, playback counters).
func WaitEval[T any](ctx context.Context, p *Page, expr string, cond func(T) bool) (T, error) {
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	var last T
	var lastErr error
	for {
		v, err := evaluate[T](ctx, p, expr)
		if err == nil {
			last = v
			if cond(v) {
				return v, nil
			}
		}
		lastErr = err
		select {
		case <-ctx.Done():
			b, _ := json.Marshal(last)
			return last, fmt.Errorf("browsertest: %s: %s: condition not met: %w; last value %s",
				p.name, expr, errors.Join(context.Cause(ctx), lastErr), b)
		case <-ticker.C:
		}
	}
}

// Viewport is the size of the page for a screenshot, in CSS pixels.
type Viewport struct {
	Width, Height int64
	// Mobile emulates a phone: the meta viewport is honoured, touch is on.
	Mobile bool
}

// Common viewports.
var (
	Desktop = Viewport{Width: 1280, Height: 800}
	Phone   = Viewport{Width: 390, Height: 844, Mobile: true}
)

// ArtifactDir returns the directory where the test t keeps files for people
// to look at after the run: $HYBRIDCAST_ARTIFACTS/<test name> when that
// variable is set (the directory survives the test), else a t.TempDir.
func ArtifactDir(t testing.TB) string {
	t.Helper()
	root := os.Getenv("HYBRIDCAST_ARTIFACTS")
	if root == "" {
		return t.TempDir()
	}
	dir := filepath.Join(root, unsafeChars.ReplaceAllString(t.Name(), "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("browsertest: artifact directory: %v", err)
	}
	return dir
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Screenshot resizes the tab to vp, captures the whole page as a PNG, saves
// it as <name>.png in ArtifactDir and logs the path. It returns the path.
// The tab keeps the viewport afterwards.
func (p *Page) Screenshot(ctx context.Context, name string, vp Viewport) (string, error) {
	p.t.Helper()
	rctx, cancel := context.WithCancelCause(p.ctx)
	defer cancel(nil)
	stop := context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
	defer stop()
	opts := []chromedp.EmulateViewportOption{chromedp.EmulateScale(1)}
	if vp.Mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulatePortrait)
	}
	if _, err := chromedp.Run(rctx, chromedp.EmulateViewport(vp.Width, vp.Height, opts...)); err != nil {
		return "", fmt.Errorf("browsertest: %s: viewport %dx%d: %w", p.name, vp.Width, vp.Height, err)
	}
	// Let the page lay itself out at the new size: two animation frames.
	if _, err := evaluate[bool](ctx, p, `new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))`); err != nil {
		return "", fmt.Errorf("browsertest: %s: waiting for layout: %w", p.name, err)
	}
	png, err := chromedp.Run(rctx, chromedp.FullScreenshot(100))
	if err != nil {
		return "", fmt.Errorf("browsertest: %s: screenshot: %w", p.name, err)
	}
	path := filepath.Join(ArtifactDir(p.t), unsafeChars.ReplaceAllString(name, "_")+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		return "", fmt.Errorf("browsertest: %s: %w", p.name, err)
	}
	p.t.Logf("browsertest: %s: screenshot %s", p.name, path)
	return path, nil
}
