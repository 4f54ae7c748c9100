//go:build !linux

package main

import (
	"context"
	"errors"
	"time"
)

type yielder struct{}

func (y *yielder) keepThread() {}

func (y *yielder) publisherPolicy() string { return "" }

func (y *yielder) run(_ context.Context, _ time.Duration, started chan<- error) {
	started <- errors.New("-yield needs Linux (SCHED_IDLE)")
}
