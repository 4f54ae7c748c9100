package packager

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/hybridcast/hybridcast/internal/client"
	"github.com/hybridcast/hybridcast/sfu"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// feed packetizes frames from..to of a clip into p with timestamps from ts
// on, 3000 ticks (1/30 s) apart; it returns the next timestamp and seq.
func feed(t *testing.T, p *pipeline, clip *client.Clip, from, to int, ts uint32, seq uint64) (uint32, uint64) {
	t.Helper()
	pz := rtp.NewPacketizer(1200, 102, 1, &codecs.H264Payloader{}, rtp.NewFixedSequencer(1), 90000)
	for i := from; i < to; i++ {
		for j, pkt := range pz.Packetize(clip.Frames[i%len(clip.Frames)].Data, 3000) {
			sp := &sfu.Packet{Packet: *pkt, Seq: seq, Keyframe: clip.Frames[i%len(clip.Frames)].Keyframe && j == 0}
			sp.Timestamp = ts
			seq++
			if err := p.WriteRTP(sp); err != nil {
				t.Fatal(err)
			}
		}
		ts += 3000
	}
	return ts, seq
}

// TestPackagerGolden runs the packager's pipeline on the 180p test layer
// and then, on the same track, the 360p layer from a keyframe (new SPS
// and PPS, as when an encoder changes resolution), with an
// injected clock and sender report, and compares the media playlist with a
// golden file: the first segment starts on the grid, segments are cut at
// the first keyframe after each boundary, parts are at most 200 ms, and
// the parameter-set change cuts a segment with a new init segment.
func TestPackagerGolden(t *testing.T) {
	q, h := loadLayer(t, "layer-q.h264"), loadLayer(t, "layer-h.h264")
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 500_000_000, time.UTC)
	pk := New(Config{Now: func() time.Time { return t0 }})
	s := pk.stream("golden")
	pub := s.newPublication()
	defer pub.close()
	track := sfu.NewTrack(sfu.TrackConfig{Info: sfu.TrackInfo{ID: "video", Kind: sfu.KindVideo, MimeType: "video/H264", ClockRate: 90000}})
	defer track.Close()
	track.SetSenderReport(sfu.SenderReport{NTPTime: toNTP(t0), RTPTime: 0, Arrival: t0})
	p := newPipeline(pub, s.rendition(track), track, true)

	ts, seq := feed(t, p, q, 0, 100, 0, 0) // 180p from 12:00:00.5 for 3.33 s
	_, _ = feed(t, p, h, 30, 150, ts, seq) // then 360p, from a keyframe (an encoder that changes resolution starts with one)
	p.flush()

	v := p.rend.View()
	got := s.MediaPlaylist(v, false)
	path := filepath.Join("testdata", "golden", "sps_change.m3u8")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./packager/ -update makes it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("playlist differs from %s:\n%s", path, got)
	}
	// What the golden file shows, said plainly so that a regenerated file
	// cannot hide a regression.
	if n := strings.Count(string(got), "#EXT-X-MAP"); n != 2 || len(v.Inits) != 2 {
		t.Errorf("%d maps, %d inits: want 2 (one per SPS)", n, len(v.Inits))
	}
	for _, seg := range v.Segments {
		for _, part := range seg.Parts {
			if part.Duration > 200*time.Millisecond {
				t.Errorf("segment %d has a part of %v", seg.MSN, part.Duration)
			}
		}
		if !seg.Parts[0].Independent {
			t.Errorf("segment %d does not start with a keyframe", seg.MSN)
		}
	}
	if v.Width != 640 || v.Height != 360 || v.Codecs != "avc1.42c01e" && v.Codecs != "avc1.42c01f" {
		t.Errorf("after the change the rendition is %dx%d %s, want 640x360 H.264", v.Width, v.Height, v.Codecs)
	}
	if first := v.Segments[0]; first.Start != t0.Truncate(time.Second).Add(1500*time.Millisecond) || first.MSN != uint64(t0.Unix()+1) {
		t.Errorf("first segment %d at %v, want %d at 12:00:01.5 (the first keyframe after the first boundary)", first.MSN, first.Start, t0.Unix()+1)
	}
}

// TestMultivariantOrder packages two layers whose names sort the other way
// round from their sizes (as Chromium's rids h, m, l do, or SSRC-named
// layers): the multivariant playlist still lists the larger picture first,
// the variant a client that reads the first one starts with.
func TestMultivariantOrder(t *testing.T) {
	small, large := loadLayer(t, "layer-q.h264"), loadLayer(t, "layer-h.h264")
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 500_000_000, time.UTC)
	now := t0
	pk := New(Config{Now: func() time.Time { return now }})
	s := pk.stream("order")
	pub := s.newPublication()
	defer pub.close()
	var rends []*Rendition
	for _, l := range []struct {
		id   string
		clip *client.Clip
	}{{"video-a", small}, {"video-b", large}} {
		track := sfu.NewTrack(sfu.TrackConfig{Info: sfu.TrackInfo{ID: l.id, Kind: sfu.KindVideo, MimeType: "video/H264", ClockRate: 90000}})
		defer track.Close()
		track.SetSenderReport(sfu.SenderReport{NTPTime: toNTP(t0), RTPTime: 0, Arrival: t0})
		p := newPipeline(pub, s.rendition(track), track, true)
		feed(t, p, l.clip, 0, 90, 0, 0)
		rends = append(rends, p.rend)
	}
	now = t0.Add(3 * time.Second)
	s.setLive(rends) // in name order, small first
	mv, ok := s.Multivariant()
	if !ok {
		t.Fatal("no multivariant playlist")
	}
	first, second := strings.Index(string(mv), "RESOLUTION=640x360"), strings.Index(string(mv), "RESOLUTION=320x180")
	if first < 0 || second < 0 || first > second {
		t.Errorf("want 640x360 listed before 320x180:\n%s", mv)
	}
}
