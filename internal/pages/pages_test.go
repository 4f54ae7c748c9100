package pages

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestPagesRender: every page renders, a bad stream name is a 400, and
// without players the watch page loads no hls.js and the dashboard says
// how to install it.
func TestPagesRender(t *testing.T) {
	h := New(Config{AssetsPrefix: "/assets/", PartTarget: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	for _, tc := range []struct {
		path   string
		status int
		want   []string
		not    []string
	}{
		{"/watch/demo", 200, []string{`const CONFIG = {"stream":"demo","hlsjs":false,"players":false,"hlsLatency":0.5,"partTarget":0.2};`, "<title>demo · watch"}, []string{"hls.min.js"}},
		{"/publish/demo", 200, []string{`"stream":"demo"`, `href="/watch/demo"`}, nil},
		{"/", 200, []string{"scripts/setup", "/api/streams"}, nil},
		{"/watch/bad%20name", 400, []string{"bad stream name"}, nil},
		{"/watch/" + strings.Repeat("x", 65), 400, nil, nil},
		{"/other", 404, nil, nil},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
		body := rec.Body.String()
		if rec.Code != tc.status {
			t.Errorf("%s: status %d, want %d", tc.path, rec.Code, tc.status)
		}
		for _, w := range tc.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: body lacks %q", tc.path, w)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(body, n) {
				t.Errorf("%s: body has %q", tc.path, n)
			}
		}
		if tc.status == 200 {
			if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("%s: Content-Type %q", tc.path, ct)
			}
			if rp := rec.Header().Get("Referrer-Policy"); rp != "no-referrer" {
				t.Errorf("%s: Referrer-Policy %q (the publish token is in the URL)", tc.path, rp)
			}
		}
	}
}
