package client

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
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
	raw, err := c.SyscallConn()
	if err != nil {
		return c
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil || serr != nil {
		return c
	}
	return &stampConn{UDPConn: c, stamps: stamps, oob: make([]byte, unix.CmsgSpace(16))}
}

func (c *stampConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, oobn, _, addr, err := c.ReadMsgUDPAddrPort(b, c.oob)
	if err == nil {
		if t, ok := kernelTime(c.oob[:oobn]); ok {
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

// kernelTime finds the SCM_TIMESTAMPNS message (a struct timespec) in oob.
func kernelTime(oob []byte) (time.Time, bool) {
	for len(oob) > 0 {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return time.Time{}, false
		}
		// A struct timespec of two native longs; 32-bit platforms (4-byte
		// longs) go without stamps.
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && strconv.IntSize == 64 && len(data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(data[0:8]))
			nsec := int64(binary.NativeEndian.Uint64(data[8:16]))
			return time.Unix(sec, nsec), true
		}
		oob = rest
	}
	return time.Time{}, false
}
