package whep

import (
	"log/slog"
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/sfu"
	"github.com/pion/rtp"
)

// nullWriter stands in for the SRTP write stream (the network edge): the
// benchmark measures the downtrack's own work per packet.
type nullWriter struct{ n int }

func (w *nullWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.n += len(payload)
	return len(payload), nil
}
func (w *nullWriter) Write(b []byte) (int, error) { return len(b), nil }

func benchDownTrack(b *testing.B, layers int) { benchDownTrackOn(b, layers, 0, layers > 1) }

// benchDownTrackOn forwards from layer on of layers; with switching, a
// switch to the next layer is pending and every layer sends a packet per
// op, else only layer on does (a viewer is subscribed to its layer only).
func benchDownTrackOn(b *testing.B, layers, on int, switching bool) {
	dt := newDownTrack(0, "s", make(chan struct{}, 1), slog.New(slog.DiscardHandler))
	dt.kind = 2 // video
	dt.writer = &nullWriter{}
	dt.rw = sfu.NewRewriter(1, 96, 90000, 1, 1)
	dt.canSend = true
	tracks := make([]*sfu.Track, layers)
	srcs := make([]*source, layers)
	for i := range tracks {
		tracks[i] = sfu.NewTrack(sfu.TrackConfig{Info: sfu.TrackInfo{ID: "v", Kind: sfu.KindVideo, MimeType: sfu.MimeTypeH264}})
		defer tracks[i].Close()
		srcs[i] = &source{d: dt, track: tracks[i]}
	}
	dt.src = tracks[on]
	if switching {
		dt.target = tracks[(on+1)%layers] // mid-switch: packets of two other layers arrive and are skipped
	} else {
		srcs = srcs[on : on+1]
	}
	p := &sfu.Packet{Arrival: time.Now()}
	p.Payload = make([]byte, 1100)
	p.Header = rtp.Header{Version: 2, PayloadType: 102, SSRC: 5}
	b.ReportAllocs()
	for b.Loop() {
		p.Seq++
		p.Timestamp += 3000
		for _, src := range srcs { // one packet of each subscribed layer
			if err := dt.writeFrom(src, p, nil); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkDownTrackSingleLayer is the forwarding cost per packet of a
// viewer of a stream without simulcast.
func BenchmarkDownTrackSingleLayer(b *testing.B) { benchDownTrack(b, 1) }

// BenchmarkDownTrackSimulcastSteady is the same for a viewer of a
// three-layer stream, on the middle layer, with no switch pending: the
// steady state of layer selection, to compare with SingleLayer (issue #3
// asks for at most 10 % more).
func BenchmarkDownTrackSimulcastSteady(b *testing.B) { benchDownTrackOn(b, 3, 1, false) }

// BenchmarkDownTrackSimulcastSwitching is the same while a switch is
// pending and three layers are subscribed: per op, one packet forwarded and
// two skipped.
func BenchmarkDownTrackSimulcastSwitching(b *testing.B) { benchDownTrack(b, 3) }
