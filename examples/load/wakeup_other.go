//go:build !linux

package main

import (
	"errors"
	"time"
)

func measureWakeups(<-chan struct{}) ([]time.Duration, string, error) {
	return nil, "", errors.New("the wakeup probe needs Linux (clock_nanosleep)")
}
