package client

import "syscall"

// forceReadBuffer sets SO_RCVBUFFORCE, which only root may; it reports
// whether the kernel took it.
func forceReadBuffer(c any, size int) bool {
	sc, ok := c.(syscall.Conn)
	return ok && setsockoptInt(sc, syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, size)
}

// setsockoptInt sets an integer socket option on c and reports whether
// the kernel took it.
func setsockoptInt(c syscall.Conn, level, opt, value int) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), level, opt, value)
	}); err != nil {
		return false
	}
	return serr == nil
}
