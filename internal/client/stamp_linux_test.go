package client

import (
	"encoding/binary"
	"net"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestStampConnGRO sends runs of RTP packets in single UDP GSO sends
// (UDP_SEGMENT) over loopback to a viewer socket with GRO: the reads hand
// out every packet apart, whole and in order, each with the kernel's
// receive time of its run; a plain datagram sent between runs comes out
// as it is.
func TestStampConnGRO(t *testing.T) {
	rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	stamps := newStampTable()
	pc := newStampConn(rc, stamps, true)
	c, ok := pc.(*stampConn)
	if !ok || !c.gro {
		rc.Close()
		t.Skip("the kernel refuses UDP_GRO or SO_TIMESTAMPNS")
	}
	defer c.Close()
	sc, err := net.DialUDP("udp4", nil, rc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()

	const seg, runs, perRun = 200, 3, 7
	gsoSend := func(run int) {
		buf := make([]byte, 0, seg*perRun)
		for i := range perRun {
			p := make([]byte, seg)
			copy(p, rtpHeader(uint16(run*100+i), 0xabcd))
			buf = append(buf, p...)
		}
		buf = buf[:seg*perRun-50]              // the last segment shorter, as a frame's last packet is
		oob := make([]byte, unix.CmsgSpace(2)) // UDP_SEGMENT: the segment size
		cm := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		cm.Level, cm.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
		cm.SetLen(unix.CmsgLen(2))
		binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], seg)
		if _, _, err := sc.WriteMsgUDP(buf, oob, nil); err != nil {
			t.Skipf("UDP GSO send refused: %v", err)
		}
	}
	before := time.Now()
	for run := range runs {
		gsoSend(run)
		if _, err := sc.Write(rtpHeader(uint16(run*100+99), 0xabcd)); err != nil {
			t.Fatal(err)
		}
	}
	b := make([]byte, 1500)
	for run := range runs {
		for i := range perRun {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _, err := c.ReadFromAddrPort(b)
			if err != nil {
				t.Fatal(err)
			}
			want := seg
			if i == perRun-1 {
				want = seg - 50
			}
			if seq := binary.BigEndian.Uint16(b[2:]); n != want || seq != uint16(run*100+i) {
				t.Fatalf("run %d packet %d: seq %d, %d bytes; want %d bytes", run, i, seq, n, want)
			}
			if i == 0 && len(c.pending) != seg*(perRun-1)-50 {
				t.Fatalf("run %d: %d bytes left of the run after its first packet: the kernel did not deliver it whole", run, len(c.pending))
			}
		}
		n, _, err := c.ReadFromAddrPort(b)
		if err != nil {
			t.Fatal(err)
		}
		if seq := binary.BigEndian.Uint16(b[2:]); n != 12 || seq != uint16(run*100+99) {
			t.Fatalf("run %d: plain datagram seq %d, %d bytes", run, seq, n)
		}
		first := stamps.lookup(0xabcd, uint16(run*100))
		if first.Before(before.Add(-time.Second)) || first.After(time.Now()) {
			t.Fatalf("run %d: kernel time %v, sent after %v", run, first, before)
		}
		for i := 1; i < perRun; i++ {
			if got := stamps.lookup(0xabcd, uint16(run*100+i)); !got.Equal(first) {
				t.Fatalf("run %d packet %d: kernel time %v, the run's %v", run, i, got, first)
			}
		}
	}
}
