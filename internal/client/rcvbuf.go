package client

import (
	"net"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
)

// viewerNet is the standard network with, on every UDP socket ICE opens,
// a larger kernel receive buffer (size > 0), the kernel's receive time
// of each RTP packet noted in stamps (non-nil) and UDP GRO (gro, see
// PlayConfig.GRO). A load generator that runs
// hundreds of viewers on the server's machine otherwise loses datagrams in
// the kernel during keyframe bursts (the default buffer is about 200 KB),
// and the NACKs and PLIs that follow measure the generator, not the
// server.
type viewerNet struct {
	*stdnet.Net
	size   int
	stamps *stampTable
	gro    bool
}

func newViewerNet(size int, stamps *stampTable, gro bool) (transport.Net, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, err
	}
	return &viewerNet{Net: n, size: size, stamps: stamps, gro: gro}, nil
}

func (n *viewerNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := n.Net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	return n.tune(c), nil
}

func (n *viewerNet) ListenUDP(network string, locAddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, locAddr)
	if err != nil {
		return nil, err
	}
	if tc, ok := n.tune(c).(transport.UDPConn); ok {
		return tc, nil
	}
	return c, nil
}

// tune gives a new socket the receive buffer and, wrapped, the kernel
// receive times and GRO the network was made with.
func (n *viewerNet) tune(c net.PacketConn) net.PacketConn {
	if n.size > 0 {
		setReadBuffer(c, n.size)
	}
	if uc, ok := c.(*net.UDPConn); ok && (n.stamps != nil || n.gro) {
		return newStampConn(uc, n.stamps, n.gro)
	}
	return c
}

// setReadBuffer asks for size bytes: SO_RCVBUFFORCE where there is one
// (Linux, as root: beyond net.core.rmem_max), else SO_RCVBUF (capped by
// rmem_max). Failing both leaves the default; it is an optimisation, not
// a requirement.
func setReadBuffer(c any, size int) {
	if forceReadBuffer(c, size) {
		return
	}
	if rb, ok := c.(interface{ SetReadBuffer(int) error }); ok {
		_ = rb.SetReadBuffer(size)
	}
}
