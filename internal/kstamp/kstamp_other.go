//go:build !linux

package kstamp

import (
	"net"
	"time"
)

// OOBSize is 0: receive times are read on Linux only.
var OOBSize = 0

// Enable reports false: receive times are read on Linux only.
func Enable(*net.UDPConn) bool { return false }

// Parse finds nothing.
func Parse([]byte) (time.Time, bool) { return time.Time{}, false }
