//go:build !linux

package rtc

import (
	"net"

	"golang.org/x/net/ipv6"
)

// newSendFD returns a second descriptor of c's socket, for sending.
func newSendFD(c *net.UDPConn, _ bool) (sendFD, error) {
	f, err := c.File()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d, err := net.FilePacketConn(f)
	if err != nil {
		return nil, err
	}
	return pollFD{pc: ipv6.NewPacketConn(d), c: d}, nil
}

// newRecvFD returns c: it is read through Go's poller.
func newRecvFD(c *net.UDPConn) recvFD { return connIn{c} }
