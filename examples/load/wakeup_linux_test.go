package main

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"
	"time"
)

// TestWakeupProbe runs the probe for about 100 ms: it stops when its input
// ends and reports about one sample per millisecond, each late by zero or
// more, at normal priority.
func TestWakeupProbe(t *testing.T) {
	in, w := io.Pipe()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- runWakeupProbe(in, &out) }()
	time.Sleep(100 * time.Millisecond) // the measurement's length, not a wait for an event
	_ = w.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var r wakeupReport
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("probe output %q: %v", out.String(), err)
	}
	if r.N < 10 || r.N > 110 || r.P50 < 0 || r.P50 > r.P99 || r.P99 > r.Max || r.Policy == "" {
		t.Errorf("probe report %+v: want 10-110 samples in 100 ms, 0 <= p50 <= p99 <= max, a policy", r)
	}
	t.Logf("%+v", r)
}
