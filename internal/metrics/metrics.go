package metrics

import (
	"log/slog"
	"net/http"

	"github.com/hybridcast/hybridcast/sfu"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// StreamSource gives every stream's cumulative counters
// (sfu.Registry.Counters).
type StreamSource interface {
	Counters() []sfu.StreamCounters
}

// SessionCounter counts live sessions (ingest.Handler, whep.Handler).
type SessionCounter interface {
	Sessions() int
}

// RejectionSource counts refused requests by reason
// (whep.Handler.Rejections).
type RejectionSource interface {
	Rejections() map[string]uint64
}

// Config says where the metrics come from. A nil source leaves its
// metrics out.
type Config struct {
	Streams StreamSource
	// Publishers counts WHIP publisher sessions.
	Publishers SessionCounter
	// WHEPRejections counts WHEP offers refused at a viewer cap.
	WHEPRejections RejectionSource
	// Forwarding is the time from a packet's arrival from a publisher to
	// its SRTP write for a WebRTC viewer; SendWait the time a datagram then
	// waits in the media socket's send queue. Either may be nil.
	Forwarding, SendWait *sfu.LatencyHistogram
	// Ingress measures a publisher's packet from the kernel's receive time
	// to its arrival at the track (Linux). Nil: not exported.
	Ingress *sfu.LatencyHistogram
	// UDPSend reads the media socket's send counters: datagrams, sendmmsg
	// calls, and datagrams sent in UDP GSO sends. Nil: not exported.
	UDPSend func() (datagrams, calls, segmented uint64)
	// Logger receives errors met while serving a scrape. Default: discard.
	Logger *slog.Logger
}

// Metrics is a Prometheus registry with hybridcast's collectors, served
// over HTTP.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler
}

var _ http.Handler = (*Metrics)(nil)

// New makes the registry: Go runtime and process collectors, and the
// server's collector reading cfg's sources at each scrape.
func New(cfg Config) *Metrics {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newServerCollector(cfg),
	)
	return &Metrics{
		reg: reg,
		handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{
			ErrorLog:            slog.NewLogLogger(log.With("component", "metrics").Handler(), slog.LevelWarn),
			ErrorHandling:       promhttp.ContinueOnError,
			Registry:            reg, // promhttp_metric_handler_errors_total
			MaxRequestsInFlight: 4,
		}),
	}
}

// Register adds collectors to the registry: the place for other parts of
// the server (HLS/DASH request metrics, …) to expose theirs. Names must
// start with hybridcast_.
func (m *Metrics) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Gatherer returns the registry, for tests and other exporters.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// ServeHTTP serves the metrics in the Prometheus text format (or
// OpenMetrics when the scraper asks for it).
func (m *Metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.handler.ServeHTTP(w, r) }
