package client

import "syscall"

// forceReadBuffer sets SO_RCVBUFFORCE, which only root may; it reports
// whether the kernel took it.
func forceReadBuffer(c any, size int) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, size)
	}); err != nil {
		return false
	}
	return serr == nil
}
