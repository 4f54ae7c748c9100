package client

import (
	"net"
	"syscall"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
)

// bufferedNet is the standard network with a larger kernel receive buffer
// on every UDP socket ICE opens. A load generator that runs hundreds of
// viewers on the server's machine otherwise loses datagrams in the kernel
// during keyframe bursts (the default buffer is about 200 KB), and the
// NACKs and PLIs that follow measure the generator, not the server.
type bufferedNet struct {
	*stdnet.Net
	size int
}

func newBufferedNet(size int) (transport.Net, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, err
	}
	return &bufferedNet{Net: n, size: size}, nil
}

func (n *bufferedNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := n.Net.ListenPacket(network, address)
	if err == nil {
		setReadBuffer(c, n.size)
	}
	return c, err
}

func (n *bufferedNet) ListenUDP(network string, locAddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, locAddr)
	if err == nil {
		setReadBuffer(c, n.size)
	}
	return c, err
}

// setReadBuffer asks for size bytes: SO_RCVBUFFORCE (root: beyond
// net.core.rmem_max), else SO_RCVBUF (capped by rmem_max). Failing both
// leaves the default; it is an optimisation, not a requirement.
func setReadBuffer(c any, size int) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, size) != nil {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size)
		}
	})
}
