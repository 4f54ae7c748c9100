//go:build linux

package rtc

import (
	"encoding/binary"
	"errors"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// gsoSupported reports whether the kernel segments UDP for this socket
// (UDP_SEGMENT, Linux 4.18 and later).
func gsoSupported(c *net.UDPConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	_ = raw.Control(func(fd uintptr) {
		_, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		ok = err == nil
	})
	return ok
}

// gsoSpace is the room one UDP_SEGMENT control message takes.
var gsoSpace = unix.CmsgSpace(2)

// appendGSO appends a control message that asks the kernel to cut the
// datagram into segments of size bytes (the last may be shorter).
func appendGSO(b []byte, size uint16) []byte {
	start := len(b)
	b = append(b, make([]byte, gsoSpace)...)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[start]))
	h.Level = unix.IPPROTO_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[start+unix.CmsgLen(0):], size)
	return b
}

// isGSOError reports whether a send failed because the path cannot
// segment (EIO: the device has no checksum offload), so that the datagrams
// must go one by one.
func isGSOError(err error) bool {
	return errors.Is(err, unix.EIO)
}
