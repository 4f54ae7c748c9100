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

	"github.com/hybridcast/hybridcast/internal/browsertest"
	"github.com/hybridcast/hybridcast/internal/client"
)

// lossRule drops pct % of the UDP packets the server sends from its media
// port over the loopback interface, with an nftables rule scoped to that
// port, removed when the test ends. It needs root and nft: CI has both (scripts/test installs nftables).
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
	// On the loopback interface, whatever the address: Chromium reaches a
	// loopback server from the machine's own address, which the kernel
	// also delivers over lo.
	rule := []string{"add", "rule", "inet", table, "out", "oifname", "lo", "udp", "sport", fmt.Sprint(port),
		"numgen", "random", "mod", "100", "<", fmt.Sprint(pct), "drop"}
	if err := run(rule...); err != nil {
		t.Fatal(err)
	}
}

// TestNACKRecoversLoss: with 5 % of the server's outgoing media packets
// dropped on loopback, the viewer's NACKs are answered from the track's
// history: most lost packets arrive afterwards as retransmissions. A
// viewer that negotiated RTX (as browsers do) gets them on its RTX stream
// (RFC 4588), one that did not on the media stream.
func TestNACKRecoversLoss(t *testing.T) {
	srv := startServer(t)
	lossRule(t, srv.engine.UDPAddr().(*net.UDPAddr).Port, 5)
	for _, rtx := range []bool{false, true} {
		t.Run(fmt.Sprintf("rtx=%v", rtx), func(t *testing.T) {
			stream := "lossy"
			if rtx {
				stream = "lossy-rtx"
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			sends := newSendLog()
			pub, err := client.Publish(ctx, client.PublishConfig{
				URL: srv.URL() + "/whip/" + stream, Token: testToken, Loopback: true,
				Video: loadClip(t, "layer-h.h264"), OnFrameSent: sends.add,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			v, err := client.Play(ctx, client.PlayConfig{URL: srv.URL() + "/whep/" + stream, Loopback: true, RequestKeyframes: true, RTX: rtx})
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			<-sends.reached(sends.count() + 150)
			st := v.Stats().Video
			t.Logf("viewer: %d packets, %d lost, %d arrived late (retransmitted), %d on the RTX stream, %d frames, %d incomplete",
				st.Packets, st.Lost, st.Late, st.Repaired, st.Frames, st.IncompleteFrames)
			if st.Lost == 0 {
				t.Fatal("no loss seen: the nftables rule did not apply")
			}
			if float64(st.Late) < 0.5*float64(st.Lost) {
				t.Fatalf("only %d of %d lost packets were retransmitted", st.Late, st.Lost)
			}
			if rtx && float64(st.Repaired) < 0.5*float64(st.Lost) {
				t.Fatalf("only %d of %d lost packets came on the RTX stream", st.Repaired, st.Lost)
			}
			if !rtx && st.Repaired != 0 {
				t.Fatalf("%d packets on an RTX stream the viewer did not negotiate", st.Repaired)
			}
			// The same shows in /metrics: NACKed sequence numbers, packets resent.
			m := scrape(t, srv)
			nacks := mustSample(t, m, "hybridcast_webrtc_nacks_received_total", "stream", stream)
			resent := mustSample(t, m, "hybridcast_webrtc_retransmitted_packets_total", "stream", stream)
			resentRTX := mustSample(t, m, "hybridcast_webrtc_retransmitted_rtx_packets_total", "stream", stream)
			t.Logf("metrics: %.0f NACKed, %.0f retransmitted, %.0f of them on RTX", nacks, resent, resentRTX)
			if nacks == 0 || resent == 0 {
				t.Fatalf("metrics: %v NACKs, %v retransmitted; the viewer got %d late", nacks, resent, st.Late)
			}
			if (resentRTX == resent) != rtx || (rtx && resentRTX == 0) {
				t.Fatalf("metrics: %v of %v retransmissions on RTX, with RTX negotiated %v", resentRTX, resent, rtx)
			}
		})
	}
}

// TestChromiumViewerRecoversLoss: with 5 % of the server's outgoing media
// packets dropped, a Chromium viewer (which negotiates RTX) NACKs the
// losses and gets them back on its RTX stream: libwebrtc counts them as
// retransmitted packets received, and the picture goes on with hardly a
// freeze.
func TestChromiumViewerRecoversLoss(t *testing.T) {
	b := browsertest.New(t)
	srv := startServer(t)
	lossRule(t, srv.engine.UDPAddr().(*net.UDPAddr).Port, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	pub, err := b.NewPage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, srv.URL()+"/whip/lossy-cam", testToken, false); err != nil {
		t.Fatal(err)
	}
	viewer, err := b.NewPage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := viewer.Play(ctx, srv.URL()+"/whep/lossy-cam", browsertest.WithoutGathering()); err != nil {
		t.Fatal(err)
	}
	st, err := viewer.WaitFor(ctx, func(s browsertest.Stats) bool { return s.Viewer != nil && s.Viewer.FramesDecoded >= 300 })
	if err != nil {
		t.Fatal(err)
	}
	v := st.Viewer
	m := scrape(t, srv)
	resentRTX := mustSample(t, m, "hybridcast_webrtc_retransmitted_rtx_packets_total", "stream", "lossy-cam")
	t.Logf("viewer: %d video packets, %d lost on the way, %d NACKs sent, %d retransmitted packets received, %d frames, %d freezes (%.2f s); server: %.0f resent on RTX",
		v.VideoPacketsReceived, v.PacketsLost, v.NackCount, v.RetransmittedPacketsReceived, v.FramesDecoded, v.FreezeCount, v.TotalFreezesDuration, resentRTX)
	// libwebrtc counts a packet repaired by RTX as retransmitted, not as
	// received: packetsLost stays what the network lost.
	switch {
	case v.NackCount == 0 || resentRTX == 0:
		t.Fatalf("no NACK answered on RTX: %d NACKs, %.0f RTX retransmissions", v.NackCount, resentRTX)
	case v.PacketsLost == 0:
		t.Fatal("no loss seen: the nftables rule did not apply")
	case float64(v.RetransmittedPacketsReceived) < 0.7*float64(v.PacketsLost):
		t.Fatalf("the viewer received %d retransmissions for %d lost packets", v.RetransmittedPacketsReceived, v.PacketsLost)
	case v.TotalFreezesDuration > 3:
		// Retransmissions on the media SSRC (as before RTX): 21-30
		// freezes, 19-30 s frozen while decoding these 300 frames.
		t.Fatalf("the picture froze %d times, %.1f s in all", v.FreezeCount, v.TotalFreezesDuration)
	}
}
