package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/internal/client"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads GET /metrics and parses it with the Prometheus text parser.
func scrape(t testing.TB, srv *server) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := http.Get(srv.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", res.Status)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET /metrics: Content-Type %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return families
}

// sample returns the value of the metric name whose labels include
// labels (name, value pairs); ok is false when there is none.
func sample(families map[string]*dto.MetricFamily, name string, labels ...string) (v float64, ok bool) {
	f := families[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
			}
			if !found {
				continue next
			}
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue(), true
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue(), true
		case dto.MetricType_UNTYPED:
			return m.GetUntyped().GetValue(), true
		}
		return 0, false
	}
	return 0, false
}

func mustSample(t testing.TB, families map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	v, ok := sample(families, name, labels...)
	if !ok {
		t.Fatalf("/metrics has no %s%v", name, labels)
	}
	return v
}

// TestMetricsUnderLoad: a pion publisher sends the test clip, a pion viewer
// plays it; two scrapes of /metrics, parsed with the Prometheus text
// parser, show packets and bytes in and out strictly increasing, one
// viewer, one live stream and one publisher. After the viewer leaves the
// gauge drops to 0 and its packets stay in the totals.
func TestMetricsUnderLoad(t *testing.T) {
	const stream = "metered"
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sends := newSendLog()
	pub, err := client.Publish(ctx, client.PublishConfig{
		URL: srv.URL() + "/whip/" + stream, Token: testToken, Loopback: true,
		Video: loadClip(t, "layer-h.h264"), Audio: loadClip(t, "audio.ogg"),
		OnFrameSent: sends.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	recv := newRecvLog()
	v, err := client.Play(ctx, client.PlayConfig{
		ReceiveBuffer: testRcvBuf, URL: srv.URL() + "/whep/" + stream, Loopback: true, OnFrame: recv.onFrame(sends),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	select {
	case <-v.VideoStarted():
	case <-ctx.Done():
		t.Fatal("viewer got no video")
	}

	first := scrape(t, srv)
	// Frames logged from here on are sent after the first scrape. Once the
	// viewer has one of them, and a few more, the server has counted them
	// in (before forwarding) and out (after each send, and the viewer's
	// later packets went out after the earlier ones were counted).
	recv.setTarget(sends.count() + 10)
	select {
	case <-recv.reached:
	case <-ctx.Done():
		t.Fatal("viewer received no frame sent after the first scrape")
	}
	second := scrape(t, srv)

	for _, name := range []string{
		"hybridcast_received_packets_total", "hybridcast_received_bytes_total",
		"hybridcast_webrtc_sent_packets_total", "hybridcast_webrtc_sent_bytes_total",
	} {
		a, b := mustSample(t, first, name, "stream", stream), mustSample(t, second, name, "stream", stream)
		t.Logf("%s: %.0f → %.0f", name, a, b)
		if !(b > a) || a <= 0 {
			t.Errorf("%s did not increase: %v → %v", name, a, b)
		}
	}
	for name, want := range map[string]float64{
		"hybridcast_webrtc_viewers": 1, "hybridcast_streams_live": 1, "hybridcast_publishers": 1,
	} {
		if got := mustSample(t, second, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	// The media socket's send counters move with the packets.
	if d, c := mustSample(t, second, "hybridcast_udp_sent_datagrams_total"), mustSample(t, second, "hybridcast_udp_send_calls_total"); d <= 0 || c <= 0 || c > d {
		t.Errorf("udp send counters: %v datagrams in %v calls", d, c)
	}
	if _, ok := sample(second, "hybridcast_udp_gso_datagrams_total"); !ok {
		t.Error("hybridcast_udp_gso_datagrams_total missing")
	}
	// The forwarding histograms count every packet sent to the viewer, the
	// ingress one the publisher's packets the kernel stamped (Linux).
	for _, name := range []string{"hybridcast_webrtc_forwarding_latency_seconds", "hybridcast_webrtc_send_queue_seconds", "hybridcast_ingress_latency_seconds"} {
		f := second[name]
		if f == nil || len(f.GetMetric()) != 1 || f.GetMetric()[0].GetHistogram() == nil {
			t.Errorf("%s: no histogram", name)
			continue
		}
		h := f.GetMetric()[0].GetHistogram()
		sent := mustSample(t, second, "hybridcast_webrtc_sent_packets_total", "stream", stream)
		if name == "hybridcast_webrtc_forwarding_latency_seconds" && float64(h.GetSampleCount()) < sent {
			t.Errorf("%s counts %d packets, fewer than the %v sent", name, h.GetSampleCount(), sent)
		}
		if (h.GetSampleCount() == 0 || len(h.GetBucket()) == 0) && (name != "hybridcast_ingress_latency_seconds" || runtime.GOOS == "linux") {
			t.Errorf("%s is empty: %v", name, h)
		}
	}
	// The publisher's packets arrive at the kernel's receive time (Linux).
	if found, missed := srv.engine.Arrivals().Counts(); runtime.GOOS == "linux" && found == 0 {
		t.Errorf("no publisher packet found in the kernel's receive times (%d not found)", missed)
	} else {
		t.Logf("kernel receive times: %d packets found, %d not", found, missed)
	}
	if got := mustSample(t, second, "hybridcast_webrtc_layer_switches_total", "stream", stream); got != 1 {
		t.Errorf("layer switches = %v, want 1 (the viewer's first layer)", got)
	}
	// The viewer's join may start from the keyframe the stream began
	// with, out of the track's history, without a request; the packager
	// asks for one at every segment boundary (1 s).
	mustSample(t, second, "hybridcast_keyframe_requests_sent_total", "stream", stream)
	waitFor(t, func() bool {
		return mustSample(t, scrape(t, srv), "hybridcast_keyframe_requests_sent_total", "stream", stream) >= 1
	})
	for _, name := range []string{
		"hybridcast_subscriber_dropped_packets_total", "hybridcast_webrtc_nacks_received_total",
		"hybridcast_webrtc_retransmitted_packets_total", "hybridcast_webrtc_keyframe_requests_received_total",
	} {
		mustSample(t, second, name, "stream", stream)
	}
	for _, reason := range []string{"stream_cap", "server_cap"} {
		if got := mustSample(t, second, "hybridcast_whep_rejections_total", "reason", reason); got != 0 {
			t.Errorf("rejections at %s = %v, want 0", reason, got)
		}
	}
	// The Go and process collectors, from the server's own registry.
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		mustSample(t, second, name)
	}
	for name, f := range second {
		if !strings.HasPrefix(name, "hybridcast_") && !strings.HasPrefix(name, "go_") &&
			!strings.HasPrefix(name, "process_") && !strings.HasPrefix(name, "promhttp_") {
			t.Errorf("unexpected metric %s (%s)", name, f.GetHelp())
		}
	}

	// A viewer that leaves: the gauge falls, its packets stay counted.
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	var third map[string]*dto.MetricFamily
	waitFor(t, func() bool {
		third = scrape(t, srv)
		return mustSample(t, third, "hybridcast_webrtc_viewers", "stream", stream) == 0
	})
	for _, name := range []string{"hybridcast_webrtc_sent_packets_total", "hybridcast_webrtc_sent_bytes_total", "hybridcast_webrtc_layer_switches_total"} {
		if a, b := mustSample(t, second, name, "stream", stream), mustSample(t, third, name, "stream", stream); b < a {
			t.Errorf("%s went down after the viewer left: %v → %v", name, a, b)
		}
	}
}

// TestReadyz: /readyz is 503 before the server serves, 200 while it does,
// and 503 again from the start of shutdown. Once the listener is closed
// the handler is asked in process (nothing can reach it over HTTP).
func TestReadyz(t *testing.T) {
	srv := newTestServer(t)
	inProcess := func() int {
		rec := httptest.NewRecorder()
		srv.http.Handler.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/readyz", nil))
		return rec.Code
	}
	if code := inProcess(); code != http.StatusServiceUnavailable {
		t.Fatalf("before Serve: /readyz %d, want 503", code)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server stopped with: %v", err)
		}
	}()

	waitFor(t, func() bool { return inProcess() == http.StatusOK })
	res, err := http.Get(srv.URL() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("serving: /readyz %s, want 200", res.Status)
	}

	cancel()
	waitFor(t, func() bool { return inProcess() == http.StatusServiceUnavailable })
	if err := <-done; err != nil {
		t.Errorf("server stopped with: %v", err)
	}
	done <- nil // for the deferred wait
	if code := inProcess(); code != http.StatusServiceUnavailable {
		t.Fatalf("after shutdown: /readyz %d, want 503", code)
	}
}
