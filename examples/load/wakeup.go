package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"
)

// wakeupProbeEnv, when set in the environment, makes the tool a wakeup
// probe instead (see runWakeupProbe): the load tool starts itself that way
// for the window.
const wakeupProbeEnv = "HYBRIDCAST_LOAD_WAKEUP_PROBE"

// wakeupReport is how late a thread that asked to wake at a given time
// woke, measured by the probe over the window: a 1 ms timer in its own
// process, at normal priority like the server's threads. Nothing of the
// tool or the server runs in it, so what it shows is the machine: how long
// a thread that is due waits for a CPU (the hypervisor resuming an idle
// virtual CPU, steal, other threads). A packet crosses several such
// wakeups in the server (the socket's reader, the track, each viewer's
// goroutine, the socket's writer), and each can wait this long.
type wakeupReport struct {
	percentiles
	P999 float64 `json:"p99_9"`
	// Policy is the probe thread's scheduling policy: "normal", or
	// "unchanged" when it could not be set.
	Policy string `json:"policy"`
}

// summarize turns lateness samples into a report (d is sorted here).
func summarize(d []time.Duration, policy string) wakeupReport {
	r := wakeupReport{percentiles: newPercentiles(d), Policy: policy}
	if len(d) > 0 {
		r.P999 = ms(nearestRank(d, 0.999))
	}
	return r
}

// wakeupProbe is the running probe process.
type wakeupProbe struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   bytes.Buffer
}

// startWakeupProbe starts this executable as a probe, killed if ctx ends.
func startWakeupProbe(ctx context.Context) (*wakeupProbe, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	p := &wakeupProbe{cmd: exec.CommandContext(ctx, exe)}
	p.cmd.Env = append(os.Environ(), wakeupProbeEnv+"=1")
	p.cmd.Stdout = &p.out
	p.cmd.Stderr = os.Stderr
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	return p, nil
}

// stop ends the probe and returns what it measured.
func (p *wakeupProbe) stop() (wakeupReport, error) {
	_ = p.stdin.Close()
	if err := p.cmd.Wait(); err != nil {
		return wakeupReport{}, fmt.Errorf("wakeup probe: %w", err)
	}
	var r wakeupReport
	if err := json.Unmarshal(p.out.Bytes(), &r); err != nil {
		return wakeupReport{}, fmt.Errorf("wakeup probe output: %w", err)
	}
	return r, nil
}

// runWakeupProbe is the probe process: it measures until its standard
// input ends, then writes its report as JSON on out.
func runWakeupProbe(in io.Reader, out io.Writer) error {
	stop := make(chan struct{})
	go func() { // ends with the process
		_, _ = io.Copy(io.Discard, in)
		close(stop)
	}()
	late, policy, err := measureWakeups(stop)
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(summarize(late, policy))
}
