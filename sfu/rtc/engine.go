package rtc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hybridcast/hybridcast/sfu"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/logging"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Config configures the Engine. Zero values take the documented defaults.
type Config struct {
	// UDPAddr is where all WebRTC media is received and sent (ICE UDP mux);
	// ICE-TCP listens on the same port number. Default ":8189". A port of 0
	// picks a free one (tests).
	UDPAddr string
	// DisableTCP turns ICE-TCP off.
	DisableTCP bool
	// PublicIPs are advertised in our ICE host candidates instead of the
	// machine's own addresses (NAT 1:1, containers).
	PublicIPs []string
	// LoopbackOnly restricts ICE to loopback addresses: tests, and a server
	// that must never touch another network.
	LoopbackOnly bool
	Logger       *slog.Logger
}

// Engine owns the shared sockets and the pion APIs for publishers and viewers.
type Engine struct {
	log       *slog.Logger
	udpMux    ice.UDPMux
	tcpLn     net.Listener
	tcpMux    ice.TCPMux
	se        webrtc.SettingEngine // for publisher APIs with extra interceptors
	publisher *webrtc.API
	viewer    *webrtc.API
	// viewerMedia and viewerInterceptors are the viewer APIs' codecs and
	// (empty) interceptor chain, shared by ViewerAPI and NewViewer.
	viewerMedia        *webrtc.MediaEngine
	viewerInterceptors *interceptor.Registry
	closeOnce          sync.Once

	// SendWait measures each outgoing datagram from queued to handed to the
	// kernel (the batched sender's share of forwarding latency).
	SendWait sfu.LatencyHistogram

	batch    *batchConn
	arrivals sfu.Arrivals
}

// Arrivals has the kernel's receive time of the RTP packets read from the
// media socket (where the kernel stamps them: Linux), for the tracks that
// forward them (sfu.TrackConfig.Arrivals).
func (e *Engine) Arrivals() *sfu.Arrivals { return &e.arrivals }

// SendCounters describes the media socket's batched sends.
type SendCounters struct {
	// Datagrams counts the datagrams sent; Calls the sendmmsg(2) calls that
	// carried them; Segmented the datagrams that left in UDP GSO sends.
	Datagrams, Calls, Segmented uint64
}

// SendCounters returns the media socket's send counters.
func (e *Engine) SendCounters() SendCounters {
	return SendCounters{Datagrams: e.batch.sent.Load(), Calls: e.batch.calls.Load(), Segmented: e.batch.segmented.Load()}
}

