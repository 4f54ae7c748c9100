package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"
	"go.yaml.in/yaml/v3"
)

// Config is the whole server configuration. It is loaded once, in this
// order, each step overriding the one before: built-in defaults → the YAML
// file named by --config (unknown keys are errors) → HYBRIDCAST_* environment
// variables → command-line flags. Validate reports every problem at once.
type Config struct {
	// HTTPAddr is where WHIP, WHEP and every page and API are served.
	HTTPAddr string `yaml:"http_addr"`
	// TLSCert and TLSKey, when both set, are PEM files: HTTP is then served
	// over TLS (HTTP/2 negotiated by ALPN) instead of cleartext (HTTP/1.1
	// and h2c).
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// WebRTCUDPAddr carries all WebRTC media (ICE UDP mux); ICE-TCP listens
	// on the same port number.
	WebRTCUDPAddr string `yaml:"webrtc_udp_addr"`
	// PublicIPs are advertised as our ICE candidates instead of the local
	// addresses (NAT 1:1, containers).
	PublicIPs []string `yaml:"public_ips"`
	// ICEServers are STUN/TURN servers advertised to clients in Link
	// headers: "stun:host:port" or "turn:host:port?transport=udp;username=u;credential=c".
	ICEServers []string `yaml:"ice_servers"`
	// PublishToken is the Bearer token for WHIP. Empty: a random one is
	// made at start and printed once.
	PublishToken string `yaml:"publish_token"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// ViewerPublisherWait is how long a WebRTC viewer waits for a publisher
	// that is not (or no longer) live before its session ends.
	ViewerPublisherWait time.Duration `yaml:"viewer_publisher_wait"`
	// MaxWebRTCViewers caps the WebRTC viewers of one stream; past it a
	// WHEP offer gets 503 with Retry-After and Link headers to the stream's
	// HLS and DASH manifests. 0 means no cap.
	MaxWebRTCViewers int `yaml:"max_webrtc_viewers"`
	// MaxWebRTCViewersTotal caps the WebRTC viewers of all streams
	// together, answered the same way. 0 means no cap.
	MaxWebRTCViewersTotal int `yaml:"max_webrtc_viewers_total"`
	// LoopbackOnly restricts WebRTC to loopback addresses (tests, demos on
	// one machine).
	LoopbackOnly bool `yaml:"loopback_only"`
	// DebugAddr, when set, serves Go's pprof profiles on that address
	// (keep it private: loopback).
	DebugAddr string `yaml:"debug_addr"`
	// HLSPartDuration is the LL-HLS part target (CMAF chunk length).
	HLSPartDuration time.Duration `yaml:"hls_part_duration"`
	// HLSSegmentDuration is the HLS/DASH segment length.
	HLSSegmentDuration time.Duration `yaml:"hls_segment_duration"`
	// HLSWindow is how much media the playlists keep.
	HLSWindow time.Duration `yaml:"hls_window"`
	// WebDir is the directory whose node_modules holds the browser players
	// (hls.js, dash.js) served under /assets/, installed there by
	// scripts/setup. Empty: the web directory of the repository the
	// working directory is in (web.FindDir).
	WebDir string `yaml:"web_dir"`

	// tokenGenerated is set when PublishToken was made at start.
	tokenGenerated bool
	// disableICETCP turns ICE-TCP off (tests: a browser limited to TCP
	// then has no way in).
	disableICETCP bool
}

// DefaultConfig returns the embedded defaults: everything needed to run
// with no file, no environment and no flags.
func DefaultConfig() Config {
	return Config{
		HTTPAddr:            ":8080",
		WebRTCUDPAddr:       ":8189",
		LogLevel:            "info",
		ViewerPublisherWait: 30 * time.Second,
		HLSPartDuration:     200 * time.Millisecond,
		HLSSegmentDuration:  time.Second,
		HLSWindow:           30 * time.Second,
		MaxWebRTCViewers:    3000,
	}
}

const envPrefix = "HYBRIDCAST_"

// LoadConfig builds the configuration from args (without the program name)
// and the environment.
func LoadConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("hybridcast", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "optional YAML configuration `file` (unknown keys are errors)")
	// Flags are parsed into a separate struct so that the file and the
	// environment can be applied first, then only the flags that were set.
	var fl Config
	var publicIPs, iceServers listFlag
	fs.StringVar(&fl.HTTPAddr, "http-addr", cfg.HTTPAddr, "HTTP listen `address` (env HYBRIDCAST_HTTP_ADDR)")
	fs.StringVar(&fl.WebRTCUDPAddr, "webrtc-udp-addr", cfg.WebRTCUDPAddr, "UDP `address` for all WebRTC media; ICE-TCP uses the same port (env HYBRIDCAST_WEBRTC_UDP_ADDR)")
	fs.Var(&publicIPs, "public-ip", "`IP` to advertise in ICE candidates, repeatable or comma-separated (env HYBRIDCAST_PUBLIC_IPS)")
	fs.Var(&iceServers, "ice-server", "STUN/TURN `URL` advertised to clients, repeatable; TURN credentials as ;username=u;credential=c (env HYBRIDCAST_ICE_SERVERS, space-separated)")
	fs.StringVar(&fl.PublishToken, "publish-token", "", "Bearer `token` required to publish; default: random, printed at start (env HYBRIDCAST_PUBLISH_TOKEN)")
	fs.StringVar(&fl.LogLevel, "log-level", cfg.LogLevel, "log `level`: debug, info, warn, error (env HYBRIDCAST_LOG_LEVEL)")
	fs.DurationVar(&fl.ViewerPublisherWait, "viewer-publisher-wait", cfg.ViewerPublisherWait, "how long a WebRTC viewer waits for an absent publisher (env HYBRIDCAST_VIEWER_PUBLISHER_WAIT)")
	fs.IntVar(&fl.MaxWebRTCViewers, "max-webrtc-viewers", cfg.MaxWebRTCViewers, "WebRTC viewers per stream, 0 for no cap; more get 503 with links to HLS/DASH (env HYBRIDCAST_MAX_WEBRTC_VIEWERS)")
	fs.IntVar(&fl.MaxWebRTCViewersTotal, "max-webrtc-viewers-total", cfg.MaxWebRTCViewersTotal, "WebRTC viewers of all streams together, 0 for no cap (env HYBRIDCAST_MAX_WEBRTC_VIEWERS_TOTAL)")
	fs.BoolVar(&fl.LoopbackOnly, "loopback-only", false, "use only loopback addresses for WebRTC (env HYBRIDCAST_LOOPBACK_ONLY)")
	fs.StringVar(&fl.DebugAddr, "debug-addr", "", "serve pprof profiles on this `address`, e.g. 127.0.0.1:6060 (env HYBRIDCAST_DEBUG_ADDR)")
	fs.StringVar(&fl.TLSCert, "tls-cert", "", "PEM certificate `file`: serve HTTPS (with --tls-key) (env HYBRIDCAST_TLS_CERT)")
	fs.StringVar(&fl.TLSKey, "tls-key", "", "PEM private key `file` for --tls-cert (env HYBRIDCAST_TLS_KEY)")
	fs.DurationVar(&fl.HLSPartDuration, "hls-part-duration", cfg.HLSPartDuration, "LL-HLS part target (env HYBRIDCAST_HLS_PART_DURATION)")
	fs.DurationVar(&fl.HLSSegmentDuration, "hls-segment-duration", cfg.HLSSegmentDuration, "HLS/DASH segment length (env HYBRIDCAST_HLS_SEGMENT_DURATION)")
	fs.DurationVar(&fl.HLSWindow, "hls-window", cfg.HLSWindow, "media kept in the HLS/DASH playlists (env HYBRIDCAST_HLS_WINDOW)")
	fs.StringVar(&fl.WebDir, "web-dir", "", "`directory` whose node_modules holds hls.js and dash.js (scripts/setup installs them); default: web/ of the repository around the working directory (env HYBRIDCAST_WEB_DIR)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}

	var errs []error
	if *configPath != "" {
		if err := loadYAML(*configPath, &cfg); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, applyEnv(&cfg, getenv)...)

	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["http-addr"] {
		cfg.HTTPAddr = fl.HTTPAddr
	}
	if set["webrtc-udp-addr"] {
		cfg.WebRTCUDPAddr = fl.WebRTCUDPAddr
	}
	if set["public-ip"] {
		cfg.PublicIPs = publicIPs
	}
	if set["ice-server"] {
		cfg.ICEServers = iceServers
	}
	if set["publish-token"] {
		cfg.PublishToken = fl.PublishToken
	}
	if set["log-level"] {
		cfg.LogLevel = fl.LogLevel
	}
	if set["viewer-publisher-wait"] {
		cfg.ViewerPublisherWait = fl.ViewerPublisherWait
	}
	if set["max-webrtc-viewers"] {
		cfg.MaxWebRTCViewers = fl.MaxWebRTCViewers
	}
	if set["max-webrtc-viewers-total"] {
		cfg.MaxWebRTCViewersTotal = fl.MaxWebRTCViewersTotal
	}
	if set["loopback-only"] {
		cfg.LoopbackOnly = fl.LoopbackOnly
	}
	if set["debug-addr"] {
		cfg.DebugAddr = fl.DebugAddr
	}
	if set["tls-cert"] {
		cfg.TLSCert = fl.TLSCert
	}
	if set["tls-key"] {
		cfg.TLSKey = fl.TLSKey
	}
	if set["hls-part-duration"] {
		cfg.HLSPartDuration = fl.HLSPartDuration
	}
	if set["hls-segment-duration"] {
		cfg.HLSSegmentDuration = fl.HLSSegmentDuration
	}
	if set["hls-window"] {
		cfg.HLSWindow = fl.HLSWindow
	}
	if set["web-dir"] {
		cfg.WebDir = fl.WebDir
	}
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	return cfg, errors.Join(errs...)
}

type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

func loadYAML(path string, cfg *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

func applyEnv(cfg *Config, getenv func(string) string) []error {
	var errs []error
	str := func(name string, dst *string) {
		if v := getenv(envPrefix + name); v != "" {
			*dst = v
		}
	}
	str("HTTP_ADDR", &cfg.HTTPAddr)
	str("WEBRTC_UDP_ADDR", &cfg.WebRTCUDPAddr)
	str("PUBLISH_TOKEN", &cfg.PublishToken)
	str("LOG_LEVEL", &cfg.LogLevel)
	str("DEBUG_ADDR", &cfg.DebugAddr)
	str("TLS_CERT", &cfg.TLSCert)
	str("TLS_KEY", &cfg.TLSKey)
	str("WEB_DIR", &cfg.WebDir)
	if v := getenv(envPrefix + "PUBLIC_IPS"); v != "" {
		cfg.PublicIPs = strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' })
	}
	if v := getenv(envPrefix + "ICE_SERVERS"); v != "" {
		cfg.ICEServers = strings.Fields(v)
	}
	dur := func(name string, dst *time.Duration) {
		if v := getenv(envPrefix + name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s%s: %w", envPrefix, name, err))
			} else {
				*dst = d
			}
		}
	}
	dur("VIEWER_PUBLISHER_WAIT", &cfg.ViewerPublisherWait)
	dur("HLS_PART_DURATION", &cfg.HLSPartDuration)
	dur("HLS_SEGMENT_DURATION", &cfg.HLSSegmentDuration)
	dur("HLS_WINDOW", &cfg.HLSWindow)
	integer := func(name string, dst *int) {
		if v := getenv(envPrefix + name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s%s: %q is not an integer", envPrefix, name, v))
				return
			}
			*dst = n
		}
	}
	integer("MAX_WEBRTC_VIEWERS", &cfg.MaxWebRTCViewers)
	integer("MAX_WEBRTC_VIEWERS_TOTAL", &cfg.MaxWebRTCViewersTotal)
	if v := getenv(envPrefix + "LOOPBACK_ONLY"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%sLOOPBACK_ONLY: %w", envPrefix, err))
		} else {
			cfg.LoopbackOnly = b
		}
	}
	return errs
}

// Validate checks the whole configuration and reports every problem.
func (c *Config) Validate() error {
	var errs []error
	checkAddr := func(name, addr string) {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", name, addr, err))
			return
		}
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("%s %q: port must be 0-65535", name, addr))
		}
	}
	checkAddr("http_addr", c.HTTPAddr)
	checkAddr("webrtc_udp_addr", c.WebRTCUDPAddr)
	if c.DebugAddr != "" {
		checkAddr("debug_addr", c.DebugAddr)
	}
	for _, ip := range c.PublicIPs {
		if net.ParseIP(ip) == nil {
			errs = append(errs, fmt.Errorf("public_ips: %q is not an IP address", ip))
		}
	}
	for _, s := range c.ICEServers {
		if _, err := parseICEServer(s); err != nil {
			errs = append(errs, fmt.Errorf("ice_servers: %w", err))
		}
	}
	if strings.ContainsAny(c.PublishToken, " \t\r\n") {
		errs = append(errs, errors.New("publish_token must not contain white space"))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if c.ViewerPublisherWait <= 0 {
		errs = append(errs, fmt.Errorf("viewer_publisher_wait must be positive, got %s", c.ViewerPublisherWait))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("tls_cert and tls_key go together: set both or neither"))
	} else if c.TLSCert != "" {
		if _, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
			errs = append(errs, fmt.Errorf("tls_cert/tls_key: %w", err))
		}
	}
	if c.HLSPartDuration < 50*time.Millisecond || c.HLSPartDuration > 2*time.Second {
		errs = append(errs, fmt.Errorf("hls_part_duration must be 50ms to 2s, got %s", c.HLSPartDuration))
	}
	if c.HLSSegmentDuration < c.HLSPartDuration || c.HLSSegmentDuration > 10*time.Second {
		errs = append(errs, fmt.Errorf("hls_segment_duration must be at least hls_part_duration and at most 10s, got %s", c.HLSSegmentDuration))
	}
	if c.HLSWindow < 3*c.HLSSegmentDuration {
		errs = append(errs, fmt.Errorf("hls_window must hold at least 3 segments, got %s", c.HLSWindow))
	}
	if c.MaxWebRTCViewers < 0 {
		errs = append(errs, fmt.Errorf("max_webrtc_viewers must be 0 (no cap) or more, got %d", c.MaxWebRTCViewers))
	}
	if c.MaxWebRTCViewersTotal < 0 {
		errs = append(errs, fmt.Errorf("max_webrtc_viewers_total must be 0 (no cap) or more, got %d", c.MaxWebRTCViewersTotal))
	}
	return errors.Join(errs...)
}

// parseICEServer reads "URL[;username=u;credential=c]".
func parseICEServer(s string) (webrtc.ICEServer, error) {
	parts := strings.Split(s, ";")
	u := parts[0]
	scheme, _, ok := strings.Cut(u, ":")
	switch {
	case !ok:
		return webrtc.ICEServer{}, fmt.Errorf("%q is not a URL", s)
	case scheme != "stun" && scheme != "stuns" && scheme != "turn" && scheme != "turns":
		return webrtc.ICEServer{}, fmt.Errorf("%q: scheme must be stun, stuns, turn or turns", s)
	}
	srv := webrtc.ICEServer{URLs: []string{u}}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		switch k {
		case "username":
			srv.Username = v
		case "credential":
			srv.Credential = v
		default:
			return webrtc.ICEServer{}, fmt.Errorf("%q: unknown parameter %q (want username=, credential=)", s, k)
		}
	}
	if strings.HasPrefix(scheme, "turn") && (srv.Username == "" || srv.Credential == nil) {
		return webrtc.ICEServer{}, fmt.Errorf("%q: a TURN server needs ;username=…;credential=…", s)
	}
	return srv, nil
}

func (c *Config) iceServers() []webrtc.ICEServer {
	out := make([]webrtc.ICEServer, 0, len(c.ICEServers))
	for _, s := range c.ICEServers {
		if srv, err := parseICEServer(s); err == nil {
			out = append(out, srv)
		}
	}
	return out
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log_level %q: want debug, info, warn or error", s)
	}
	return l, nil
}
