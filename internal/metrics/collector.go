package metrics

import (
	"github.com/hybridcast/hybridcast/sfu"
	"github.com/prometheus/client_golang/prometheus"
)

// serverCollector turns the server's counters into metrics at scrape time.
type serverCollector struct {
	cfg Config

	streamsLive, publishers, viewers, whepRejections *prometheus.Desc
	forwarding, sendWait, ingress                    *prometheus.Desc
	udpDatagrams, udpCalls, udpSegmented             *prometheus.Desc
	streamCounters                                   []streamCounter
}

// latencyBounds are the forwarding histograms' bucket bounds, seconds.
var latencyBounds = []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05}

// streamCounter is one per-stream counter and how to read it.
type streamCounter struct {
	desc  *prometheus.Desc
	value func(*sfu.StreamCounters) uint64
}

func newServerCollector(cfg Config) *serverCollector {
	stream := []string{"stream"}
	counter := func(name, help string, value func(*sfu.StreamCounters) uint64) streamCounter {
		return streamCounter{desc: prometheus.NewDesc(name, help, stream, nil), value: value}
	}
	c := &serverCollector{
		cfg:         cfg,
		streamsLive: prometheus.NewDesc("hybridcast_streams_live", "Streams that have a publisher now.", nil, nil),
		publishers:  prometheus.NewDesc("hybridcast_publishers", "WHIP publisher sessions connected now.", nil, nil),
		viewers:     prometheus.NewDesc("hybridcast_webrtc_viewers", "WebRTC (WHEP) viewers connected now, by stream.", stream, nil),
		whepRejections: prometheus.NewDesc("hybridcast_whep_rejections_total",
			"WHEP offers refused with 503, by reason: stream_cap (--max-webrtc-viewers), server_cap (--max-webrtc-viewers-total).",
			[]string{"reason"}, nil),
		forwarding: prometheus.NewDesc("hybridcast_webrtc_forwarding_latency_seconds",
			"Time from the kernel receiving a publisher's packet (Linux; elsewhere its arrival at the track) to its SRTP write for a WebRTC viewer, per packet and viewer.", nil, nil),
		ingress: prometheus.NewDesc("hybridcast_ingress_latency_seconds",
			"Time from the kernel receiving a publisher's RTP packet to its arrival at the track (pion's read path), for the packets the kernel stamped (Linux).", nil, nil),
		udpDatagrams: prometheus.NewDesc("hybridcast_udp_sent_datagrams_total", "Datagrams sent on the WebRTC media socket.", nil, nil),
		udpCalls:     prometheus.NewDesc("hybridcast_udp_send_calls_total", "sendmmsg(2) calls on the WebRTC media socket.", nil, nil),
		udpSegmented: prometheus.NewDesc("hybridcast_udp_gso_datagrams_total", "Datagrams sent in UDP GSO (segmentation offload) sends.", nil, nil),
		sendWait: prometheus.NewDesc("hybridcast_webrtc_send_queue_seconds",
			"Time an outgoing WebRTC datagram waits, once encrypted, until the kernel has it (in the media socket's send queue or a fan-out worker's batch).", nil, nil),
	}
	c.streamCounters = []streamCounter{
		counter("hybridcast_received_packets_total", "RTP media packets received from publishers (padding-only probes excluded).",
			func(s *sfu.StreamCounters) uint64 { return s.PacketsIn }),
		counter("hybridcast_received_bytes_total", "RTP payload bytes received from publishers.",
			func(s *sfu.StreamCounters) uint64 { return s.BytesIn }),
		counter("hybridcast_webrtc_sent_packets_total", "RTP packets sent to WebRTC viewers, retransmissions excluded.",
			func(s *sfu.StreamCounters) uint64 { return s.Viewer.Packets }),
		counter("hybridcast_webrtc_sent_bytes_total", "RTP payload bytes sent to WebRTC viewers, retransmissions excluded.",
			func(s *sfu.StreamCounters) uint64 { return s.Viewer.Bytes }),
		counter("hybridcast_subscriber_dropped_packets_total", "Packets dropped because a subscriber's queue was full (the subscriber then restarts at a keyframe).",
			func(s *sfu.StreamCounters) uint64 { return s.Dropped }),
		counter("hybridcast_webrtc_nacks_received_total", "Packets WebRTC viewers asked for again (one per sequence number in an RTCP NACK).",
			func(s *sfu.StreamCounters) uint64 { return s.Viewer.NACKs }),
		counter("hybridcast_webrtc_retransmitted_packets_total", "Packets resent to WebRTC viewers in answer to NACKs.",
			func(s *sfu.StreamCounters) uint64 { return s.Viewer.Retransmitted }),
		counter("hybridcast_webrtc_retransmitted_rtx_packets_total", "Packets resent to WebRTC viewers in answer to NACKs on an RTX stream (RFC 4588), a subset of hybridcast_webrtc_retransmitted_packets_total.",
			func(s *sfu.StreamCounters) uint64 { return s.Viewer.RetransmittedRTX }),
		counter("hybridcast_webrtc_keyframe_requests_received_total", "Keyframe requests (RTCP PLI, FIR) received from WebRTC viewers.",
			func(s *sfu.StreamCounters) uint64 { return s.Viewer.KeyframeRequests }),
		counter("hybridcast_keyframe_requests_sent_total", "Keyframe requests (RTCP PLI) sent to publishers, after throttling.",
			func(s *sfu.StreamCounters) uint64 { return s.KeyframeRequestsSent }),
		counter("hybridcast_webrtc_probe_packets_total", "Packets sent again to WebRTC viewers as bandwidth probe padding (RTX).",
			func(s *sfu.StreamCounters) uint64 { return s.Viewer.ProbePackets }),
		counter("hybridcast_webrtc_layer_switches_total", "Simulcast layer changes made for WebRTC viewers (a viewer's first layer counts as one).",
			func(s *sfu.StreamCounters) uint64 { return s.Viewer.LayerSwitches }),
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.streamsLive
	ch <- c.publishers
	ch <- c.viewers
	ch <- c.whepRejections
	ch <- c.forwarding
	ch <- c.ingress
	ch <- c.sendWait
	ch <- c.udpDatagrams
	ch <- c.udpCalls
	ch <- c.udpSegmented
	for _, sc := range c.streamCounters {
		ch <- sc.desc
	}
}

// Collect implements prometheus.Collector.
func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	if c.cfg.Streams != nil {
		streams := c.cfg.Streams.Counters()
		live := 0
		for i := range streams {
			s := &streams[i]
			if s.Live {
				live++
			}
			ch <- prometheus.MustNewConstMetric(c.viewers, prometheus.GaugeValue, float64(s.Viewers), s.Name)
			for _, sc := range c.streamCounters {
				ch <- prometheus.MustNewConstMetric(sc.desc, prometheus.CounterValue, float64(sc.value(s)), s.Name)
			}
		}
		ch <- prometheus.MustNewConstMetric(c.streamsLive, prometheus.GaugeValue, float64(live))
	}
	if c.cfg.Publishers != nil {
		ch <- prometheus.MustNewConstMetric(c.publishers, prometheus.GaugeValue, float64(c.cfg.Publishers.Sessions()))
	}
	for _, h := range []struct {
		desc *prometheus.Desc
		hist *sfu.LatencyHistogram
	}{{c.forwarding, c.cfg.Forwarding}, {c.sendWait, c.cfg.SendWait}, {c.ingress, c.cfg.Ingress}} {
		if h.hist != nil {
			count, sum, le := h.hist.Cumulative(latencyBounds)
			ch <- prometheus.MustNewConstHistogram(h.desc, count, sum, le)
		}
	}
	if c.cfg.UDPSend != nil {
		d, calls, seg := c.cfg.UDPSend()
		ch <- prometheus.MustNewConstMetric(c.udpDatagrams, prometheus.CounterValue, float64(d))
		ch <- prometheus.MustNewConstMetric(c.udpCalls, prometheus.CounterValue, float64(calls))
		ch <- prometheus.MustNewConstMetric(c.udpSegmented, prometheus.CounterValue, float64(seg))
	}
	if c.cfg.WHEPRejections != nil {
		for reason, n := range c.cfg.WHEPRejections.Rejections() {
			ch <- prometheus.MustNewConstMetric(c.whepRejections, prometheus.CounterValue, float64(n), reason)
		}
	}
}
