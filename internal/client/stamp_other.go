//go:build !linux

package client

import "net"

// newStampConn returns c: kernel receive times are read on Linux only.
func newStampConn(c *net.UDPConn, _ *stampTable) net.PacketConn { return c }
