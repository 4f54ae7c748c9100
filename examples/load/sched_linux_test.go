package main

import (
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestYielder runs the yielder with one kept thread: after its first pass
// every other thread of the process is SCHED_IDLE and the kept one is
// normal; when it stops, every thread is normal again.
func TestYielder(t *testing.T) {
	var y yielder
	kept := make(chan int)
	release := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		y.keepThread()
		kept <- unix.Gettid()
		<-release
	})
	keep := <-kept
	defer func() { close(release); wg.Wait() }()

	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan error, 1)
	var ywg sync.WaitGroup
	ywg.Go(func() { y.run(ctx, time.Hour, started) })
	if err := <-started; err != nil {
		cancel()
		ywg.Wait()
		t.Fatalf("first pass: %v", err)
	}
	policies := func() map[int]uint32 {
		t.Helper()
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		m := map[int]uint32{}
		for _, e := range tasks {
			tid, _ := strconv.Atoi(e.Name())
			if a, err := unix.SchedGetAttr(tid, 0); err == nil {
				m[tid] = a.Policy
			}
		}
		return m
	}
	// Threads made after the pass (none are forced here) would be fixed by
	// the next; the ones that existed must be set now. The test goroutine's
	// own thread can be new, so it is not checked.
	idle := 0
	for tid, p := range policies() {
		switch {
		case tid == keep && p != unix.SCHED_NORMAL:
			t.Errorf("kept thread %d has policy %d, want SCHED_NORMAL", tid, p)
		case tid != keep && p == unix.SCHED_IDLE:
			idle++
		}
	}
	if idle == 0 {
		t.Error("no thread at SCHED_IDLE after the first pass")
	}
	cancel()
	ywg.Wait()
	for tid, p := range policies() {
		if p != unix.SCHED_NORMAL {
			t.Errorf("thread %d has policy %d after the yielder stopped, want SCHED_NORMAL", tid, p)
		}
	}
}
