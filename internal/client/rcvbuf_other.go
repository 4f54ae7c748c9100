//go:build !linux

package client

// forceReadBuffer reports false: SO_RCVBUFFORCE is Linux's.
func forceReadBuffer(any, int) bool { return false }
