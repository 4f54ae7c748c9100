package client

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// mediaDir returns /work/shared/media (the repository's sibling
// shared/media), or skips when it is absent outside CI.
func mediaDir(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	candidates := []string{
		os.Getenv("HYBRIDCAST_MEDIA"),
		filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "media"),
		"/work/shared/media",
	}
	for _, dir := range candidates {
		if dir == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "layer-q.h264")); err == nil {
			return dir
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("test media not found; set HYBRIDCAST_MEDIA")
	}
	t.Skip("test media not found; set HYBRIDCAST_MEDIA")
	return ""
}

// ffprobe returns the ffprobe path, or skips outside CI when it is absent.
func ffprobe(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("ffprobe")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ffprobe not found")
		}
		t.Skip("ffprobe not found")
	}
	return p
}

var h264Layers = []struct {
	file          string
	width, height int
}{
	{"layer-f.h264", 1280, 720},
	{"layer-h.h264", 640, 360},
	{"layer-q.h264", 320, 180},
}

func TestLoadH264(t *testing.T) {
	dir := mediaDir(t)
	for _, tc := range h264Layers {
		t.Run(tc.file, func(t *testing.T) {
			clip, err := LoadH264(filepath.Join(dir, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if clip.MimeType != webrtc.MimeTypeH264 || clip.ClockRate != 90000 {
				t.Fatalf("codec %s/%d", clip.MimeType, clip.ClockRate)
			}
			if got := len(clip.Frames); got != 300 {
				t.Fatalf("got %d access units, want 300", got)
			}
			if got := clip.Duration(); got != 10*time.Second {
				t.Fatalf("duration %v, want 10s", got)
			}
			var want []int
			for i := 0; i < 300; i += 30 {
				want = append(want, i)
			}
			if got := clip.Keyframes(); !equalInts(got, want) {
				t.Fatalf("keyframes at %v, want %v", got, want)
			}
			for i, f := range clip.Frames {
				if f.Duration != 3000 {
					t.Fatalf("frame %d lasts %d ticks", i, f.Duration)
				}
				nals := splitAnnexB(f.Data)
				var types []int
				for _, n := range nals {
					types = append(types, int(n[0]&0x1f))
				}
				if f.Keyframe {
					// SPS and PPS come before every IDR (repeat-headers=1).
					if len(types) < 3 || types[0] != naluSPS || types[1] != naluPPS || !containsInt(types, naluIDR) {
						t.Fatalf("keyframe %d has NAL types %v", i, types)
					}
					info, err := ParseSPS(nals[0])
					if err != nil {
						t.Fatalf("frame %d: %v", i, err)
					}
					if info.Width != tc.width || info.Height != tc.height {
						t.Fatalf("frame %d: SPS says %dx%d, want %dx%d", i, info.Width, info.Height, tc.width, tc.height)
					}
					if info.ProfileIDC != 66 {
						t.Fatalf("profile_idc %d, want 66 (Baseline)", info.ProfileIDC)
					}
				} else if containsInt(types, naluIDR) || !containsInt(types, naluSlice) {
					t.Fatalf("frame %d has NAL types %v", i, types)
				}
			}
		})
	}
}

// TestLoadH264MatchesFFprobe checks the loader's keyframe positions against
// ffprobe's view of the same file.
func TestLoadH264MatchesFFprobe(t *testing.T) {
	dir := mediaDir(t)
	probe := ffprobe(t)
	path := filepath.Join(dir, "layer-q.h264")
	out, err := exec.Command(probe, "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=flags",
		"-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	var keys []int
	lines := strings.Fields(string(out))
	for i, l := range lines {
		if strings.HasPrefix(l, "K") {
			keys = append(keys, i)
		}
	}
	clip, err := LoadH264(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != len(clip.Frames) {
		t.Fatalf("ffprobe sees %d packets, loader %d access units", len(lines), len(clip.Frames))
	}
	if got := clip.Keyframes(); !equalInts(got, keys) {
		t.Fatalf("loader keyframes %v, ffprobe %v", got, keys)
	}
}

func TestLoadOpus(t *testing.T) {
	clip, err := LoadOpus(filepath.Join(mediaDir(t), "audio.ogg"))
	if err != nil {
		t.Fatal(err)
	}
	if clip.MimeType != webrtc.MimeTypeOpus || clip.ClockRate != 48000 {
		t.Fatalf("codec %s/%d", clip.MimeType, clip.ClockRate)
	}
	// 10 s of 20 ms packets; ffmpeg may add one for the encoder delay.
	if n := len(clip.Frames); n < 500 || n > 501 {
		t.Fatalf("got %d Opus packets, want 500 or 501", n)
	}
	for i, f := range clip.Frames {
		if f.Duration != 960 {
			t.Fatalf("packet %d lasts %d samples, want 960 (20 ms)", i, f.Duration)
		}
		if len(f.Data) == 0 || len(f.Data) > 1275 {
			t.Fatalf("packet %d has %d bytes", i, len(f.Data))
		}
	}
}

func TestLoadIVF(t *testing.T) {
	clip, err := LoadIVF(filepath.Join(mediaDir(t), "vp8-360p.ivf"))
	if err != nil {
		t.Fatal(err)
	}
	if clip.MimeType != webrtc.MimeTypeVP8 || len(clip.Frames) != 300 {
		t.Fatalf("got %s with %d frames, want VP8 with 300", clip.MimeType, len(clip.Frames))
	}
	var want []int
	for i := 0; i < 300; i += 30 {
		want = append(want, i)
	}
	if got := clip.Keyframes(); !equalInts(got, want) {
		t.Fatalf("keyframes at %v, want %v", got, want)
	}
	if d := clip.Frames[0].Duration; d != 3000 {
		t.Fatalf("frame duration %d ticks, want 3000", d)
	}
}

func TestLoadClipErrors(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"empty.h264":   nil,
		"garbage.h264": []byte("not h264 at all"),
		"garbage.ogg":  []byte("OggS\x00"),
		"garbage.ivf":  []byte("DKIF"),
		"x.mp4":        []byte("x"),
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadClip(path); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := LoadClip(filepath.Join(dir, "missing.h264")); err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Errorf("missing file: %v", err)
	}
}

func TestOpusPacketDuration(t *testing.T) {
	for _, tc := range []struct {
		toc  []byte
		want uint32
	}{
		{[]byte{0xfc}, 960},        // CELT FB 20 ms, one frame
		{[]byte{0xfd}, 1920},       // two frames
		{[]byte{0xff, 0x03}, 2880}, // code 3, three frames
		{[]byte{0x08}, 960},        // SILK NB 20 ms
		{[]byte{0xff}, 0},          // code 3 without a count
		{[]byte{0xff, 0x00}, 0},    // zero frames
		{[]byte{0xfb, 0x3f}, 0},    // 63 × 60 ms is over 120 ms
		{nil, 0},
	} {
		if got := opusPacketDuration(tc.toc); got != tc.want {
			t.Errorf("opusPacketDuration(%x) = %d, want %d", tc.toc, got, tc.want)
		}
	}
}

func unwrapAll(err error) error {
	for {
		type unwrapper interface{ Unwrap() error }
		u, ok := err.(unwrapper)
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func splitAnnexB(b []byte) [][]byte {
	var out [][]byte
	for _, part := range bytes.Split(b, []byte{0, 0, 0, 1}) {
		if len(part) > 0 {
			out = append(out, part)
		}
	}
	return out
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
