package packager

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestRenditionGapAtRestart: a restarted publisher's first segment number
// is the stream's next one, which a rendition that stopped early has not
// reached. A few missing numbers become gap segments and the window goes
// on; a longer hole, or a jump within a publication, restarts the window.
func TestRenditionGapAtRestart(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	write := func(r *Rendition, msn uint64, disc bool) {
		t.Helper()
		init := "init-100.mp4"
		if disc {
			init = "init-x.mp4"
		}
		seg := &Segment{MSN: msn, Start: t0.Add(time.Duration(msn-100) * time.Second), Discontinuity: disc}
		if err := r.openSegment(seg, init, []byte("init"), time.Second); err != nil {
			t.Fatal(err)
		}
		r.addPart(&Part{Duration: time.Second, Independent: true, Data: []byte("media")}, 30, t0)
		r.closeSegment()
	}
	msns := func(v *View) string {
		var s []string
		for _, seg := range v.Segments {
			if seg.Gap {
				s = append(s, fmt.Sprintf("gap:%d", seg.MSN))
			} else {
				s = append(s, fmt.Sprint(seg.MSN))
			}
		}
		return strings.Join(s, " ")
	}
	for _, c := range []struct {
		name  string
		next  uint64
		disc  bool
		want  string
		first uint64
	}{
		{"two numbers missing at a restart", 104, true, "100 101 gap:102 gap:103 104", 100},
		{"none missing", 102, true, "100 101 102", 100},
		{"more than maxGap missing", 102 + maxGap + 1, true, fmt.Sprint(102 + maxGap + 1), 102 + maxGap + 1},
		{"a jump within a publication", 104, false, "104", 104},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRendition("video-q", true, time.Minute)
			write(r, 100, false)
			write(r, 101, false)
			write(r, c.next, c.disc)
			v := r.View()
			if got := msns(v); got != c.want {
				t.Errorf("window %s, want %s", got, c.want)
			}
			if v.Segments[0].MSN != c.first {
				t.Errorf("window starts at %d, want %d", v.Segments[0].MSN, c.first)
			}
			for _, seg := range v.Segments {
				if seg.Gap && (seg.Duration != time.Second || seg.Init != "init-100.mp4" || !seg.Complete ||
					!seg.Start.Equal(t0.Add(time.Duration(seg.MSN-100)*time.Second))) {
					t.Errorf("gap %d: duration %v, init %s, complete %v, start %v", seg.MSN, seg.Duration, seg.Init, seg.Complete, seg.Start)
				}
			}
			if _, avg, _ := v.Bandwidth(); avg != 5*8 {
				t.Errorf("average bandwidth %d bit/s, want 40: gaps carry no media and do not count", avg)
			}
		})
	}
}

// TestPreloadHintAtBoundary: an open segment whose parts reach the grid
// boundary (its last part went out with its last frame, the boundary's
// keyframe has not come yet) hints the next segment's first part, not a
// part of its own that will never exist; before that, its own next part.
func TestPreloadHintAtBoundary(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	hint := func(start time.Duration, parts ...time.Duration) string {
		t.Helper()
		pk := New(Config{Now: func() time.Time { return t0 }})
		s := pk.stream("hint")
		r := newRendition("video", true, time.Minute)
		r.setLive(true)
		if err := r.openSegment(&Segment{MSN: 100, Start: t0.Add(start)}, "init-100.mp4", []byte("init"), time.Second); err != nil {
			t.Fatal(err)
		}
		for i, d := range parts {
			r.addPart(&Part{Duration: d, Independent: i == 0, Data: []byte("media")}, 6, t0)
		}
		m := preloadRe.FindStringSubmatch(string(s.MediaPlaylist(r.View(), false)))
		if m == nil {
			t.Fatal("no preload hint")
		}
		return m[1]
	}
	p := 200 * time.Millisecond
	for _, c := range []struct {
		name  string
		start time.Duration
		parts []time.Duration
		want  string
	}{
		{"four parts of five", 0, []time.Duration{p, p, p, p}, "100.4"},
		{"five parts: the boundary", 0, []time.Duration{p, p, p, p, p}, "101.0"},
		{"five parts, the last frame 3 ms short", 10 * time.Millisecond, []time.Duration{p, p, p, p, p - 13*time.Millisecond}, "101.0"},
		{"a late start: a short part still to come", 500 * time.Millisecond, []time.Duration{p, p}, "100.2"},
	} {
		if got := hint(c.start, c.parts...); got != c.want {
			t.Errorf("%s: hint %s, want %s", c.name, got, c.want)
		}
	}
}

var preloadRe = regexp.MustCompile(`#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(\d+\.\d+)\.m4s"`)