// NewEngine binds the media sockets and builds the APIs.
func NewEngine(cfg Config) (*Engine, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "rtc")
	addr := cfg.UDPAddr
	if addr == "" {
		addr = ":8189"
	}
	for _, ip := range cfg.PublicIPs {
		if net.ParseIP(ip) == nil {
			return nil, fmt.Errorf("public IP %q is not an IP address", ip)
		}
	}
	if cfg.LoopbackOnly {
		// An unspecified address would advertise every interface's address
		// (the UDP mux lists them itself), and peers on this machine would
		// then also pair with those and switch paths mid-stream.
		if host, port, err := net.SplitHostPort(addr); err == nil {
			if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
				addr = net.JoinHostPort("127.0.0.1", port)
			}
		}
	}
	e := &Engine{log: log}
	lf := &pionLogger{log: log}

	udp, tcpLn, err := listenPair(addr, !cfg.DisableTCP)
	if err != nil {
		return nil, err
	}
	e.tcpLn = tcpLn
	// The batchConn owns the socket from here (on Linux it closes udp
	// itself once it has duplicated its descriptor).
	bc := newBatchConn(udp.(*net.UDPConn), &e.SendWait, &e.arrivals)
	e.batch = bc
	log.Debug("media socket", "addr", bc.LocalAddr().String(), "writers", len(bc.queues), "udp_gso", bc.gso.Load(),
		"kernel_stamps", bc.stamped)
	e.udpMux = ice.NewUDPMuxDefault(ice.UDPMuxParams{Logger: lf.NewLogger("udpmux"), UDPConn: bc})
	if e.tcpLn != nil {
		e.tcpMux = webrtc.NewICETCPMux(lf.NewLogger("tcpmux"), e.tcpLn, 32)
	}

	se := webrtc.SettingEngine{LoggerFactory: lf}
	se.SetICEUDPMux(e.udpMux)
	networks := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	if e.tcpMux != nil {
		se.SetICETCPMux(e.tcpMux)
		networks = append(networks, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
	}
	se.SetNetworkTypes(networks)
	// A server needs no mDNS: it answers with raw addresses and learns the
	// browser's (possibly .local) address from its connectivity checks.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// A peer that vanishes without DELETE is noticed within seconds, not
	// pion's default 25 s: disconnected after 5 s of silence, failed after
	// 10 s, keepalives every 2 s.
	se.SetICETimeouts(5*time.Second, 10*time.Second, 2*time.Second)
	if cfg.LoopbackOnly {
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	}
	if len(cfg.PublicIPs) > 0 {
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External: cfg.PublicIPs, AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace,
		}); err != nil {
			_ = e.Close()
			return nil, fmt.Errorf("public IPs: %w", err)
		}
	}

	e.se = se
	if e.publisher, err = publisherAPI(se); err != nil {
		_ = e.Close()
		return nil, err
	}
	if e.viewerMedia, e.viewerInterceptors, err = viewerMedia(); err != nil {
		_ = e.Close()
		return nil, err
	}
	e.viewer = webrtc.NewAPI(webrtc.WithMediaEngine(e.viewerMedia), webrtc.WithInterceptorRegistry(e.viewerInterceptors),
		webrtc.WithSettingEngine(se))
	return e, nil
}

// UDPAddr returns the bound media address.
func (e *Engine) UDPAddr() net.Addr { return e.batch.LocalAddr() }

// PublisherAPI builds PeerConnections that receive from a publisher.
// Without arguments it returns the API all publishers share. With
// interceptor factories it builds a new API whose interceptor chain starts
// with them, in order: they see each incoming RTP packet before the NACK
// generator, the receiver reports, TWCC and pion's demultiplexer do. That
// costs a MediaEngine per call; use it for the PeerConnections that need it.
func (e *Engine) PublisherAPI(first ...interceptor.Factory) (*webrtc.API, error) {
	if len(first) == 0 {
		return e.publisher, nil
	}
	return publisherAPI(e.se, first...)
}

// ViewerAPI builds PeerConnections that send to a viewer. They carry no NACK
// responder of their own: the SFU answers NACKs from one shared per-track
// history instead of a per-viewer copy of every packet.
func (e *Engine) ViewerAPI() *webrtc.API { return e.viewer }

// Close releases the sockets. PeerConnections must be closed first.
func (e *Engine) Close() error {
	var errs []error
	e.closeOnce.Do(func() {
		if e.tcpMux != nil {
			errs = append(errs, e.tcpMux.Close())
		}
		if e.udpMux != nil {
			errs = append(errs, e.udpMux.Close())
		}
	})
	return errors.Join(errs...)
}

func registerCodecs(m *webrtc.MediaEngine) error {
	for _, c := range videoCodecs {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return fmt.Errorf("register %s: %w", c.MimeType, err)
		}
	}
	for _, c := range audioCodecs {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			return fmt.Errorf("register %s: %w", c.MimeType, err)
		}
	}
	return nil
}

