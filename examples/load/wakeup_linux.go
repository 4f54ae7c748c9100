package main

import (
	"errors"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// wakeupInterval is the probe's timer period.
const wakeupInterval = time.Millisecond

// measureWakeups sleeps on the monotonic clock until the next whole
// wakeupInterval, again and again until stop is closed, and returns how
// late each wakeup was. It runs on a thread of its own at normal priority
// (the process may have been started by a SCHED_IDLE thread of -yield,
// whose policy it would inherit). A wakeup later than the interval starts
// the schedule afresh, so one stall counts once, not as a run of overdue
// ticks.
func measureWakeups(stop <-chan struct{}) ([]time.Duration, string, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	policy := "normal"
	if setPolicy(0, unix.SCHED_NORMAL) != nil {
		policy = "unchanged"
	}
	now := func() (int64, error) {
		var ts unix.Timespec
		err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		return ts.Nano(), err
	}
	next, err := now()
	if err != nil {
		return nil, "", err
	}
	late := make([]time.Duration, 0, 1<<16)
	for {
		select {
		case <-stop:
			return late, policy, nil
		default:
		}
		next += int64(wakeupInterval)
		ts := unix.NsecToTimespec(next)
		for {
			err := unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &ts, nil)
			if err == nil {
				break
			}
			if !errors.Is(err, unix.EINTR) { // Go's preemption signal interrupts it
				return nil, "", err
			}
		}
		t, err := now()
		if err != nil {
			return nil, "", err
		}
		late = append(late, time.Duration(t-next))
		if t-next > int64(wakeupInterval) {
			next = t
		}
	}
}
