// Package origin serves the packager's output over HTTP: LL-HLS playlists
// (with blocking reloads and delta updates), init segments, parts and
// segments, with cache headers by resource class so that any CDN can sit
// in front. It knows nothing of RTP; it reads the packager through Source.
//
//	GET /hls/{stream}/index.m3u8                  multivariant playlist
//	GET /hls/{stream}/{rendition}/index.m3u8      media playlist (_HLS_msn, _HLS_part, _HLS_skip)
//	GET /hls/{stream}/{rendition}/init-{n}.mp4    init segment
//	GET /hls/{stream}/{rendition}/{msn}.m4s       segment
//	GET /hls/{stream}/{rendition}/{msn}.{i}.m4s   part
//	GET /dash/{stream}/manifest.mpd               low-latency DASH manifest
//	GET /dash/{stream}/{rendition}/...            the same init segments and segments
//	GET /time                                     the origin's clock (DASH UTCTiming)
//
// A segment that is still being written is sent as it is written: each
// part as soon as it exists, the response ending with the segment (chunked
// transfer). That is what low-latency DASH players fetch, and what HLS
// players that ignore parts get too.
package origin

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/hybridcast/hybridcast/packager"
)

// Source is what the origin reads: the packager's streams.
type Source interface {
	Stream(name string) *packager.Stream
}

var _ Source = (*packager.Packager)(nil)

// Config configures an Origin.
type Config struct {
	Source Source
	// StartWait is how long a multivariant playlist request for a stream
	// that is live but has no complete segment yet waits for one. Default 10 s.
	StartWait time.Duration
	Logger    *slog.Logger
	// OnBlockingResponse, when set, is called after a blocking playlist
	// request that had to wait has been answered, with the time from the
	// moment the part it waited for was published to the end of the
	// response write: the origin's own share of LL-HLS latency.
	OnBlockingResponse func(lag time.Duration)
	// OnRequest, when set, is called after each response with the
	// resource class (multivariant, playlist, playlist_blocking, init,
	// segment, part, mpd, time) and the status.
	OnRequest func(class string, status int)
}

// Origin is the HTTP handler for /hls/, /dash/ and /time.
type Origin struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux

	audMu sync.Mutex
	aud   map[string]*meter // per stream, for Audience

	encodings encodings // ETags and gzipped bodies of recent manifests
}

var _ http.Handler = (*Origin)(nil)