func publisherAPI(se webrtc.SettingEngine, first ...interceptor.Factory) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	for _, f := range first {
		ir.Add(f)
	}
	// Receiving side only: NACK generation, receiver reports, TWCC feedback
	// (so the browser's bandwidth estimate can grow), simulcast header
	// extensions.
	gen, err := nack.NewGeneratorInterceptor()
	if err != nil {
		return nil, err
	}
	ir.Add(gen)
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return nil, err
	}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
		return nil, err
	}
	if err := webrtc.ConfigureTWCCSender(m, ir); err != nil {
		return nil, err
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

func viewerMedia() (*webrtc.MediaEngine, *interceptor.Registry, error) {
	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m); err != nil {
		return nil, nil, err
	}
	// RTX (RFC 4588) where the viewer offers it: the stream that carries
	// probe padding (sfu/whep), which a receiver must not take for replays.
	if err := registerRTX(m); err != nil {
		return nil, nil, err
	}
	// abs-send-time lets a browser viewer run its receive-side bandwidth
	// estimator and report it as REMB, which drives the layer choice.
	if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.ABSSendTimeURI}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, nil, err
	}
	// No interceptors: a viewer sends us no media to report on, every
	// interceptor costs a goroutine per viewer and a call per packet, and
	// sfu/whep sends the viewer's sender reports itself, from the
	// publisher's clock (downTrack.senderReport).
	return m, &interceptor.Registry{}, nil
}

// listenPair binds the UDP socket and, with tcp, the ICE-TCP listener on
// the same port number. When addr asks for any port (":0"), the kernel's
// choice for UDP may be taken for TCP by another program; then it tries
// another port, up to ten times.
func listenPair(addr string, tcp bool) (net.PacketConn, net.Listener, error) {
	var lc net.ListenConfig
	host, wantPort, _ := net.SplitHostPort(addr)
	for attempt := 0; ; attempt++ {
		udp, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("listen for WebRTC media on udp %s: %w", addr, err)
		}
		if !tcp {
			return udp, nil, nil
		}
		port := udp.LocalAddr().(*net.UDPAddr).Port
		ln, err := lc.Listen(context.Background(), "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err == nil {
			return udp, ln, nil
		}
		_ = udp.Close()
		if wantPort != "0" || attempt == 9 {
			return nil, nil, fmt.Errorf("listen for ICE-TCP on tcp port %d: %w", port, err)
		}
	}
}

// pionLogger routes pion's logs into slog at debug level (errors at warn).
type pionLogger struct{ log *slog.Logger }

func (f *pionLogger) NewLogger(scope string) logging.LeveledLogger {
	return &pionLeveled{log: f.log.With("pion", scope)}
}

type pionLeveled struct{ log *slog.Logger }

// logf formats only when the level is enabled: pion logs per packet at
// debug level.
func (l *pionLeveled) logf(level slog.Level, f string, a ...any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(f, a...))
	}
}

func (l *pionLeveled) Trace(string)              {}
func (l *pionLeveled) Tracef(string, ...any)     {}
func (l *pionLeveled) Debug(msg string)          { l.log.Debug(msg) }
func (l *pionLeveled) Debugf(f string, a ...any) { l.logf(slog.LevelDebug, f, a...) }
func (l *pionLeveled) Info(msg string)           { l.log.Debug(msg) }
func (l *pionLeveled) Infof(f string, a ...any)  { l.logf(slog.LevelDebug, f, a...) }
func (l *pionLeveled) Warn(msg string)           { l.log.Debug(msg) }
func (l *pionLeveled) Warnf(f string, a ...any)  { l.logf(slog.LevelDebug, f, a...) }
func (l *pionLeveled) Error(msg string)          { l.log.Warn(msg) }
func (l *pionLeveled) Errorf(f string, a ...any) { l.logf(errorLevel(a), f, a...) }

// errorLevel is warn for pion's errors, except those about a connection
// already closed: when a viewer leaves, its last packets still arrive at
// the UDP mux ("Failed to write packet: io: read/write on closed pipe"),
// once per packet, and 200 viewers leaving made hundreds of warnings.
func errorLevel(args []any) slog.Level {
	for _, a := range args {
		if err, ok := a.(error); ok && (errors.Is(err, io.ErrClosedPipe) || errors.Is(err, net.ErrClosed)) {
			return slog.LevelDebug
		}
	}
	return slog.LevelWarn
}
