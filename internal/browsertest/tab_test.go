package browsertest_test

import (
	"bytes"
	"context"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/internal/browsertest"
)

// TestOpenEvalScreenshot: Open loads any page, WaitEval sees state the page
// sets later, and Screenshot saves a PNG of the requested width.
func TestOpenEvalScreenshot(t *testing.T) {
	b := browsertest.New(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, `<!DOCTYPE html><meta name="viewport" content="width=device-width">
<h1>hello</h1><script>window.hc = {n: 1}; setTimeout(() => { window.hc.n = 2; }, 200);</script>`)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	p, err := b.Open(ctx, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := browsertest.WaitEval(ctx, p, "window.hc.n", func(n int) bool { return n == 2 }); err != nil || n != 2 {
		t.Fatalf("WaitEval: %d, %v", n, err)
	}
	if s, err := browsertest.Eval[string](ctx, p, "document.querySelector('h1').textContent"); err != nil || s != "hello" {
		t.Fatalf("Eval: %q, %v", s, err)
	}
	if _, err := browsertest.Eval[int](ctx, p, "notDefined.x"); err == nil {
		t.Fatal("Eval of a throwing expression: no error")
	}
	path, err := p.Screenshot(ctx, "phone", browsertest.Phone)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if cfg.Width != int(browsertest.Phone.Width) {
		t.Fatalf("screenshot %dx%d, want width %d", cfg.Width, cfg.Height, browsertest.Phone.Width)
	}
}
