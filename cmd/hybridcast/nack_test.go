package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/internal/client"
)

// lossRule drops pct % of the UDP packets the server sends from its media
// port, with an nftables rule scoped to that port, removed when the test
// ends. It needs root and nft: CI has both (scripts/test installs nftables).
func lossRule(t *testing.T, port, pct int) {
	t.Helper()
	nft, err := exec.LookPath("nft")
	if err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("this test needs root and nft (nftables) in CI: nft=%q euid=%d", nft, os.Geteuid())
		}
		t.Skipf("needs root and nft (nftables) to drop packets on loopback: nft=%q euid=%d", nft, os.Geteuid())
	}
	table := fmt.Sprintf("hybridcast_test_%d", os.Getpid())
	run := func(args ...string) error {
		out, err := exec.Command(nft, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("add", "table", "inet", table); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := run("delete", "table", "inet", table); err != nil {
			t.Error(err)
		}
	})
	if err := run("add", "chain", "inet", table, "out", "{ type filter hook output priority 0; }"); err != nil {
		t.Fatal(err)
	}
	rule := []string{"add", "rule", "inet", table, "out", "ip", "daddr", "127.0.0.0/8", "udp", "sport", fmt.Sprint(port),
		"numgen", "random", "mod", "100", "<", fmt.Sprint(pct), "drop"}
	if err := run(rule...); err != nil {
		t.Fatal(err)
	}
}

// TestNACKRecoversLoss: with 5 % of the server's outgoing media packets
// dropped on loopback, the viewer's NACKs are answered from the track's
// history: most lost packets arrive afterwards as retransmissions.
func TestNACKRecoversLoss(t *testing.T) {
	srv := startServer(t)
	lossRule(t, srv.engine.UDPAddr().(*net.UDPAddr).Port, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sends := newSendLog()
	pub, err := client.Publish(ctx, client.PublishConfig{
		URL: srv.URL() + "/whip/lossy", Token: testToken, Loopback: true,
		Video: loadClip(t, "layer-h.h264"), OnFrameSent: sends.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	v, err := client.Play(ctx, client.PlayConfig{URL: srv.URL() + "/whep/lossy", Loopback: true, RequestKeyframes: true})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	<-sends.reached(sends.count() + 150)
	st := v.Stats().Video
	t.Logf("viewer: %d packets, %d lost, %d arrived late (retransmitted), %d frames, %d incomplete", st.Packets, st.Lost, st.Late, st.Frames, st.IncompleteFrames)
	if st.Lost == 0 {
		t.Fatal("no loss seen: the nftables rule did not apply")
	}
	if float64(st.Late) < 0.5*float64(st.Lost) {
		t.Fatalf("only %d of %d lost packets were retransmitted", st.Late, st.Lost)
	}
	// The same shows in /metrics: NACKed sequence numbers, packets resent.
	m := scrape(t, srv)
	nacks := mustSample(t, m, "hybridcast_webrtc_nacks_received_total", "stream", "lossy")
	resent := mustSample(t, m, "hybridcast_webrtc_retransmitted_packets_total", "stream", "lossy")
	t.Logf("metrics: %.0f NACKed, %.0f retransmitted", nacks, resent)
	if nacks == 0 || resent == 0 {
		t.Fatalf("metrics: %v NACKs, %v retransmitted; the viewer got %d late", nacks, resent, st.Late)
	}
}
