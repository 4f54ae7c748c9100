package main

import (
	"context"
	"errors"
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
// stream comes in on time; the viewers read with what the server leaves,
// as if they were on other machines. Go starts threads as it needs them,
// and a new thread takes the policy of the thread that made it, so the
// policies are set again every pass.
//
// The publisher's goroutine still needs the other threads now and then
// (its timers fire on whichever thread runs the scheduler, pion's RTCP
// goroutines share locks with its writes), so a busy server can hold it
// back. Its pacer makes up a wakeup up to 20 ms late (maxPaceCredit in
// internal/client); a longer stall lowers the load, and the report then
// warns that fewer frames were sent than were due.
// (Raising its thread to SCHED_FIFO was tried in six runs and the
// publisher fell further behind, 160-410 of 590 frames, but the
// hypervisor's steal during them was not recorded, and a run soon after
// lost 54 % of the CPU to it: not settled.)
type yielder struct {
	mu     sync.Mutex
	keep   int    // tid of the publisher's thread; 0 until it is known
	policy string // what the publisher's thread got
}

// keepThread locks the calling goroutine to its thread and keeps that
// thread at normal priority.
func (y *yielder) keepThread() {
	runtime.LockOSThread() // for the goroutine's life: the thread ends with it
	tid := unix.Gettid()
	policy := "normal"
	if setPolicy(tid, unix.SCHED_NORMAL) != nil {
		policy = "unchanged"
	}
	y.mu.Lock()
	y.keep, y.policy = tid, policy
	y.mu.Unlock()
}

// publisherPolicy says what the publisher's thread got, "" before it ran.
func (y *yielder) publisherPolicy() string {
	y.mu.Lock()
	defer y.mu.Unlock()
	return y.policy
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

// pass gives every thread but the kept one the policy; the last pass
// (SCHED_NORMAL) includes it.
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
		if tid == keep && policy != unix.SCHED_NORMAL {
			continue
		}
		if err := setPolicy(tid, policy); err != nil && first == nil && !errors.Is(err, unix.ESRCH) {
			first = fmt.Errorf("thread %d: %w", tid, err)
		}
	}
	return first
}

func setPolicy(tid int, policy uint32) error {
	return unix.SchedSetAttr(tid, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: policy}, 0)
}
