package sfu

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/pion/rtp"
)

// benchSub stands for a WHEP downtrack without the network: it rewrites the
// header into its own scratch space, as the real one does before writing.
type benchSub struct {
	rw  *Rewriter
	hdr rtp.Header
	n   atomic.Uint64
}

func (s *benchSub) WriteRTP(p *Packet) error {
	s.rw.Rewrite(p, &s.hdr)
	s.n.Add(1)
	return nil
}

// BenchmarkFanout measures the forwarding path from the publisher's
// WriteRTP to every subscriber's WriteRTP, for 1/10/100/500 subscribers,
// each with a goroutine of its own (own) or on the shared workers
// (shared, sfu.Shared). ns/pkt/sub is the cost per packet per subscriber.
func BenchmarkFanout(b *testing.B) {
	for _, mode := range []string{"own", "shared"} {
		for _, n := range []int{1, 10, 100, 500} {
			b.Run(fmt.Sprintf("%s/subs=%d", mode, n), func(b *testing.B) { benchFanout(b, n, mode == "shared") })
		}
	}
}

func benchFanout(b *testing.B, n int, shared bool) {
	{
		{
			tr := NewTrack(TrackConfig{Info: TrackInfo{ID: "video", Kind: KindVideo, MimeType: MimeTypeH264, ClockRate: 90000}})
			defer tr.Close()
			subs := make([]*benchSub, n)
			for i := range subs {
				subs[i] = &benchSub{rw: NewRewriter(uint32(i), 102, 90000, 1, 1)}
				opts := []SubscribeOption{WithoutKeyframeStart()}
				if shared {
					opts = append(opts, Shared(nil))
				}
				unsub, err := tr.Subscribe(subs[i], opts...)
				if err != nil {
					b.Fatal(err)
				}
				defer unsub()
			}
			payload := make([]byte, 1100)
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 102, SSRC: 1}, Payload: payload}
			const batch = 64 // under the 128-packet queue: nothing is dropped
			var sent uint64
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				pkt.SequenceNumber++
				pkt.Timestamp += 3000
				if err := tr.WriteRTP(pkt); err != nil {
					b.Fatal(err)
				}
				sent++
				if sent%batch == 0 {
					waitDelivered(subs, sent)
				}
			}
			waitDelivered(subs, sent)
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(sent)/float64(n), "ns/pkt/sub")
		}
	}
}

func waitDelivered(subs []*benchSub, want uint64) {
	for _, s := range subs {
		for s.n.Load() < want {
			runtime.Gosched()
		}
	}
}

// BenchmarkWriteRTP is the publisher side alone: copy, parse, keyframe
// check, history, no subscriber.
func BenchmarkWriteRTP(b *testing.B) {
	tr := NewTrack(TrackConfig{Info: TrackInfo{ID: "video", Kind: KindVideo, MimeType: MimeTypeH264, ClockRate: 90000}})
	defer tr.Close()
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 102, SSRC: 1}, Payload: make([]byte, 1100)}
	b.ReportAllocs()
	for b.Loop() {
		pkt.SequenceNumber++
		if err := tr.WriteRTP(pkt); err != nil {
			b.Fatal(err)
		}
	}
}
