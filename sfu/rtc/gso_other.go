//go:build !linux

package rtc

import "net"

func gsoSupported(*net.UDPConn) bool { return false }

var gsoSpace = 0

func appendGSO(b []byte, _ uint16) []byte { return b }

func isGSOError(error) bool { return false }
