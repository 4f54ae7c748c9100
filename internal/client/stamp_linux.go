package client

import (
	"net"
	"net/netip"

	"github.com/hybridcast/hybridcast/internal/kstamp"
)

// stampConn is a UDP socket that reads the kernel's receive time of each
// datagram (SO_TIMESTAMPNS) into a stampTable. It offers the AddrPort
// read and write methods, which pion's ICE uses for its reads when a
// socket is not a plain *net.UDPConn.
type stampConn struct {
	*net.UDPConn
	stamps *stampTable
	oob    []byte // only the one ICE read goroutine reads
}

// newStampConn turns on SO_TIMESTAMPNS on c; it returns c unchanged when
// the kernel refuses.
func newStampConn(c *net.UDPConn, stamps *stampTable) net.PacketConn {
	if !kstamp.Enable(c) {
		return c
	}
	return &stampConn{UDPConn: c, stamps: stamps, oob: make([]byte, kstamp.OOBSize)}
}

func (c *stampConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, oobn, _, addr, err := c.ReadMsgUDPAddrPort(b, c.oob)
	if err == nil {
		if t, ok := kstamp.Parse(c.oob[:oobn]); ok {
			c.stamps.record(b[:n], t)
		}
	}
	return n, addr, err
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
