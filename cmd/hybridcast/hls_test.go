package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
)

// needTool returns the path of an external program, skipping the test
// without it on a developer machine and failing in CI (scripts/test
// installs it).
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing in CI: %v", name, err)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

func httpGet(t testing.TB, url string) (int, http.Header, []byte) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, body
}

// waitVariants polls the multivariant playlist until it lists n variants.
func waitVariants(t testing.TB, url string, n int) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		code, _, body := httpGet(t, url)
		last = fmt.Sprintf("%d %s", code, body)
		if code == 200 && strings.Count(string(body), "#EXT-X-STREAM-INF") == n {
			return string(body)
		}
		time.Sleep(200 * time.Millisecond) // polling a server that has no push for this
	}
	t.Fatalf("multivariant playlist never listed %d variants; last answer: %s", n, last)
	return ""
}

var variantRE = regexp.MustCompile(`#EXT-X-STREAM-INF:[^\n]*RESOLUTION=(\d+)x(\d+)[^\n]*\n([^\n]+)`)

// TestHLSLadder publishes the three-layer H.264 simulcast test ladder with
// Opus from a pion peer and checks the LL-HLS output with ffprobe and
// ffmpeg: three video variants of the right sizes and Opus audio, each
// variant decodable, and segment N of every variant starting at the same
// decode time.
func TestHLSLadder(t *testing.T) {
	ffprobe, ffmpeg := needTool(t, "ffprobe"), needTool(t, "ffmpeg")
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	publishSimulcastAV(ctx, t, srv.URL()+"/whip/ladder")
	base := srv.URL() + "/hls/ladder/"
	master := waitVariants(t, base+"index.m3u8", 3)
	t.Logf("multivariant playlist:\n%s", master)
	for _, want := range []string{`CODECS="avc1.42c01f,opus"`, `#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio"`, "FRAME-RATE=30.000", "AVERAGE-BANDWIDTH="} {
		if !strings.Contains(master, want) {
			t.Errorf("multivariant playlist lacks %s", want)
		}
	}
	var sizes, uris []string
	for _, m := range variantRE.FindAllStringSubmatch(master, -1) {
		sizes = append(sizes, m[1]+"x"+m[2])
		uris = append(uris, m[3])
	}
	if want := []string{"1280x720", "640x360", "320x180"}; !slices.Equal(sizes, want) {
		t.Fatalf("variant resolutions %v, want %v (highest first)", sizes, want)
	}

	// ffprobe reads the multivariant playlist: every variant's video and the audio.
	out, err := exec.CommandContext(ctx, ffprobe, "-v", "error", "-show_entries", "stream=codec_name,width,height",
		"-of", "compact", base+"index.m3u8").CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v\n%s", err, out)
	}
	for _, want := range []string{"codec_name=h264|width=1280|height=720", "codec_name=h264|width=640|height=360",
		"codec_name=h264|width=320|height=180", "codec_name=opus"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("ffprobe did not see %s:\n%s", want, out)
		}
	}

	// ffmpeg decodes three seconds of each variant and of the audio without an error.
	for _, uri := range append(uris, "audio/index.m3u8") {
		cmd := exec.CommandContext(ctx, ffmpeg, "-v", "error", "-i", base+uri, "-t", "3", "-f", "null", "-", "-progress", "pipe:1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Errorf("ffmpeg %s: %v\n%s", uri, err, stderr.Bytes())
			continue
		}
		frames := lastProgress(out, "frame")
		t.Logf("%s: decoded %s frames, out_time %s", uri, frames, lastProgress(out, "out_time"))
		if uri != "audio/index.m3u8" {
			if n, _ := strconv.Atoi(frames); n < 60 {
				t.Errorf("%s: only %d frames decoded in 3 s", uri, n)
			}
		}
	}

	checkAlignment(t, base, uris)
}

func lastProgress(out []byte, key string) string {
	v := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if k, val, ok := strings.Cut(sc.Text(), "="); ok && k == key {
			v = val
		}
	}
	return v
}

var segLineRE = regexp.MustCompile(`(?m)^(\d+)\.m4s$`)

// checkAlignment fetches every complete segment the variants have in
// common and compares the decode time of their first samples: they must be
// equal within one frame (3000 ticks at 90 kHz, 30 fps), so a layer that
// cut one frame later than the others passes and one that cut two frames
// later fails. And the frames themselves must line up exactly: the test
// publisher sends frame i of every layer with RTP time i×3000, so the
// first decode times differ by whole frames. (Each layer's RTP clock is
// mapped through its own sender reports, which differ by a fraction of a
// millisecond; the packager aligns the layers' timelines, without which
// they would differ by a few ticks.)
func checkAlignment(t *testing.T, base string, uris []string) {
	t.Helper()
	segs := make([]map[string]bool, len(uris))
	for i, uri := range uris {
		_, _, body := httpGet(t, base+uri)
		segs[i] = map[string]bool{}
		for _, m := range segLineRE.FindAllStringSubmatch(string(body), -1) {
			segs[i][m[1]] = true
		}
	}
	checked := 0
	for msn := range segs[0] {
		if !segs[1][msn] || !segs[2][msn] {
			continue
		}
		var times []uint64
		for _, uri := range uris {
			dir := strings.TrimSuffix(uri, "index.m3u8")
			code, _, data := httpGet(t, base+dir+msn+".m4s")
			if code != 200 {
				t.Fatalf("segment %s%s.m4s: %d", dir, msn, code)
			}
			var parts fmp4.Parts
			if err := parts.Unmarshal(data); err != nil || len(parts) == 0 || len(parts[0].Tracks) == 0 {
				t.Fatalf("segment %s%s.m4s does not parse: %v", dir, msn, err)
			}
			times = append(times, parts[0].Tracks[0].BaseTime)
		}
		t.Logf("segment %s: first decode times %v", msn, times)
		lo, hi := slices.Min(times), slices.Max(times)
		if hi-lo > 3000 {
			t.Errorf("segment %s: first decode times %v differ by %d ticks, more than one frame", msn, times, hi-lo)
		}
		for _, tm := range times {
			if (tm-lo)%3000 != 0 {
				t.Errorf("segment %s: first decode times %v are not whole frames apart: the layers' timelines are not aligned", msn, times)
				break
			}
		}
		checked++
	}
	if checked < 2 {
		t.Errorf("only %d segments in common to compare", checked)
	}
	t.Logf("%d segments aligned across %d variants", checked, len(uris))
}