// New makes an Origin.
func New(cfg Config) *Origin {
	if cfg.StartWait <= 0 {
		cfg.StartWait = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	o := &Origin{cfg: cfg, log: cfg.Logger.With("component", "origin"), mux: http.NewServeMux(), aud: map[string]*meter{}}
	o.mux.HandleFunc("GET /hls/{stream}/index.m3u8", o.multivariant)
	o.mux.HandleFunc("GET /hls/{stream}/{rendition}/{file}", o.media)
	o.mux.HandleFunc("GET /dash/{stream}/manifest.mpd", o.mpd)
	o.mux.HandleFunc("GET /dash/{stream}/{rendition}/{file}", o.media)
	o.mux.HandleFunc("GET /time", serveTime)
	return o
}

// Cache-Control values by resource class.
const (
	// Init segments, segments and parts never change under their URL:
	// segment numbers only grow, across restarts too.
	cacheImmutable = "public, max-age=31536000, immutable"
	// A plain playlist request gets the live edge, which moves every part.
	cachePlaylist = "public, max-age=1"
	// A blocking request names the part it waited for in its query, so
	// the answer stays right for that URL: a CDN may keep it while the
	// part is in the window.
	cacheBlocking = "public, max-age=12"
	// The multivariant playlist changes only when layers come and go.
	cacheMultivariant = "public, max-age=2"
	// The MPD changes only when renditions come and go; players reload it
	// every minimumUpdatePeriod (2 s).
	cacheMPD = "public, max-age=2"
	// Errors are not cached: the stream may start or the part appear.
	cacheError = "no-store"
)

// ServeHTTP implements http.Handler.
func (o *Origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Expose-Headers", "Content-Length, Content-Range, ETag, Age")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Range, If-None-Match")
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if o.cfg.OnRequest == nil {
		o.mux.ServeHTTP(w, r)
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	o.mux.ServeHTTP(sw, r)
	if sw.status == 0 {
		sw.status = http.StatusOK
	}
	o.cfg.OnRequest(class(r), sw.status)
}

// class names the resource class of a request, for metrics.
func class(r *http.Request) string {
	p := r.URL.Path
	switch {
	case p == "/time":
		return "time"
	case strings.HasSuffix(p, ".mpd"):
		return "mpd"
	case strings.HasSuffix(p, ".mp4"):
		return "init"
	case strings.HasSuffix(p, ".m4s"):
		if strings.Count(p[strings.LastIndexByte(p, '/'):], ".") > 1 {
			return "part"
		}
		return "segment"
	case strings.HasSuffix(p, ".m3u8"):
		if strings.Count(p, "/") == 3 { // /hls/{stream}/index.m3u8
			return "multivariant"
		}
		if r.URL.Query().Has("_HLS_msn") {
			return "playlist_blocking"
		}
		return "playlist"
	}
	return "other"
}

// statusWriter remembers the status of a response and passes flushes on.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Cache-Control", cacheError)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

func (o *Origin) stream(w http.ResponseWriter, r *http.Request) *packager.Stream {
	name := r.PathValue("stream")
	s := o.cfg.Source.Stream(name)
	if s == nil {
		fail(w, http.StatusNotFound, fmt.Sprintf("stream %q is not live", name))
		return nil
	}
	return s
}

func (o *Origin) multivariant(w http.ResponseWriter, r *http.Request) {
	s := o.stream(w, r)
	if s == nil {
		return
	}
	o.whenStarted(w, r, s, func() bool {
		pl, ok := s.Multivariant()
		if ok {
			o.writePlaylist(w, r, pl, cacheMultivariant)
		}
		return ok
	})
}

// whenStarted calls serve until it reports that it answered: at once for a
// stream that has its first segments, else at each change of the stream
// for up to StartWait (then 503), and 404 when the stream is not live.
func (o *Origin) whenStarted(w http.ResponseWriter, r *http.Request, s *packager.Stream, serve func() bool) {
	timer := time.NewTimer(o.cfg.StartWait)
	defer timer.Stop()
	for {
		rends, changed := s.Renditions()
		if len(rends) == 0 {
			fail(w, http.StatusNotFound, fmt.Sprintf("stream %q is not live", s.Name()))
			return
		}
		if serve() {
			return
		}
		// Live but not one segment yet: wait for the first, on any
		// rendition's change.
		select {
		case <-changed:
		case <-rends[0].View().Changed:
		case <-r.Context().Done():
			return
		case <-timer.C:
			w.Header().Set("Retry-After", "1")
			fail(w, http.StatusServiceUnavailable, "stream is starting: no complete segment yet")
			return
		}
	}
}

func (o *Origin) media(w http.ResponseWriter, r *http.Request) {
	s := o.stream(w, r)
	if s == nil {
		return
	}
	name, file := r.PathValue("rendition"), r.PathValue("file")
	if strings.HasPrefix(r.URL.Path, "/dash/") && (file == "index.m3u8" || strings.Count(file, ".") > 1) {
		fail(w, http.StatusNotFound, "no such file: DASH serves init segments and segments")
		return
	}
	rend := s.Rendition(name)
	if rend == nil {
		fail(w, http.StatusNotFound, fmt.Sprintf("no rendition %q in stream %q", name, s.Name()))
		return
	}
	switch {
	case file == "index.m3u8":
		o.mediaPlaylist(w, r, s, rend)
	case strings.HasPrefix(file, "init-") && strings.HasSuffix(file, ".mp4"):
		v := rend.View()
		data, ok := v.Inits[file]
		if !ok {
			fail(w, http.StatusNotFound, "no such init segment")
			return
		}
		serveBytes(w, r, data, "video/mp4", `"`+strings.TrimSuffix(file, ".mp4")+`"`, time.Time{})
	case strings.HasSuffix(file, ".m4s"):
		if rend.View().Video {
			o.meter(s.Name()).add(time.Now(), strings.Count(file, ".") > 1)
		}
		o.mediaFile(w, r, s, rend, strings.TrimSuffix(file, ".m4s"))
	default:
		fail(w, http.StatusNotFound, "no such file")
	}
}

// mediaPlaylist serves a media playlist, holding a blocking request until
// the part it names exists (rfc8216bis §6.2.5.2).
func (o *Origin) mediaPlaylist(w http.ResponseWriter, r *http.Request, s *packager.Stream, rend *packager.Rendition) {
	req, err := packager.ParsePlaylistQuery(r.URL.Query())
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	v := rend.View()
	if _, _, ok := v.Last(); !ok {
		// Nothing to list yet (no segment, or one opened without a part):
		// wait for the first part like a blocking request for it.
		req.MSN, req.Part = -1, -1
		v, err = o.wait(r.Context(), rend, s, func(v *packager.View) bool { _, _, ok := v.Last(); return ok })
		if err != nil {
			o.waitFailed(w, err)
			return
		}
	}
	cache := cachePlaylist
	if req.MSN >= 0 {
		cache = cacheBlocking
		msn, part := uint64(req.MSN), req.Part
		lastMSN, lastPart, _ := v.Last()
		// "If the _HLS_msn is greater than the Media Sequence Number of the
		// last Media Segment in the current Playlist plus two, or if the
		// _HLS_part exceeds the last Partial Segment in the current
		// Playlist by the Advance Part Limit, then the server SHOULD
		// immediately return Bad Request" (§6.2.5.2). The Advance Part
		// Limit is 3.
		if msn > lastMSN+2 || (msn == lastMSN && part > int64(lastPart)+3) {
			fail(w, http.StatusBadRequest, fmt.Sprintf("_HLS_msn=%d _HLS_part=%d is too far ahead of the live edge (segment %d part %d)",
				msn, part, lastMSN, lastPart))
			return
		}
		if first := v.Segments[0].MSN; msn < first {
			// Older than the window: the current playlist satisfies it.
			msn, part = first, -1
		}
		waited := !v.Has(msn, part)
		v, err = o.wait(r.Context(), rend, s, func(v *packager.View) bool { return v.Has(msn, part) || !v.Live })
		if err != nil {
			o.waitFailed(w, err)
			return
		}
		if waited && o.cfg.OnBlockingResponse != nil {
			o.writePlaylist(w, r, s.MediaPlaylist(v, req.Skip), cache)
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
			o.cfg.OnBlockingResponse(time.Since(v.Updated))
			return
		}
	}
	o.writePlaylist(w, r, s.MediaPlaylist(v, req.Skip), cache)
}

var errTimeout = errors.New("timed out")

// wait returns the first View of rend for which ok holds, waiting on each
// View's Changed channel and giving up when the client goes away or after
// three target durations ("the server ... SHOULD ... return ... 503 ...
// if the request cannot be satisfied within three times the Target
// Duration", §6.2.5.2).
func (o *Origin) wait(ctx context.Context, rend *packager.Rendition, s *packager.Stream, ok func(*packager.View) bool) (*packager.View, error) {
	v := rend.View()
	if ok(v) {
		return v, nil
	}
	timer := time.NewTimer(3 * time.Duration(s.TargetDuration()) * time.Second)
	defer timer.Stop()
	for {
		select {
		case <-v.Changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
			return nil, errTimeout
		}
		if v = rend.View(); ok(v) {
			return v, nil
		}
	}
}

func (o *Origin) waitFailed(w http.ResponseWriter, err error) {
	if errors.Is(err, errTimeout) {
		fail(w, http.StatusServiceUnavailable, "the requested part did not appear in time")
		return
	}
	// The client went away (nobody reads this) or the server is shutting down.
	w.Header().Set("Retry-After", "1")
	fail(w, http.StatusServiceUnavailable, "server shutting down")
}

// mediaFile serves a segment ("{msn}", see segment) or a part ("{msn}.{i}"). A request
// for the part being written (the preload hint) or the next few is held
// until the part is complete.
func (o *Origin) mediaFile(w http.ResponseWriter, r *http.Request, s *packager.Stream, rend *packager.Rendition, name string) {
	msnStr, partStr, isPart := strings.Cut(name, ".")
	msn, err := strconv.ParseUint(msnStr, 10, 64)
	part := -1
	if err == nil && isPart {
		var p uint64
		p, err = strconv.ParseUint(partStr, 10, 16)
		part = int(p)
	}
	if err != nil {
		fail(w, http.StatusNotFound, "no such file")
		return
	}
	v := rend.View()
	if part < 0 {
		o.segment(w, r, s, rend, msn)
		return
	}
	have := func(v *packager.View) bool {
		_, ok := v.Part(msn, part)
		return ok
	}
	if !have(v) {
		nm, np, live := v.NextPart()
		ahead := live && (msn == nm && part >= np && part < np+3 || msn == nm+1 && part < 3)
		if !ahead {
			fail(w, http.StatusNotFound, "no such segment or part: outside the window")
			return
		}
		// A hinted part may never come: the segment can end before it (the
		// next frame was a keyframe on a boundary). "If the hinted resource
		// ... is not available, the server SHOULD respond with 404"; stop
		// waiting as soon as that is certain.
		gone := func(v *packager.View) bool {
			seg, ok := v.Segment(msn)
			return !v.Live || ok && seg.Complete && part >= len(seg.Parts)
		}
		if v, err = o.wait(r.Context(), rend, s, func(v *packager.View) bool { return have(v) || gone(v) }); err != nil {
			o.waitFailed(w, err)
			return
		}
		if !have(v) {
			fail(w, http.StatusNotFound, "this part was not written: its segment ended first, or the publisher stopped")
			return
		}
	}
	p, _ := v.Part(msn, part)
	seg, _ := v.Segment(msn)
	serveBytes(w, r, p.Data, "video/mp4", fmt.Sprintf(`"%d.%d"`, msn, part), seg.Start)
}

// segment serves segment msn: at once when it is complete, else as it is
// written. A request for the segment after the one being written waits for
// it to begin.
func (o *Origin) segment(w http.ResponseWriter, r *http.Request, s *packager.Stream, rend *packager.Rendition, msn uint64) {
	v := rend.View()
	if seg, ok := v.Segment(msn); ok && seg.Gap {
		fail(w, http.StatusNotFound, "no such segment: a gap (EXT-X-GAP), this rendition has no media for it")
		return
	}
	open := func(v *packager.View) bool { seg, ok := v.Segment(msn); return ok && len(seg.Parts) > 0 }
	if !open(v) {
		nm, _, live := v.NextPart()
		if !live || msn < nm || msn > nm+1 {
			fail(w, http.StatusNotFound, "no such segment: outside the window")
			return
		}
		var err error
		if v, err = o.wait(r.Context(), rend, s, func(v *packager.View) bool { return open(v) || !v.Live }); err != nil {
			o.waitFailed(w, err)
			return
		}
		if !open(v) {
			fail(w, http.StatusNotFound, "the publisher stopped before this segment began")
			return
		}
	}
	seg, _ := v.Segment(msn)
	etag := fmt.Sprintf(`"%d"`, msn)
	if seg.Complete {
		serveBytes(w, r, seg.Data, "video/mp4", etag, seg.Start)
		return
	}
	// In progress: the response is the same bytes as the complete segment
	// will be, sent part by part.
	h := w.Header()
	h.Set("Content-Type", "video/mp4")
	h.Set("Cache-Control", cacheImmutable)
	h.Set("ETag", etag)
	setLastModified(h, seg.Start)
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	flusher, _ := w.(http.Flusher)
	sent := 0
	for {
		for ; sent < len(seg.Parts); sent++ {
			if _, err := w.Write(seg.Parts[sent].Data); err != nil {
				return
			}
		}
		if flusher != nil {
			flusher.Flush()
		}
		if seg.Complete || !v.Live {
			return
		}
		select {
		case <-v.Changed:
		case <-r.Context().Done():
			return
		}
		v = rend.View()
		if seg, _ = v.Segment(msn); seg == nil {
			return // slid out of the window: cannot happen while it is written
		}
	}
}

// serveBytes serves immutable media with Range and conditional requests.
// modified, when known, is the Last-Modified: the start of the segment
// (stable for the URL, and never after the bytes were written).
func serveBytes(w http.ResponseWriter, r *http.Request, data []byte, ctype, etag string, modified time.Time) {
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Cache-Control", cacheImmutable)
	h.Set("ETag", etag)
	modified = setLastModified(h, modified)
	if r.Header.Get("Range") == "" && r.Header.Get("If-None-Match") == "" && r.Header.Get("If-Match") == "" &&
		r.Header.Get("If-Modified-Since") == "" && r.Header.Get("If-Unmodified-Since") == "" {
		// The common case, a plain GET: one write of the bytes we hold.
		h.Set("Content-Length", strconv.Itoa(len(data)))
		if r.Method != http.MethodHead {
			_, _ = w.Write(data)
		}
		return
	}
	http.ServeContent(w, r, "", modified, bytes.NewReader(data))
}

// setLastModified sets Last-Modified to t, unless t is unknown or (a
// publisher clock ahead of ours) in the future, and returns what it set.
// Playlists and the MPD get none: they change several times a second, and
// a validator with one-second resolution would let a cache answer 304 to
// a player holding an older version of the same second (their ETag is
// exact).
func setLastModified(h http.Header, t time.Time) time.Time {
	if t.IsZero() || t.After(time.Now()) {
		return time.Time{}
	}
	h.Set("Last-Modified", t.UTC().Format(http.TimeFormat))
	return t
}

// serveTime answers the origin's clock, ISO 8601 in UTC with milliseconds,
// for DASH players' UTCTiming (urn:mpeg:dash:utc:http-iso:2014): they must
// never reach out to a time server on the internet.
func serveTime(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, time.Now().UTC().Format("2006-01-02T15:04:05.000Z"))
}

