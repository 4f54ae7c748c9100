package client

import (
	"encoding/binary"
	"net"
	"net/netip"
	"time"

	"github.com/hybridcast/hybridcast/internal/kstamp"
	"golang.org/x/sys/unix"
)

// stampConn is a UDP socket that reads the kernel's receive time of each
// datagram (SO_TIMESTAMPNS) into a stampTable, and with UDP GRO takes in
// runs of datagrams whole and hands them out one by one. It offers the
// AddrPort read and write methods, which pion's ICE uses for its reads
// when a socket is not a plain *net.UDPConn. Only the one ICE read
// goroutine reads.
type stampConn struct {
	*net.UDPConn
	stamps *stampTable // nil: no kernel times
	oob    []byte

	// With GRO: big holds the run read last, pending what of it is not
	// handed out yet, in segments of seg bytes from addr, received at at.
	gro     bool
	big     []byte
	pending []byte
	seg     int
	addr    netip.AddrPort
	at      time.Time
	stamped bool
}

// groOOBSize is the room UDP_GRO's segment size takes in control data.
var groOOBSize = unix.CmsgSpace(4)

// newStampConn turns on SO_TIMESTAMPNS on c (stamps non-nil) and UDP GRO
// (gro); it returns c unchanged when it gets neither.
func newStampConn(c *net.UDPConn, stamps *stampTable, gro bool) net.PacketConn {
	if stamps != nil && !kstamp.Enable(c) {
		stamps = nil
	}
	gro = gro && enableGRO(c)
	if stamps == nil && !gro {
		return c
	}
	s := &stampConn{UDPConn: c, stamps: stamps, oob: make([]byte, kstamp.OOBSize+groOOBSize), gro: gro}
	if gro {
		s.big = make([]byte, 1<<16)
	}
	return s
}

// enableGRO asks the kernel to deliver a run of datagrams of one size from
// one sender (a UDP GSO send, or datagrams it coalesced) as one read.
func enableGRO(c *net.UDPConn) bool {
	return setsockoptInt(c, unix.IPPROTO_UDP, unix.UDP_GRO, 1)
}

// groSegment finds UDP_GRO's segment size in a read's control data, 0 if
// there is none (a single datagram).
func groSegment(oob []byte) int {
	for len(oob) > 0 {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return 0
		}
		if h.Level == unix.IPPROTO_UDP && h.Type == unix.UDP_GRO && len(data) >= 4 {
			return int(binary.NativeEndian.Uint32(data))
		}
		oob = rest
	}
	return 0
}

func (c *stampConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	if !c.gro {
		n, oobn, _, addr, err := c.ReadMsgUDPAddrPort(b, c.oob)
		if err == nil && c.stamps != nil {
			if t, ok := kstamp.Parse(c.oob[:oobn]); ok {
				c.stamps.record(b[:n], t)
			}
		}
		return n, addr, err
	}
	if len(c.pending) == 0 {
		n, oobn, _, addr, err := c.ReadMsgUDPAddrPort(c.big, c.oob)
		if err != nil {
			return 0, addr, err
		}
		oob := c.oob[:oobn]
		c.pending, c.addr = c.big[:n], addr
		c.seg = groSegment(oob)
		if c.seg <= 0 || c.seg > n {
			c.seg = n
		}
		c.at, c.stamped = time.Time{}, false
		if c.stamps != nil {
			c.at, c.stamped = kstamp.Parse(oob)
		}
		if n == 0 {
			return 0, addr, nil
		}
	}
	k := min(c.seg, len(c.pending))
	// A datagram longer than b is cut to it, as a read of the socket cuts it.
	n := copy(b, c.pending[:k])
	c.pending = c.pending[k:]
	if c.stamped {
		c.stamps.record(b[:n], c.at)
	}
	return n, c.addr, nil
}

func (c *stampConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := c.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(addr), nil
}

func (c *stampConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	return c.WriteToUDPAddrPort(b, addr)
}
