package rtc

import (
	"net"
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/sfu"
)

// TestReadRecordsArrival: an RTP datagram read from the media socket has
// its kernel receive time in the arrivals table, between its send and its
// read; an RTCP datagram leaves none.
func TestReadRecordsArrival(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var arrivals sfu.Arrivals
	bc := newBatchConn(c, nil, &arrivals)
	defer bc.Close()
	if !bc.stamped {
		t.Fatal("the kernel refused SO_TIMESTAMPNS")
	}
	s, err := net.DialUDP("udp4", nil, c.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rtpPkt := []byte{0x80, 0x60, 0x00, 0x2a, 0, 0, 0, 1, 0, 0, 0x12, 0x34, 0xaa}
	rtcpPkt := []byte{0x80, 200, 0x00, 0x2b, 0, 0, 0x12, 0x35, 0, 0, 0, 0}
	before := time.Now()
	for _, d := range [][]byte{rtpPkt, rtcpPkt} {
		if _, err := s.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 1500)
	for range 2 {
		if _, _, err := bc.ReadFromAddrPort(buf); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	got := arrivals.Arrival(0x1234, 42, now)
	if got.Equal(now) || got.UnixNano() < before.UnixNano() {
		t.Errorf("RTP packet's arrival %v: want the kernel's time, between %v and %v", got, before, now)
	}
	// The RTCP datagram's bytes 8-11 and 2-3 read as SSRC 0 and seq 43.
	if got := arrivals.Arrival(0, 43, now); got != now {
		t.Errorf("RTCP datagram recorded as RTP: %v", got)
	}
}
