//go:build !linux

package client

import "net"

// newStampConn returns c: kernel receive times and UDP GRO are Linux's.
func newStampConn(c *net.UDPConn, _ *stampTable, _ bool) net.PacketConn { return c }
