package sfu

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"
)

// loadAccessUnits reads an Annex-B file of ../shared/media into access
// units (one per frame: the files carry SPS and PPS before every IDR).
func loadAccessUnits(t *testing.T, name string) [][]byte {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "shared", "media", name))
	if err != nil {
		t.Fatalf("test media: %v", err)
	}
	defer f.Close()
	r, err := h264reader.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var aus [][]byte
	var cur []byte
	for {
		nal, err := r.NextNAL()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		cur = append(cur, 0, 0, 0, 1)
		cur = append(cur, nal.Data...)
		if nal.UnitType == h264reader.NalUnitTypeCodedSliceIdr || nal.UnitType == h264reader.NalUnitTypeCodedSliceNonIdr {
			aus = append(aus, cur)
			cur = nil
		}
	}
	return aus
}

// feed sends frames through a track at 30 fps in synctest's fake time.
func feed(t *testing.T, tr *Track, pz rtp.Packetizer, aus [][]byte, n int) {
	t.Helper()
	for i := range n {
		for _, p := range pz.Packetize(aus[i%len(aus)], 3000) {
			if err := tr.WriteRTP(p); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Second / 30)
	}
}

func TestLayerMeasurementAndRanking(t *testing.T) {
	layers := map[string]struct {
		file           string
		w, h           int
		minBps, maxBps int
	}{
		"q": {"layer-q.h264", 320, 180, 100_000, 500_000},
		"f": {"layer-f.h264", 1280, 720, 1_500_000, 4_000_000},
		"h": {"layer-h.h264", 640, 360, 400_000, 1_500_000},
	}
	aus := map[string][][]byte{}
	for rid, l := range layers {
		aus[rid] = loadAccessUnits(t, l.file)
	}
	synctest.Test(t, func(t *testing.T) {
		var tracks []*Track
		pzs := map[*Track]rtp.Packetizer{}
		for _, rid := range []string{"q", "f", "h"} { // low, high, middle: order must not matter
			tr := NewTrack(TrackConfig{Info: TrackInfo{ID: "video-" + rid, RID: rid, Kind: KindVideo, MimeType: MimeTypeH264}})
			defer tr.Close()
			tracks = append(tracks, tr)
			pzs[tr] = rtp.NewPacketizer(1200, 102, 1, &codecs.H264Payloader{}, rtp.NewFixedSequencer(1), 90000)
		}
		done := make(chan struct{})
		for i, rid := range []string{"q", "f", "h"} {
			go func() { feed(t, tracks[i], pzs[tracks[i]], aus[rid], 75); done <- struct{}{} }()
		}
		for range 3 {
			<-done
		}
		for i, rid := range []string{"q", "f", "h"} {
			l, want := tracks[i].Layer(), layers[rid]
			if l.Width != want.w || l.Height != want.h || !l.Active || l.Bitrate < want.minBps || l.Bitrate > want.maxBps || l.FPS < 29 || l.FPS > 31 {
				t.Errorf("layer %s: %+v, want %dx%d, %d-%d bit/s, 30 fps, active", rid, l, want.w, want.h, want.minBps, want.maxBps)
			}
		}
		ranked := RankLayers(tracks)
		if ranked[0].Info().RID != "f" || ranked[1].Info().RID != "h" || ranked[2].Info().RID != "q" {
			t.Fatalf("ranking = %s %s %s, want f h q", ranked[0], ranked[1], ranked[2])
		}
		// The top layer stops (the browser dropped it): it goes last.
		go func() { feed(t, tracks[0], pzs[tracks[0]], aus["q"], 45); done <- struct{}{} }()
		go func() { feed(t, tracks[2], pzs[tracks[2]], aus["h"], 45); done <- struct{}{} }()
		<-done
		<-done
		if tracks[1].Layer().Active {
			t.Fatal("a layer without media for 1.5 s is still active")
		}
		ranked = RankLayers(tracks)
		if ranked[0].Info().RID != "h" || ranked[2].Info().RID != "f" {
			t.Fatalf("after f stopped: %s %s %s, want h q f", ranked[0], ranked[1], ranked[2])
		}
	})
}

func TestVP8Size(t *testing.T) {
	// Descriptor with X and a 15-bit picture ID, frame tag, start code, 640x360.
	p := []byte{0x90, 0x80, 0x81, 0x23, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01}
	if w, h, ok := vp8Size(p); !ok || w != 640 || h != 360 {
		t.Fatalf("vp8Size = %d %d %v", w, h, ok)
	}
}
