package pages

import (
	"bytes"
	"embed"
	"html/template"
	"log/slog"
	"net/http"
	"regexp"
	"time"

	"github.com/hybridcast/hybridcast/web"
)

//go:embed *.html
var files embed.FS

var templates = template.Must(template.ParseFS(files, "*.html"))

// Config configures the pages.
type Config struct {
	// Players serves hls.js and dash.js; nil when they are not installed
	// (the watch page then plays WebRTC only and says so).
	Players *web.Handler
	// AssetsPrefix is where Players is mounted, such as "/assets/".
	AssetsPrefix string
	// PartTarget is the LL-HLS playlists' part target: the watch page's
	// hls.js plays HLSLatency(PartTarget) behind the playlist's end (see
	// there). 0 leaves hls.js's own settings, which keep PART-HOLD-BACK
	// but never catch up after a slow start.
	PartTarget time.Duration
	// Logger gets template errors. Required.
	Logger *slog.Logger
}

// Handler serves GET /watch/{stream}, GET /publish/{stream} and GET /.
// Mount it on those patterns; other paths get 404.
type Handler struct {
	cfg Config
	mux *http.ServeMux
}

var _ http.Handler = (*Handler)(nil)

// New returns the pages handler.
func New(cfg Config) *Handler {
	h := &Handler{cfg: cfg, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /watch/{stream}", h.stream("watch.html"))
	h.mux.HandleFunc("GET /publish/{stream}", h.stream("publish.html"))
	h.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		h.render(w, "index.html", h.data(""))
	})
	return h
}

// ServeHTTP serves a page.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// streamName is the rule of WHIP and WHEP for stream names.
var streamName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// pageData is what the templates get. JS is handed to the page's script
// as JSON (html/template escapes it for the script context).
type pageData struct {
	Stream string
	HLSJS  string // URL of hls.js; "" when not installed
	JS     pageJS
}

type pageJS struct {
	Stream     string  `json:"stream"`
	HLSJS      bool    `json:"hlsjs"`
	Players    bool    `json:"players"`
	HLSLatency float64 `json:"hlsLatency"` // seconds; 0: hls.js's own settings
	PartTarget float64 `json:"partTarget"` // seconds
}

// HLSLatency is how far behind the end of the playlist the watch page's
// hls.js plays: two and a half part targets, 0.5 s with the default 200 ms
// parts. rfc8216bis makes PART-HOLD-BACK, the distance it recommends
// players keep, at least two part targets (MUST) and three (SHOULD); the
// server advertises three, as most players need them. This page knows the
// server it plays: parts are published with their last frame, a blocking
// playlist reload returns within milliseconds of it, so the newest part
// reaches hls.js a frame interval or so before its media ends, and one
// part target of the two and a half stays buffered when the next part is
// due. Each stall makes hls.js add liveSyncOnStallIncrease (one part
// target here) to the distance, up to a target duration.
func HLSLatency(partTarget time.Duration) time.Duration { return partTarget * 5 / 2 }

func (h *Handler) data(stream string) pageData {
	d := pageData{Stream: stream, JS: pageJS{Stream: stream}}
	if h.cfg.PartTarget > 0 {
		d.JS.HLSLatency = HLSLatency(h.cfg.PartTarget).Seconds()
		d.JS.PartTarget = h.cfg.PartTarget.Seconds()
	}
	if h.cfg.Players != nil {
		d.HLSJS = h.cfg.AssetsPrefix + h.cfg.Players.Path(web.HLSJS)
		d.JS.HLSJS, d.JS.Players = true, true
	}
	return d
}

func (h *Handler) stream(page string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("stream")
		if !streamName.MatchString(name) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte("bad stream name: use 1-64 of A-Z a-z 0-9 _ -\n"))
			return
		}
		h.render(w, page, h.data(name))
	}
}

// render executes the template into a buffer first, so that a template
// error is a clean 500 and not half a page.
func (h *Handler) render(w http.ResponseWriter, name string, d pageData) {
	var buf bytes.Buffer
	if err := templates.ExecuteTemplate(&buf, name, d); err != nil {
		h.cfg.Logger.Error("page template", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer") // ?token= must not leak
	_, _ = w.Write(buf.Bytes())
}
