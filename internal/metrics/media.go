package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Media holds the HLS/DASH side's metrics: origin requests by resource
// class and status, how long after a part was published the blocking
// playlist responses waiting for it went out, and how late parts are
// published. Its Observe methods are the hooks given to the packager and
// the origin.
type Media struct {
	requests     *prometheus.CounterVec
	blockingLag  prometheus.Histogram
	partLag      *prometheus.HistogramVec
	blockedTotal prometheus.Counter
}

// NewMedia makes the metrics and registers them with m.
func NewMedia(m *Metrics) (*Media, error) {
	x := &Media{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hybridcast_origin_requests_total",
			Help: "HLS/DASH origin requests by resource class (multivariant, playlist, playlist_blocking, init, segment, part, mpd, time) and HTTP status.",
		}, []string{"class", "status"}),
		blockingLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hybridcast_hls_blocking_response_lag_seconds",
			Help:    "Time from a part's publication to the end of the blocking playlist responses that waited for it.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1},
		}),
		partLag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hybridcast_packager_part_lag_seconds",
			Help:    "Time from the end of a part's media (the end of its last frame, on the stream's clock) to its publication; below zero when the part is published as its last frame arrives, before that frame's time is over.",
			Buckets: []float64{-.05, -.025, 0, .01, .025, .05, .1, .2, .5, 1, 2},
		}, []string{"kind"}),
		blockedTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hybridcast_hls_blocking_waits_total",
			Help: "Blocking playlist requests that had to wait for their part.",
		}),
	}
	if err := m.Register(x.requests, x.blockingLag, x.partLag, x.blockedTotal); err != nil {
		return nil, err
	}
	return x, nil
}

// ObserveRequest counts one origin response.
func (x *Media) ObserveRequest(class string, status int) {
	x.requests.WithLabelValues(class, strconv.Itoa(status)).Inc()
}

// ObserveBlocking records one blocking playlist response that waited.
func (x *Media) ObserveBlocking(lag time.Duration) {
	x.blockedTotal.Inc()
	x.blockingLag.Observe(lag.Seconds())
}

// ObservePart records one part's publication delay; video says which kind.
func (x *Media) ObservePart(video bool, lag time.Duration) {
	kind := "audio"
	if video {
		kind = "video"
	}
	x.partLag.WithLabelValues(kind).Observe(lag.Seconds())
}
