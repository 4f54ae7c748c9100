package metrics

import (
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"github.com/hybridcast/hybridcast/sfu"
	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// liveRegistry is an sfu.Registry with one live stream that has received
// two packets.
func liveRegistry(t *testing.T) *sfu.Registry {
	t.Helper()
	g := sfu.NewRegistry(nil)
	pub, err := g.RouterFor("live").Publish("p")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	tr, err := pub.AddTrack(sfu.TrackConfig{Info: sfu.TrackInfo{ID: "audio", Kind: sfu.KindAudio, MimeType: "audio/opus", ClockRate: 48000}})
	if err != nil {
		t.Fatal(err)
	}
	for seq := range uint16(2) {
		if err := tr.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, SSRC: 1}, Payload: []byte{1, 2, 3}}); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

// TestNamesFollowConventions runs promlint (the Prometheus naming and help
// checks) over every metric the server exposes.
func TestNamesFollowConventions(t *testing.T) {
	m := New(Config{Streams: liveRegistry(t)})
	problems, err := testutil.GatherAndLint(m.Gatherer())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// TestServesTextFormat: the handler serves the stream's counters in the
// text format, and collectors registered later show up beside them.
func TestServesTextFormat(t *testing.T) {
	m := New(Config{Streams: liveRegistry(t)})
	extra := prometheus.NewCounter(prometheus.CounterOpts{Name: "hybridcast_test_requests_total", Help: "A collector added later."})
	extra.Add(3)
	if err := m.Register(extra); err != nil {
		t.Fatal(err)
	}
	if err := m.Register(extra); err == nil {
		t.Fatal("registering the same collector twice succeeded")
	}
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		"hybridcast_received_packets_total": 2,
		"hybridcast_received_bytes_total":   6,
		"hybridcast_streams_live":           1,
		"hybridcast_test_requests_total":    3,
	} {
		f := families[name]
		if f == nil || len(f.GetMetric()) != 1 {
			t.Errorf("%s: %v", name, f)
			continue
		}
		mt := f.GetMetric()[0]
		got := mt.GetCounter().GetValue() + mt.GetGauge().GetValue()
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if families["go_goroutines"] == nil {
		t.Error("no Go runtime metrics")
	}
}

// TestSFUImportsNoPrometheus keeps the dependency direction: the stream
// model and the WebRTC parts never import Prometheus; this package reads
// their counters.
func TestSFUImportsNoPrometheus(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not in PATH: %v", err)
	}
	pkgs := []string{"github.com/hybridcast/hybridcast/sfu", "github.com/hybridcast/hybridcast/sfu/whep", "github.com/hybridcast/hybridcast/ingest"}
	out, err := exec.CommandContext(t.Context(), goTool, append([]string{"list", "-deps"}, pkgs...)...).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for dep := range strings.Lines(string(out)) {
		if strings.Contains(dep, "prometheus") {
			t.Errorf("%v depend on %s", pkgs, strings.TrimSpace(dep))
		}
	}
}
