package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// yielder keeps every thread of this process but one at SCHED_IDLE, the
// Linux policy that runs a thread only when no normal thread wants the
// CPU. The one kept normal is the publisher's send thread, so that the
// stream comes in on time; the viewers then read with what the server
// leaves, as if they were on other machines. Go starts threads as it needs
// them, and a new thread takes the policy of the thread that made it, so
// the policies are set again every pass.
type yielder struct {
	mu   sync.Mutex
	keep int // tid left at SCHED_NORMAL; 0 until the publisher's thread is known
}

// keepThread locks the calling goroutine to its thread and keeps that
// thread at normal priority.
func (y *yielder) keepThread() {
	runtime.LockOSThread() // for the goroutine's life: the thread ends with it
	y.mu.Lock()
	y.keep = unix.Gettid()
	y.mu.Unlock()
	_ = setPolicy(y.keep, unix.SCHED_NORMAL)
}

// run sets the policies every interval until ctx ends, then puts every
// thread back to normal. The first pass's error is returned at once (no
// permission, no /proc).
func (y *yielder) run(ctx context.Context, interval time.Duration, started chan<- error) {
	err := y.pass(unix.SCHED_IDLE)
	started <- err
	if err != nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = y.pass(unix.SCHED_NORMAL)
			return
		case <-t.C:
			_ = y.pass(unix.SCHED_IDLE)
		}
	}
}

// pass gives every thread but the kept one the policy.
func (y *yielder) pass(policy uint32) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("list threads: %w", err)
	}
	y.mu.Lock()
	keep := y.keep
	y.mu.Unlock()
	var first error
	for _, e := range tasks {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p := policy
		if tid == keep {
			p = unix.SCHED_NORMAL
		}
		if err := setPolicy(tid, p); err != nil && first == nil && err != unix.ESRCH {
			first = fmt.Errorf("thread %d: %w", tid, err)
		}
	}
	return first
}

func setPolicy(tid int, policy uint32) error {
	return unix.SchedSetAttr(tid, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: policy}, 0)
}
