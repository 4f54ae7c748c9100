package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/internal/browsertest"
	"github.com/hybridcast/hybridcast/sfu"
)

// netnsServer runs the hybridcast binary inside a network namespace made
// by the test, reachable from here through a veth pair, so that tc can
// shape what the server sends to viewers. Addresses: 10.201.0.1 (here),
// 10.201.0.2 (the namespace); nothing else is routed. Needs root.
type netnsServer struct {
	ns, vethHost, vethNS string
	base                 string
}

func startNetnsServer(t *testing.T) *netnsServer {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the bandwidth test needs root (ip netns, tc) in CI")
		}
		t.Skip("needs root for ip netns and tc")
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s (iproute2) missing: %v", tool, err)
		}
	}
	bin := filepath.Join(t.TempDir(), "hybridcast")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build the server: %v\n%s", err, out)
	}
	id := os.Getpid() % 100000
	n := &netnsServer{ns: fmt.Sprintf("hc%d", id), vethHost: fmt.Sprintf("hcv%d", id), vethNS: fmt.Sprintf("hcn%d", id), base: "http://10.201.0.2:8080"}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", n.ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.ns).Run() })
	run("ip", "link", "add", n.vethHost, "type", "veth", "peer", "name", n.vethNS)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", n.vethHost).Run() })
	run("ip", "link", "set", n.vethNS, "netns", n.ns)
	run("ip", "addr", "add", "10.201.0.1/30", "dev", n.vethHost)
	run("ip", "link", "set", n.vethHost, "up")
	run("ip", "netns", "exec", n.ns, "ip", "addr", "add", "10.201.0.2/30", "dev", n.vethNS)
	run("ip", "netns", "exec", n.ns, "ip", "link", "set", n.vethNS, "up")
	run("ip", "netns", "exec", n.ns, "ip", "link", "set", "lo", "up")

	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.ns, bin,
		"--http-addr", "10.201.0.2:8080", "--webrtc-udp-addr", "10.201.0.2:8189", "--publish-token", testToken, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get(n.base + "/healthz")
		if err == nil {
			res.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server in the namespace did not answer: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // the process has no readiness event to wait on
	}
	return n
}

// shape limits what the server sends (egress of its veth) to rate, or
// lifts the limit when rate is "".
func (n *netnsServer) shape(t *testing.T, rate string) {
	t.Helper()
	args := []string{"netns", "exec", n.ns, "tc", "qdisc", "del", "dev", n.vethNS, "root"}
	if rate != "" {
		args = []string{"netns", "exec", n.ns, "tc", "qdisc", "add", "dev", n.vethNS, "root", "tbf", "rate", rate, "burst", "32kbit", "latency", "400ms"}
	}
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("tc: %v: %s", err, out)
	}
}

// TestChromiumViewerAdaptsToBandwidth: a Chromium viewer whose downlink is
// shaped to 1 Mbit/s settles on a layer that fits within 10 s; after the
// limit is lifted it climbs back to the top layer. The layer timeline comes
// from the API and is logged.
func TestChromiumViewerAdaptsToBandwidth(t *testing.T) {
	b := browsertest.New(t)
	n := startNetnsServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	defer cancel()
	publishSimulcastFrom(ctx, t, n.base+"/whip/bw", []string{"q", "h", "f"}, func(ip net.IP) bool { return ip.Equal(net.ParseIP("10.201.0.1")) })

	viewer, err := b.NewPage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := viewer.Play(ctx, n.base+"/whep/bw", browsertest.WithoutGathering()); err != nil {
		t.Fatal(err)
	}
	if _, err := viewer.WaitFor(ctx, func(s browsertest.Stats) bool { return s.Viewer != nil && s.Viewer.FramesDecoded > 10 }); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	bitrates := map[string]int{}
	status := func() sfu.ViewerStats {
		streams := getStreams(t, n.base)
		for _, tr := range streams[0].Tracks {
			bitrates[tr.RID] = tr.Bitrate
		}
		return streams[0].ViewerList[0]
	}
	last, lastPadding := "", 0
	logLayer := func(v sfu.ViewerStats) {
		if v.Layer != last || (v.ProbePadding > 0) != (lastPadding > 0) {
			t.Logf("%5.1fs layer %s (%d bit/s), estimate %d bit/s, probe padding %d bit/s (%d packets so far)", time.Since(start).Seconds(), v.Layer, bitrates[v.Layer], v.EstimatedBitrate, v.ProbePadding, v.ProbePackets)
			last, lastPadding = v.Layer, v.ProbePadding
		}
	}
	// The timeline and the freeze check poll: the API and getStats have no
	// push events. 200 ms resolution.
	watch := func(d time.Duration, done func(sfu.ViewerStats) bool) (longestFreeze time.Duration) {
		frames, lastNew := int64(-1), time.Now()
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			v := status()
			logLayer(v)
			st, err := viewer.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Viewer != nil && st.Viewer.FramesDecoded != frames {
				frames, lastNew = st.Viewer.FramesDecoded, time.Now()
			}
			longestFreeze = max(longestFreeze, time.Since(lastNew))
			if done != nil && done(v) {
				return longestFreeze
			}
			time.Sleep(200 * time.Millisecond)
		}
		return longestFreeze
	}
	// The viewer starts on the middle layer and finds its way up by
	// probing; the shaping must take it down from the top layer.
	watch(60*time.Second, func(v sfu.ViewerStats) bool { return v.Layer == "f" })
	if last != "f" {
		t.Fatalf("the viewer did not reach the top layer in 60 s unshaped (on %q)", last)
	}
	reachedTop := time.Since(start)

	n.shape(t, "1mbit")
	t.Logf("%5.1fs downlink shaped to 1 Mbit/s", time.Since(start).Seconds())
	shapedAt := time.Now()
	fits := func(v sfu.ViewerStats) bool { return v.Layer != "" && bitrates[v.Layer] < 1_000_000 }
	switchFreeze := watch(10*time.Second, fits)
	settled := time.Since(shapedAt)
	if !fits(status()) {
		t.Fatalf("10 s after shaping to 1 Mbit/s the viewer is on %q (%d bit/s)", last, bitrates[last])
	}
	freeze := watch(8*time.Second, nil) // stays on a fitting layer, no long freeze
	t.Logf("reached the top layer after %v; settled %v after shaping; longest freeze while stepping down %v, after settling %v",
		reachedTop.Round(100*time.Millisecond), settled.Round(100*time.Millisecond), switchFreeze.Round(100*time.Millisecond), freeze.Round(100*time.Millisecond))
	if longest := max(switchFreeze, freeze); longest > time.Second {
		t.Errorf("picture froze %v while shaped (want ≤ 1 s)", longest)
	}

	n.shape(t, "")
	t.Logf("%5.1fs limit lifted", time.Since(start).Seconds())
	liftedAt := time.Now()
	watch(90*time.Second, func(v sfu.ViewerStats) bool { return v.Layer == "f" })
	if last != "f" {
		t.Fatalf("after the limit was lifted the viewer did not climb back to the top layer (on %q)", last)
	}
	t.Logf("back on the top layer %v after the limit was lifted", time.Since(liftedAt).Round(100*time.Millisecond))
}