// mpd serves the DASH manifest, waiting like the multivariant playlist
// for the first complete segments of a stream that just started.
func (o *Origin) mpd(w http.ResponseWriter, r *http.Request) {
	s := o.stream(w, r)
	if s == nil {
		return
	}
	// Scheme-relative: behind an HTTPS edge the player's page is https and
	// resolves it to https, without the origin having to know.
	timeURL := "//" + r.Host + "/time"
	o.whenStarted(w, r, s, func() bool {
		m, ok := s.MPD(timeURL)
		if ok {
			// Cacheable for its update period (minimumUpdatePeriod, two
			// segments): it changes only when renditions come or go.
			o.writeManifest(w, r, m, "application/dash+xml", cacheMPD)
		}
		return ok
	})
}

var gzipPool = sync.Pool{New: func() any { w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed); return w }}

// writePlaylist writes a playlist with its ETag, gzip when the client
// takes it.
func (o *Origin) writePlaylist(w http.ResponseWriter, r *http.Request, pl []byte, cache string) {
	o.writeManifest(w, r, pl, "application/vnd.apple.mpegurl", cache)
}

// writeManifest writes a playlist or MPD with its ETag, gzip when the
// client takes it. The ETags and the gzipped body are made once per
// manifest (see encodings): the requests that a part's publication
// releases all want the same one.
func (o *Origin) writeManifest(w http.ResponseWriter, r *http.Request, pl []byte, ctype, cache string) {
	e := o.encodings.get(pl)
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Cache-Control", cache)
	h.Set("ETag", e.etag)
	h.Add("Vary", "Accept-Encoding")
	if inm := r.Header.Get("If-None-Match"); inm != "" && strings.Contains(inm, e.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if r.Method == http.MethodHead {
		h.Set("Content-Length", strconv.Itoa(len(pl)))
		return
	}
	if len(pl) > 512 && acceptsGzip(r) {
		gz, etag := e.gzipped()
		h.Set("Content-Encoding", "gzip")
		h.Set("ETag", etag)
		h.Set("Content-Length", strconv.Itoa(len(gz)))
		_, _ = w.Write(gz)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(pl)))
	_, _ = w.Write(pl)
}

