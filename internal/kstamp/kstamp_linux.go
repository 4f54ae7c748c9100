package kstamp

import (
	"encoding/binary"
	"net"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// OOBSize is the room the receive time takes in a read's control data.
var OOBSize = unix.CmsgSpace(16)

// Enable asks the kernel to stamp every datagram c receives; it reports
// whether the kernel agreed.
func Enable(c *net.UDPConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil || serr != nil {
		return false
	}
	return true
}

// Parse finds the receive time (SCM_TIMESTAMPNS, a struct timespec, on the
// wall clock) in a read's control data.
func Parse(oob []byte) (time.Time, bool) {
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
