// Command publisher publishes looped H.264 (or VP8) and Opus files to a
// WHIP endpoint until interrupted, logging its counters every 5 s.
//
//	go run ./examples/publisher -url http://127.0.0.1:8080/whip/demo
//
// Relative media paths are resolved against the repository root (the
// directory holding this module's go.mod), so the defaults find
// ../shared/media from anywhere inside the checkout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hybridcast/hybridcast/internal/client"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "publisher:", err)
		os.Exit(1)
	}
}

func run() error {
	url := flag.String("url", "http://127.0.0.1:8080/whip/demo", "WHIP endpoint URL")
	token := flag.String("token", "", "bearer token for the Authorization header")
	video := flag.String("video", "../shared/media/layer-f.h264", "video file (.h264 or .ivf); empty for none; relative to the repository root")
	audio := flag.String("audio", "../shared/media/audio.ogg", "Opus file (.ogg); empty for none; relative to the repository root")
	loopback := flag.Bool("loopback", false, "use only 127.0.0.1 ICE candidates")
	verbose := flag.Bool("v", false, "debug logging")
	flag.Parse()

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	cfg := client.PublishConfig{URL: *url, Token: *token, Loopback: *loopback, Logger: log}
	var err error
	if cfg.Video, err = client.LoadClipFile(*video); err != nil {
		return err
	}
	if cfg.Audio, err = client.LoadClipFile(*audio); err != nil {
		return err
	}
	if cfg.Video == nil && cfg.Audio == nil {
		return errors.New("nothing to publish: -video and -audio are both empty")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	setup, cancel := context.WithTimeout(ctx, 30*time.Second)
	pub, err := client.Publish(setup, cfg)
	cancel()
	if err != nil {
		return err
	}
	log.Info("publishing until interrupted", "location", pub.Location())

	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-tick.C:
			logStats(log, pub.Stats())
		case <-pub.Done():
			log.Warn("peer connection ended")
			done = true
		case <-ctx.Done():
			done = true
		}
	}
	logStats(log, pub.Stats())
	return pub.Close()
}

func logStats(log *slog.Logger, s client.PublisherStats) {
	log.Info("stats",
		"frames_sent", s.FramesSent, "keyframes_sent", s.KeyframesSent,
		"requested_keyframes", s.RequestedKeyframes, "plis_received", s.PLIsReceived,
		"firs_received", s.FIRsReceived, "nacks_received", s.NACKsReceived,
		"video_packets", s.VideoPackets, "video_bytes", s.VideoBytes,
		"audio_frames_sent", s.AudioFramesSent, "loops", s.Loops, "write_errors", s.WriteErrors)
}
