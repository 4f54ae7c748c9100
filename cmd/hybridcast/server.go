package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/hybridcast/hybridcast/ingest"
	"github.com/hybridcast/hybridcast/internal/metrics"
	"github.com/hybridcast/hybridcast/internal/pages"
	"github.com/hybridcast/hybridcast/origin"
	"github.com/hybridcast/hybridcast/packager"
	"github.com/hybridcast/hybridcast/sfu"
	"github.com/hybridcast/hybridcast/sfu/rtc"
	"github.com/hybridcast/hybridcast/sfu/whep"
	"github.com/hybridcast/hybridcast/web"
)

// server is the whole hybridcast process: one HTTP listener, one WebRTC
// media socket, and the packages wired between them.
type server struct {
	cfg      Config
	log      *slog.Logger
	registry *sfu.Registry
	engine   *rtc.Engine
	whip     *ingest.Handler
	whep     *whep.Handler
	packager *packager.Packager
	origin   *origin.Origin
	metrics  *metrics.Metrics
	players  *web.Handler // nil when hls.js/dash.js are not installed
	// cancelBase cancels every request's parent context at shutdown, so
	// that held LL-HLS requests end at once.
	cancelBase context.CancelFunc
	ln         net.Listener
	http       *http.Server
	debug      *http.Server // pprof, when configured
	debugLn    net.Listener
	// ready is true from the start of Serve until shutdown begins: the
	// HTTP listener and the media socket are bound (newServer) and served.
	ready atomic.Bool
}

// newServer binds the sockets. Nothing runs until Serve.
func newServer(cfg Config, log *slog.Logger) (*server, error) {
	if cfg.PublishToken == "" {
		cfg.PublishToken = randomToken()
		cfg.tokenGenerated = true
	}
	s := &server{cfg: cfg, log: log, registry: sfu.NewRegistry(log)}
	var err error
	s.engine, err = rtc.NewEngine(rtc.Config{
		UDPAddr: cfg.WebRTCUDPAddr, PublicIPs: cfg.PublicIPs, LoopbackOnly: cfg.LoopbackOnly, Logger: log,
		DisableTCP: cfg.disableICETCP,
	})
	if err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	s.ln, err = lc.Listen(context.Background(), "tcp", cfg.HTTPAddr)
	if err != nil {
		_ = s.engine.Close()
		return nil, fmt.Errorf("listen for HTTP on %s: %w", cfg.HTTPAddr, err)
	}
	ice := cfg.iceServers()
	s.whip = ingest.New(ingest.Config{Registry: s.registry, Engine: s.engine, Token: cfg.PublishToken, ICEServers: ice, Logger: log})
	s.whep = whep.New(whep.Config{
		Registry: s.registry, Engine: s.engine, ICEServers: ice, PublisherWait: cfg.ViewerPublisherWait,
		MaxViewers: cfg.MaxWebRTCViewers, ServerLimit: whep.NewLimit(cfg.MaxWebRTCViewersTotal), Alternates: fallbackLinks,
		Logger: log,
	})

	s.metrics = metrics.New(metrics.Config{
		Streams: s.registry, Publishers: s.whip, WHEPRejections: s.whep, Logger: log,
		Forwarding: &s.whep.Forwarding, SendWait: &s.engine.SendWait, Ingress: &s.engine.Arrivals().Ingress,
		UDPSend: func() (uint64, uint64, uint64) {
			c := s.engine.SendCounters()
			return c.Datagrams, c.Calls, c.Segmented
		},
	})
	// Other parts add their collectors here, with s.metrics.Register.
	media, err := metrics.NewMedia(s.metrics)
	if err != nil {
		_ = s.ln.Close()
		_ = s.engine.Close()
		return nil, fmt.Errorf("metrics: %w", err)
	}

	s.packager = packager.New(packager.Config{
		PartDuration: cfg.HLSPartDuration, SegmentDuration: cfg.HLSSegmentDuration, Window: cfg.HLSWindow, Logger: log,
		OnPart: media.ObservePart,
	})
	s.origin = origin.New(origin.Config{Source: s.packager, Logger: log,
		OnRequest: media.ObserveRequest, OnBlockingResponse: media.ObserveBlocking})

	mux := http.NewServeMux()
	mux.Handle("/whip/", s.whip)
	mux.Handle("/whep/", s.whep)
	mux.Handle("/hls/", s.origin)
	mux.Handle("/dash/", s.origin)
	mux.Handle("GET /time", s.origin)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", s.metrics)
	mux.HandleFunc("GET /api/streams", s.apiStreams)
	s.players = loadPlayers(cfg.WebDir, log)
	if s.players != nil {
		mux.Handle("GET /assets/", http.StripPrefix("/assets", s.players))
	} else {
		mux.HandleFunc("GET /assets/", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "the players (hls.js, dash.js) are not installed on this server: run scripts/setup", http.StatusNotFound)
		})
	}
	pg := pages.New(pages.Config{Players: s.players, AssetsPrefix: "/assets/", Logger: log,
		PartTarget: s.packager.Config().PartDuration})
	mux.Handle("GET /watch/{stream}", pg)
	mux.Handle("GET /publish/{stream}", pg)
	mux.Handle("GET /{$}", pg)
	base, cancelBase := context.WithCancel(context.Background())
	s.cancelBase = cancelBase
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // h2c: players and caches multiplex playlist and part requests
	protocols.SetHTTP2(true)            // with --tls-cert, by ALPN
	s.http = &http.Server{
		Handler:           mux,
		Protocols:         &protocols,
		BaseContext:       func(net.Listener) context.Context { return base },
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if cfg.DebugAddr != "" {
		s.debugLn, err = lc.Listen(context.Background(), "tcp", cfg.DebugAddr)
		if err != nil {
			_ = s.ln.Close()
			_ = s.engine.Close()
			return nil, fmt.Errorf("listen for pprof on %s: %w", cfg.DebugAddr, err)
		}
		dm := http.NewServeMux()
		dm.HandleFunc("/debug/pprof/", pprof.Index)
		dm.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		dm.HandleFunc("/debug/pprof/profile", pprof.Profile)
		dm.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		dm.HandleFunc("/debug/pprof/trace", pprof.Trace)
		s.debug = &http.Server{Handler: dm, ReadHeaderTimeout: 10 * time.Second}
	}
	return s, nil
}

