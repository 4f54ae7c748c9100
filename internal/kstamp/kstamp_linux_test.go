package kstamp

import (
	"net"
	"testing"
	"time"
)

// TestEnableParse sends a datagram over loopback to a stamped socket: the
// kernel's receive time lies between the send and the read.
func TestEnableParse(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !Enable(c) {
		t.Fatal("SO_TIMESTAMPNS refused")
	}
	s, err := net.DialUDP("udp4", nil, c.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := time.Now()
	if _, err := s.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	b, oob := make([]byte, 16), make([]byte, OOBSize)
	_, oobn, _, _, err := c.ReadMsgUDPAddrPort(b, oob)
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	got, ok := Parse(oob[:oobn])
	if !ok {
		t.Fatalf("no receive time in %x", oob[:oobn])
	}
	// Wall-clock readings: compare without the monotonic part.
	if got.Before(before.Round(0).Add(-time.Millisecond)) || got.After(after.Round(0)) {
		t.Errorf("receive time %v not between send %v and read %v", got, before, after)
	}
	if _, ok := Parse(nil); ok {
		t.Error("a time parsed from no control data")
	}
}
