package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/internal/client"
)

// TestHLSVP9 publishes VP9 (profile 0, 320x180, made by ffmpeg's libvpx
// for the test) with Opus from a pion peer: the multivariant playlist
// lists one VP9 variant with its codecs string, ffprobe sees VP9 of the
// right size, and ffmpeg decodes it without an error.
func TestHLSVP9(t *testing.T) {
	ffprobe, ffmpeg := needTool(t, "ffprobe"), needTool(t, "ffmpeg")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ivf := filepath.Join(t.TempDir(), "vp9.ivf")
	// Keyframes every second, as a browser sends after the packager's
	// boundary requests; realtime mode, no hidden alternate reference
	// frames (lag 0), as in WebRTC.
	if out, err := exec.CommandContext(ctx, ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30",
		"-t", "4", "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-lag-in-frames", "0",
		"-g", "30", "-keyint_min", "30", "-b:v", "300k", "-f", "ivf", ivf).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg (libvpx-vp9): %v\n%s", err, out)
	}
	clip, err := client.LoadIVF(ivf)
	if err != nil {
		t.Fatal(err)
	}
	if clip.MimeType != "video/VP9" || !clip.Frames[0].Keyframe || len(clip.Keyframes()) != 4 {
		t.Fatalf("clip: %s, %d frames, keyframes at %v", clip.MimeType, len(clip.Frames), clip.Keyframes())
	}

	srv := startServer(t)
	pub, err := client.Publish(ctx, client.PublishConfig{
		URL: srv.URL() + "/whip/vp9", Token: testToken, Loopback: true, Video: clip, Audio: loadClip(t, "audio.ogg"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	base := srv.URL() + "/hls/vp9/"
	master := waitVariants(t, base+"index.m3u8", 1)
	t.Logf("multivariant playlist:\n%s", master)
	// 320x180 is 57600 luma samples: level 1.1 (at most 73728).
	for _, want := range []string{`CODECS="vp09.00.11.08,opus"`, "RESOLUTION=320x180"} {
		if !strings.Contains(master, want) {
			t.Errorf("multivariant playlist lacks %s", want)
		}
	}
	uris := variantRE.FindAllStringSubmatch(master, -1)
	if len(uris) != 1 {
		t.Fatalf("%d variants", len(uris))
	}

	out, err := exec.CommandContext(ctx, ffprobe, "-v", "error", "-show_entries", "stream=codec_name,width,height",
		"-of", "compact", base+"index.m3u8").CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v\n%s", err, out)
	}
	for _, want := range []string{"codec_name=vp9|width=320|height=180", "codec_name=opus"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("ffprobe did not see %s:\n%s", want, out)
		}
	}

	cmd := exec.CommandContext(ctx, ffmpeg, "-v", "error", "-i", base+uris[0][3], "-t", "2", "-f", "null", "-", "-progress", "pipe:1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffmpeg %s: %v\n%s", uris[0][3], err, stderr.Bytes())
	}
	frames := lastProgress(out, "frame")
	t.Logf("%s: decoded %s frames", uris[0][3], frames)
	// ffmpeg's live HLS reader starts near the edge and may stop a
	// segment in (see TestDASHLadder): one segment is 30 frames.
	if n, _ := strconv.Atoi(frames); n < 30 {
		t.Errorf("only %s frames decoded", frames)
	}
}