// loadPlayers reads hls.js and dash.js from dir (the repository's web
// directory when empty). Without them the server still runs: it logs why
// and how to fix it, and the watch page plays WebRTC only.
func loadPlayers(dir string, log *slog.Logger) *web.Handler {
	if dir == "" {
		var err error
		if dir, err = web.FindDir(); err != nil {
			log.Warn("browser players unavailable: no web directory found (run from the repository, or set --web-dir); the watch page has no HLS fallback",
				"err", err)
			return nil
		}
	}
	h, err := web.Assets(dir)
	if err != nil {
		log.Warn("browser players unavailable: run scripts/setup (npm ci --prefix web), or point --web-dir at an installed web directory; the watch page has no HLS fallback",
			"web_dir", dir, "err", err)
		return nil
	}
	return h
}

// fallbackLinks are the Link header values of a WHEP 503 at a viewer cap:
// the stream's LL-HLS playlist and DASH manifest, for the player to fall
// back to.
func fallbackLinks(stream string) []string {
	return []string{
		"</hls/" + stream + `/index.m3u8>; rel="alternate"; type="application/vnd.apple.mpegurl"`,
		"</dash/" + stream + `/manifest.mpd>; rel="alternate"; type="application/dash+xml"`,
	}
}

func randomToken() string {
	var b [18]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// URL returns the base URL clients on this machine can use.
func (s *server) URL() string {
	addr := s.ln.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "http://"
	if s.cfg.TLSCert != "" {
		scheme = "https://"
	}
	return scheme + net.JoinHostPort(host, fmt.Sprint(addr.Port))
}

// Serve runs until ctx ends, then shuts down: HTTP stops taking requests,
// every WebRTC session closes, the sockets are released.
func (s *server) Serve(ctx context.Context) error {
	s.ready.Store(true)
	errc := make(chan error, 1)
	go func() { // joined below through errc
		if s.cfg.TLSCert != "" {
			errc <- s.http.ServeTLS(s.ln, s.cfg.TLSCert, s.cfg.TLSKey)
			return
		}
		errc <- s.http.Serve(s.ln)
	}()
	pkgCtx, stopPackager := context.WithCancel(context.Background())
	pkgDone := make(chan struct{})
	go func() { _ = s.packager.Run(pkgCtx, s.registry); close(pkgDone) }() // joined below
	defer func() { stopPackager(); <-pkgDone }()
	debugDone := make(chan struct{})
	if s.debug != nil {
		go func() { _ = s.debug.Serve(s.debugLn); close(debugDone) }() // joined below
	} else {
		close(debugDone)
	}
	defer func() {
		if s.debug != nil {
			_ = s.debug.Close()
		}
		<-debugDone
	}()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		s.ready.Store(false)
		s.cancelBase() // held LL-HLS requests answer now
		// net/http counts a connection on which no request has come yet
		// (a browser's preconnect) as active for its first 5 s, so a
		// 5 s bound failed whenever one was opened just before: CI's
		// TestPublishPageErrors, with Chromium still open, once stopped
		// with "context deadline exceeded". 10 s outlasts that rule.
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = s.http.Shutdown(shutdownCtx)
		cancel()
		if serveErr := <-errc; !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
			err = serveErr
		}
	}
	s.ready.Store(false)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return errors.Join(err, s.whep.Close(), s.whip.Close(), s.engine.Close())
}

