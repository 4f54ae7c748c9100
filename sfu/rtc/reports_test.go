package rtc

import (
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// manualTicker ticks when the test says so.
type manualTicker chan time.Time

func (m manualTicker) Ch() <-chan time.Time { return m }
func (m manualTicker) Stop()                {}

// TestReportsIgnoreRTX runs pion's sender-report interceptor inside
// mediaReports with a clock and ticker of the test's: a retransmission on
// the RTX SSRC, with a sequence number just ahead of the media's and the
// repaired packet's older timestamp, goes out but changes neither the
// media report's RTP time nor its counts. (Without mediaReports the report
// says RTP time 90000 instead of 108000, and 2 packets.)
func TestReportsIgnoreRTX(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	now := t0
	tick := make(manualTicker)
	f, err := report.NewSenderInterceptor(
		report.SenderNow(func() time.Time { return now }),
		report.SenderTicker(func(time.Duration) report.Ticker { return tick }),
	)
	if err != nil {
		t.Fatal(err)
	}
	i, err := mediaReportsFactory{f}.NewInterceptor("")
	if err != nil {
		t.Fatal(err)
	}
	reports := make(chan []rtcp.Packet, 1)
	i.BindRTCPWriter(interceptor.RTCPWriterFunc(func(p []rtcp.Packet, _ interceptor.Attributes) (int, error) {
		reports <- p
		return 0, nil
	}))
	defer i.Close()

	var sent []uint32 // SSRCs that reached the transport
	w := i.BindLocalStream(&interceptor.StreamInfo{SSRC: 1, SSRCRetransmission: 2, ClockRate: 90000},
		interceptor.RTPWriterFunc(func(h *rtp.Header, _ []byte, _ interceptor.Attributes) (int, error) {
			sent = append(sent, h.SSRC)
			return 0, nil
		}))
	write := func(ssrc uint32, seq uint16, ts uint32, n int) {
		t.Helper()
		if _, err := w.Write(&rtp.Header{Version: 2, SSRC: ssrc, SequenceNumber: seq, Timestamp: ts}, make([]byte, n), nil); err != nil {
			t.Fatal(err)
		}
	}
	write(1, 1000, 90000, 1000) // media at t0
	now = t0.Add(100 * time.Millisecond)
	write(2, 1005, 90000-9000, 1002) // RTX: repairs a packet 100 ms older
	now = t0.Add(200 * time.Millisecond)
	tick <- now // the report at t0 + 200 ms
	var sr *rtcp.SenderReport
	for _, p := range <-reports {
		if r, ok := p.(*rtcp.SenderReport); ok && r.SSRC == 1 {
			sr = r
		}
	}
	if sr == nil {
		t.Fatal("no sender report for the media SSRC")
	}
	if want := uint32(90000 + 18000); sr.RTPTime != want {
		t.Errorf("report RTP time %d, want %d (the media's 90000 + 200 ms)", sr.RTPTime, want)
	}
	if sr.PacketCount != 1 || sr.OctetCount != 1000 {
		t.Errorf("report counts %d packets, %d octets, want the media's 1 and 1000", sr.PacketCount, sr.OctetCount)
	}
	if len(sent) != 2 || sent[0] != 1 || sent[1] != 2 {
		t.Errorf("sent SSRCs %v, want [1 2]: the RTX packet must still go out", sent)
	}
}
