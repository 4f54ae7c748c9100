package hls

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./packager/... -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// ladder makes a playlist of n complete 1 s segments of five 200 ms parts
// from msn 1000, then the segment in progress with two parts.
func ladder(n int, disc map[int]bool) MediaPlaylist {
	m := MediaPlaylist{TargetDuration: 2, PartTarget: 200 * time.Millisecond, PartHoldBack: 600 * time.Millisecond,
		CanSkipUntil: 12 * time.Second}
	mapURI := "init-1000.mp4"
	for i := 0; i <= n; i++ {
		msn := uint64(1000 + i)
		if disc[i] {
			mapURI = fmt.Sprintf("init-%d.mp4", msn)
		}
		s := Segment{MSN: msn, URI: fmt.Sprintf("%d.m4s", msn), Start: t0.Add(time.Duration(i) * time.Second),
			Map: mapURI, Discontinuity: disc[i], Complete: i < n}
		parts := 5
		if i == n {
			parts = 2
		}
		for j := range parts {
			s.Parts = append(s.Parts, Part{URI: fmt.Sprintf("%d.%d.m4s", msn, j), Duration: 200 * time.Millisecond, Independent: j == 0})
			s.Duration += 200 * time.Millisecond
		}
		m.Segments = append(m.Segments, s)
	}
	m.PreloadHint = fmt.Sprintf("%d.2.m4s", 1000+n)
	m.Reports = []Report{{URI: "../video-h/index.m3u8", LastMSN: uint64(1000 + n), LastPart: 1}, {URI: "../audio/index.m3u8", LastMSN: uint64(1000 + n), LastPart: 1}}
	return m
}

func TestGoldenPlaylists(t *testing.T) {
	live := ladder(8, nil)
	golden(t, "media.m3u8", live.Render(false))

	// A delta update of a 20-segment window skips all but the last 12 s.
	long := ladder(20, nil)
	golden(t, "media_skip.m3u8", long.Render(true))

	// The publisher restarted at segment 1005: a discontinuity and a new
	// init segment; a delta update does not skip past it.
	restart := ladder(20, map[int]bool{5: true})
	restart.DiscontinuitySeq = 3
	golden(t, "media_discontinuity.m3u8", restart.Render(false))
	golden(t, "media_discontinuity_skip.m3u8", restart.Render(true))

	// This rendition stopped two segments before the others when the
	// publisher left: 1003 and 1004 are gaps before the restart at 1005.
	gap := ladder(8, map[int]bool{5: true})
	for i := 3; i <= 4; i++ {
		gap.Segments[i].Gap, gap.Segments[i].Parts = true, nil
	}
	golden(t, "media_gap.m3u8", gap.Render(false))

	golden(t, "multivariant.m3u8", Multivariant([]Variant{
		{URI: "video-f/index.m3u8", Bandwidth: 2600000, AverageBandwidth: 2500000, Codecs: "avc1.42e01f,opus", Width: 1280, Height: 720, FrameRate: 30},
		{URI: "video-h/index.m3u8", Bandwidth: 900000, AverageBandwidth: 850000, Codecs: "avc1.42e01f,opus", Width: 640, Height: 360, FrameRate: 30},
		{URI: "video-q/index.m3u8", Bandwidth: 320000, Codecs: "avc1.42e01f,opus", Width: 320, Height: 180, FrameRate: 15},
	}, &Audio{URI: "audio/index.m3u8", Channels: 2}))
}

func TestParseQuery(t *testing.T) {
	for _, c := range []struct {
		query string
		want  Request
		err   error
	}{
		{"", Request{MSN: -1, Part: -1}, nil},
		{"_HLS_msn=12", Request{MSN: 12, Part: -1}, nil},
		{"_HLS_msn=12&_HLS_part=3", Request{MSN: 12, Part: 3}, nil},
		{"_HLS_msn=12&_HLS_part=3&_HLS_skip=YES", Request{MSN: 12, Part: 3, Skip: true}, nil},
		{"_HLS_skip=v2", Request{MSN: -1, Part: -1, Skip: true}, nil},
		{"_HLS_part=3", Request{}, ErrPartWithoutMSN},
		{"_HLS_msn=-1", Request{}, ErrBadNumber},
		{"_HLS_msn=1e3", Request{}, ErrBadNumber},
		{"_HLS_msn=99999999999999999999", Request{}, ErrBadNumber},
		{"_HLS_msn=1&_HLS_part=x", Request{}, ErrBadNumber},
		{"_HLS_skip=yes", Request{}, ErrBadSkip},
		{"_HLS_msn=1&_HLS_msn=2", Request{}, ErrRepeated},
		{"other=1&_HLS_msn=5", Request{MSN: 5, Part: -1}, nil},
	} {
		q, _ := url.ParseQuery(c.query)
		got, err := ParseQuery(q)
		if !errors.Is(err, c.err) {
			t.Errorf("%q: error %v, want %v", c.query, err, c.err)
			continue
		}
		if err == nil && got != c.want {
			t.Errorf("%q: %+v, want %+v", c.query, got, c.want)
		}
	}
}

// FuzzParseQuery: any query either parses into a request with MSN and Part
// both set or both defaulted consistently, or fails with one of the
// documented errors.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "_HLS_msn=1&_HLS_part=2", "_HLS_skip=YES", "_HLS_part=1", "_HLS_msn=%00", "_HLS_msn=18446744073709551615"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		r, err := ParseQuery(q)
		if err != nil {
			if !errors.Is(err, ErrPartWithoutMSN) && !errors.Is(err, ErrBadNumber) && !errors.Is(err, ErrBadSkip) && !errors.Is(err, ErrRepeated) {
				t.Fatalf("undocumented error %v", err)
			}
			return
		}
		if r.Part >= 0 && r.MSN < 0 {
			t.Fatalf("part %d without msn", r.Part)
		}
	})
}
