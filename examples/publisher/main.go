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
	"path/filepath"
	"strings"
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
	if cfg.Video, err = loadClip(*video); err != nil {
		return err
	}
	if cfg.Audio, err = loadClip(*audio); err != nil {
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

// loadClip loads path, resolved against the repository root when it is
// relative; an empty path means no clip.
func loadClip(path string) (*client.Clip, error) {
	if path == "" {
		return nil, nil
	}
	resolved := resolve(path)
	if _, err := os.Stat(resolved); err != nil {
		return nil, fmt.Errorf("media file %s (from %q): %w; pass -video/-audio with an existing file, or \"\" to skip", resolved, path, err)
	}
	return client.LoadClip(resolved)
}

// resolve makes a relative path relative to the repository root, found by
// walking up from the working directory to the go.mod of this module. If
// there is none it returns path unchanged (relative to the working
// directory).
func resolve(path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	dir, err := os.Getwd()
	if err != nil {
		return path
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/hybridcast/hybridcast") {
			return filepath.Join(dir, path)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return path
		}
		dir = parent
	}
}
