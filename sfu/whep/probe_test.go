package whep

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/hybridcast/hybridcast/sfu"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// recordWriter keeps what a downtrack writes.
type recordWriter struct{ pkts []rtp.Packet }

func (w *recordWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.pkts = append(w.pkts, rtp.Packet{Header: h.Clone(), Payload: bytes.Clone(payload)})
	return len(payload), nil
}
func (w *recordWriter) Write(b []byte) (int, error) { return len(b), nil }

// TestProbeSendsRTXCopies: probe padding is RTX (RFC 4588) copies of the
// packets the viewer was just sent: the RTX SSRC and payload type, RTX
// sequence numbers of its own, and each payload the original sequence
// number followed by the original payload.
func TestProbeSendsRTXCopies(t *testing.T) {
	rec := &recordWriter{}
	dt := newDownTrack(webrtc.RTPCodecTypeVideo, "s", make(chan struct{}, 1), slog.New(slog.DiscardHandler))
	dt.writer, dt.canSend = rec, true
	dt.rw = sfu.NewRewriter(1111, 102, 90000, 500, 1000)
	tr := sfu.NewTrack(sfu.TrackConfig{Info: sfu.TrackInfo{ID: "v", Kind: sfu.KindVideo, MimeType: sfu.MimeTypeH264, ClockRate: 90000}})
	defer tr.Close()
	dt.src = tr
	if dt.canProbe() {
		t.Fatal("can probe without RTX negotiated")
	}
	dt.rtx, dt.rtxPT = 2222, map[uint8]uint8{102: 103}
	if !dt.canProbe() {
		t.Fatal("cannot probe with RTX negotiated")
	}

	src := &source{d: dt, track: tr}
	sent := map[uint16][]byte{} // outgoing sequence number → payload
	for i := range 4 {
		payload := []byte{0x41, byte(i), byte(i * 3)}
		if err := tr.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(10 + i), Timestamp: 3000, PayloadType: 96, SSRC: 5}, Payload: payload}); err != nil {
			t.Fatal(err)
		}
		p := tr.Lookup(1<<16 + 10 + uint64(i)) // the track's forwarding numbers start at 2^16 + the first
		if p == nil {
			t.Fatalf("packet %d not in the history", i)
		}
		if err := dt.writeFrom(src, p, nil); err != nil {
			t.Fatal(err)
		}
		p.Release()
		sent[rec.pkts[len(rec.pkts)-1].SequenceNumber] = payload
	}
	media := len(rec.pkts)

	n := dt.probe(40) // 5 bytes a copy: the 4 packets in the span, then the first again
	probes := rec.pkts[media:]
	if len(probes) == 0 || n != 5*len(probes) || n < 40 {
		t.Fatalf("probe(40) sent %d bytes in %d packets", n, len(probes))
	}
	for i, p := range probes {
		if p.SSRC != 2222 || p.PayloadType != 103 || p.SequenceNumber != probes[0].SequenceNumber+uint16(i) {
			t.Fatalf("probe %d: ssrc %d pt %d seq %d", i, p.SSRC, p.PayloadType, p.SequenceNumber)
		}
		osn := uint16(p.Payload[0])<<8 | uint16(p.Payload[1])
		want, ok := sent[osn]
		if !ok || !bytes.Equal(p.Payload[2:], want) {
			t.Fatalf("probe %d: original sequence number %d, payload %x; sent %v", i, osn, p.Payload[2:], sent)
		}
	}
	if got := dt.probed.Load(); got != uint64(len(probes)) {
		t.Fatalf("probed counter %d, want %d", got, len(probes))
	}
}