// encoded is one manifest's ETag and, made on first use, its gzipped body
// and that body's ETag.
type encoded struct {
	pl     []byte
	etag   string
	gzOnce sync.Once
	gz     []byte
	gzETag string
}

func (e *encoded) gzipped() ([]byte, string) {
	e.gzOnce.Do(func() {
		gz := gzipPool.Get().(*gzip.Writer)
		defer gzipPool.Put(gz)
		var buf bytes.Buffer
		gz.Reset(&buf)
		_, _ = gz.Write(e.pl)
		_ = gz.Close()
		e.gz = buf.Bytes()
		// A gzipped body has its own ETag, as RFC 9110 §8.8.3 requires of
		// different representations.
		e.gzETag = strings.TrimSuffix(e.etag, `"`) + `-gz"`
	})
	return e.gz, e.gzETag
}

// encodings remembers the encoded forms of the latest manifests, by the
// identity of their bytes: the packager renders a playlist once per View
// and the MPD once per change, and hands every request the same slice.
// (An entry holds its slice, so its address cannot be reused while it is
// remembered.) A manifest rendered anew for each request only costs an
// entry that soon falls out.
type encodings struct {
	mu      sync.Mutex
	entries [encodingsKept]*encoded
	next    int
}

// encodingsKept is how many manifests encodings remembers: a few per
// rendition (full and delta playlists) across a few busy streams.
const encodingsKept = 64

func (c *encodings) get(pl []byte) *encoded {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries {
		if e != nil && len(e.pl) == len(pl) && unsafe.SliceData(e.pl) == unsafe.SliceData(pl) {
			return e
		}
	}
	sum := fnv.New64a()
	_, _ = sum.Write(pl)
	e := &encoded{pl: pl, etag: fmt.Sprintf(`"%x"`, sum.Sum64())}
	c.entries[c.next] = e
	c.next = (c.next + 1) % len(c.entries)
	return e
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(enc), "gzip") {
			continue
		}
		_, qv, hasQ := strings.Cut(strings.ReplaceAll(params, " ", ""), "q=")
		if q, err := strconv.ParseFloat(qv, 64); hasQ && err == nil && q == 0 {
			return false
		}
		return true
	}
	return false
}
