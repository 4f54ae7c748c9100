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

// TestHLSVP9AndAV1 publishes VP9 (profile 0) and AV1, each 320x180 and
// made by ffmpeg (libvpx, SVT-AV1) for the test, with Opus from a pion
// peer: the multivariant playlist lists one variant with the codec's
// codecs string, ffprobe sees the codec at the right size, and ffmpeg
// decodes the variant without an error.
func TestHLSVP9AndAV1(t *testing.T) {
	ffprobe, ffmpeg := needTool(t, "ffprobe"), needTool(t, "ffmpeg")
	for _, c := range []struct {
		name, mime, probe, codecs string
		encoder                   []string
	}{
		// Realtime mode without hidden alternate reference frames (lag 0),
		// as in WebRTC. 320x180 is 57600 luma samples: level 1.1.
		{"vp9", "video/VP9", "vp9", "vp09.00.11.08",
			[]string{"-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-lag-in-frames", "0", "-b:v", "300k"}},
		// Main profile, level 2.0 (seq_level_idx 0), main tier, 8 bits.
		{"av1", "video/AV1", "av1", "av01.0.00M.08",
			[]string{"-c:v", "libsvtav1", "-preset", "12", "-b:v", "300k"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			// Keyframes every second, as a browser sends after the
			// packager's boundary requests.
			ivf := filepath.Join(t.TempDir(), c.name+".ivf")
			args := append([]string{"-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30", "-t", "4"}, c.encoder...)
			args = append(args, "-g", "30", "-keyint_min", "30", "-f", "ivf", ivf)
			if out, err := exec.CommandContext(ctx, ffmpeg, args...).CombinedOutput(); err != nil {
				t.Fatalf("ffmpeg %v: %v\n%s", c.encoder, err, out)
			}
			clip, err := client.LoadIVF(ivf)
			if err != nil {
				t.Fatal(err)
			}
			if clip.MimeType != c.mime || !clip.Frames[0].Keyframe || len(clip.Keyframes()) != 4 {
				t.Fatalf("clip: %s, %d frames, keyframes at %v", clip.MimeType, len(clip.Frames), clip.Keyframes())
			}

			srv := startServer(t)
			pub, err := client.Publish(ctx, client.PublishConfig{
				URL: srv.URL() + "/whip/" + c.name, Token: testToken, Loopback: true, Video: clip, Audio: loadClip(t, "audio.ogg"),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()

			base := srv.URL() + "/hls/" + c.name + "/"
			master := waitVariants(t, base+"index.m3u8", 1)
			t.Logf("multivariant playlist:\n%s", master)
			for _, want := range []string{`CODECS="` + c.codecs + `,opus"`, "RESOLUTION=320x180"} {
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
			for _, want := range []string{"codec_name=" + c.probe + "|width=320|height=180", "codec_name=opus"} {
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
		})
	}
}
