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
	p := trackPipeline(t, pub, h264Track("video"), t0)

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
		p := trackPipeline(t, pub, h264Track(l.id), t0)
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

// TestPartPublishedWithItsLastFrame: a part is published as soon as its
// last frame is complete, not when the frame after it arrives, with the
// last frame interval as that frame's duration.
func TestPartPublishedWithItsLastFrame(t *testing.T) {
	q := loadLayer(t, "layer-q.h264")
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 500_000_000, time.UTC)
	pk := New(Config{Now: func() time.Time { return t0 }})
	s := pk.stream("early")
	pub := s.newPublication()
	defer pub.close()
	p := trackPipeline(t, pub, h264Track("video"), t0)
	parts := func() (n int, last *Part) {
		for _, seg := range p.rend.View().Segments {
			n += len(seg.Parts)
			if len(seg.Parts) > 0 {
				last = seg.Parts[len(seg.Parts)-1]
			}
		}
		return n, last
	}
	// Frame 30 (12:00:01.5) is the first keyframe after the first
	// boundary: the first part holds frames 30-35.
	ts, seq := feed(t, p, q, 0, 35, 0, 0)
	if n, _ := parts(); n != 0 {
		t.Fatalf("%d parts after frame 34, want 0", n)
	}
	ts, seq = feed(t, p, q, 35, 36, ts, seq)
	n, last := parts()
	if n != 1 || last.Duration != 200*time.Millisecond || !last.Independent {
		t.Fatalf("after frame 35: %d parts, last %+v; want one independent part of 200 ms", n, last)
	}
	_, _ = feed(t, p, q, 36, 42, ts, seq)
	if n, last := parts(); n != 2 || last.Duration != 200*time.Millisecond {
		t.Fatalf("after frame 41: %d parts, last %v; want two of 200 ms", n, last)
	}
}

// TestAudioStartsWithVideo: audio that begins before the video's first
// keyframe opens its first segment at the video's first boundary, not a
// segment earlier, so that every playlist of the publication starts at
// the same number (hls.js shifted an audio timeline that began before the
// main one by a segment at its first delta update); audio without video
// starts at once.
func TestAudioStartsWithVideo(t *testing.T) {
	q, opus := loadLayer(t, "layer-q.h264"), loadLayer(t, "audio.ogg")
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 500_000_000, time.UTC)
	for _, withVideo := range []bool{true, false} {
		pk := New(Config{Now: func() time.Time { return t0 }})
		s := pk.stream("av")
		pub := s.newPublication()
		ap := trackPipeline(t, pub, sfu.TrackInfo{ID: "audio", Kind: sfu.KindAudio, MimeType: "audio/opus", ClockRate: 48000, Channels: 2}, t0)
		var vp *pipeline
		if withVideo {
			pub.hasVideo = true // as publication.add does for a video track
			vp = trackPipeline(t, pub, h264Track("video"), t0)
		}
		// Audio (20 ms frames) from 12:00:00.5 for 3 s; video from
		// 12:00:01.2, after the first boundary, starting with a keyframe
		// (the clip's frame 0; the next is frame 30, at 12:00:02.2).
		var aseq uint64
		var ats uint32
		vts, vseq, vframe := uint32(63000), uint64(0), 0 // 0.7 s after t0 on the sender report's clock
		for ms := 0; ms < 3000; ms += 20 {
			f := opus.Frames[(ms/20)%len(opus.Frames)]
			pkt := &sfu.Packet{Packet: rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(aseq), Timestamp: ats, Marker: true}, Payload: f.Data}, Seq: aseq, Keyframe: true}
			if err := ap.WriteRTP(pkt); err != nil {
				t.Fatal(err)
			}
			aseq++
			ats += 960
			for ; withVideo && 700+vframe*100/3 <= ms; vframe++ {
				vts, vseq = feed(t, vp, q, vframe, vframe+1, vts, vseq)
			}
		}
		ap.flush()
		av := ap.rend.View()
		if len(av.Segments) == 0 {
			t.Fatalf("video %v: no audio segment", withVideo)
		}
		first := av.Segments[0].MSN
		if withVideo {
			vp.flush()
			vv := vp.rend.View()
			if len(vv.Segments) == 0 || vv.Segments[0].MSN != first {
				t.Errorf("audio starts at %d, video at %v: want the same number", first, vv.Segments)
			}
			if first != uint64(t0.Unix()+2) {
				t.Errorf("first segment %d, want %d (12:00:02, the boundary after the video began)", first, t0.Unix()+2)
			}
		} else if first != uint64(t0.Unix()+1) {
			t.Errorf("audio alone starts at %d, want %d (the first boundary)", first, t0.Unix()+1)
		}
		pub.close()
	}
}