// banner tells the user how to publish and watch.
func (s *server) banner(w io.Writer) {
	base := s.URL()
	fmt.Fprintf(w, "hybridcast is running\n")
	fmt.Fprintf(w, "  HTTP           %s (WebRTC media on udp/tcp %s)\n", base, s.engine.UDPAddr())
	fmt.Fprintf(w, "  publish (WHIP) %s/whip/demo   Authorization: Bearer %s\n", base, s.cfg.PublishToken)
	if s.cfg.tokenGenerated {
		fmt.Fprintf(w, "                 (random token made for this run; set --publish-token to choose one)\n")
	}
	fmt.Fprintf(w, "  watch (WHEP)   %s/whep/demo\n", base)
	fmt.Fprintf(w, "  watch (LL-HLS) %s/hls/demo/index.m3u8\n", base)
	fmt.Fprintf(w, "  watch (DASH)   %s/dash/demo/manifest.mpd\n", base)
	fmt.Fprintf(w, "  pages          %s/ (dashboard)  %s/publish/demo?token=%s  %s/watch/demo\n", base, base, s.cfg.PublishToken, base)
	fmt.Fprintf(w, "  try it:        go run ./examples/publisher -url %s/whip/demo -token %s\n", base, s.cfg.PublishToken)
	fmt.Fprintf(w, "                 go run ./examples/viewer -url %s/whep/demo\n", base)
}

// apiStream is one stream in GET /api/streams: the SFU's view plus what
// the dashboard shows.
type apiStream struct {
	sfu.StreamStats
	// UptimeSeconds is how long the current publisher has been live.
	UptimeSeconds float64    `json:"uptime_seconds,omitempty"`
	URLs          streamURLs `json:"urls"`
	// HLSDASHAudience estimates the HLS/DASH players the origin serves,
	// from the video parts and segments requested over the last 10 s.
	HLSDASHAudience float64 `json:"hls_dash_audience"`
}

// streamURLs are a stream's paths on this server.
type streamURLs struct {
	Watch   string `json:"watch"`
	Publish string `json:"publish"`
	WHIP    string `json:"whip"`
	WHEP    string `json:"whep"`
	HLS     string `json:"hls"`
	DASH    string `json:"dash"`
}

func (s *server) apiStreams(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	now := time.Now()
	stats := s.registry.Streams()
	streams := make([]apiStream, 0, len(stats))
	for _, st := range stats {
		a := apiStream{StreamStats: st, URLs: streamURLs{
			Watch: "/watch/" + st.Name, Publish: "/publish/" + st.Name, WHIP: "/whip/" + st.Name, WHEP: "/whep/" + st.Name,
			HLS: "/hls/" + st.Name + "/index.m3u8", DASH: "/dash/" + st.Name + "/manifest.mpd",
		}}
		if st.Live && !st.Since.IsZero() {
			a.UptimeSeconds = now.Sub(st.Since).Seconds()
		}
		a.HLSDASHAudience = math.Round(10*s.origin.Audience(st.Name, s.cfg.HLSPartDuration, s.cfg.HLSSegmentDuration)) / 10
		streams = append(streams, a)
	}
	type forwarding struct {
		ToSRTP   sfu.LatencySummary `json:"arrival_to_srtp"`
		SendWait sfu.LatencySummary `json:"send_queue_wait"`
		Ingress  sfu.LatencySummary `json:"kernel_to_track"`
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(struct {
		Streams []apiStream `json:"streams"`
		// Forwarding latency inside the server, for WebRTC viewers.
		Forwarding forwarding `json:"forwarding"`
	}{Streams: streams, Forwarding: forwarding{s.whep.Forwarding.Summary(), s.engine.SendWait.Summary(), s.engine.Arrivals().Ingress.Summary()}})
}

// readyz answers 200 while the server takes new sessions, 503 once it is
// shutting down.
func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !s.ready.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "shutting down\n")
		return
	}
	_, _ = io.WriteString(w, "ready\n")
}
