package client

import (
	"bytes"
	"encoding/hex"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// spsCases are SPS units made with ffmpeg 5.1/libx264 (-x264-params
// cqm=jvt so that scaling lists are present) and the size they code.
var spsCases = []struct {
	name          string
	hex           string
	profile       uint8
	width, height int
}{
	{"high 1080p cropped, scaling lists", "67640028acd940780227e5c044000003000400000300f03c60c658", 100, 1920, 1080},
	{"high422 odd size", "677a000dbcd941519e222f0110000003001000000303c0f1429960", 122, 322, 182},
	{"high444 odd size", "67f4000b919b2869fcf1f80880000003008000001e078a14cb", 244, 202, 98},
	{"high 720p", "6764001facd9405005bb0110000003001000000303c0f1831960", 100, 1280, 720},
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseSPS(t *testing.T) {
	for _, tc := range spsCases {
		t.Run(tc.name, func(t *testing.T) {
			info, err := ParseSPS(mustHex(t, tc.hex))
			if err != nil {
				t.Fatal(err)
			}
			if info.Width != tc.width || info.Height != tc.height || info.ProfileIDC != tc.profile {
				t.Fatalf("got %+v, want profile %d %dx%d", info, tc.profile, tc.width, tc.height)
			}
		})
	}
}

func TestParseSPSLayers(t *testing.T) {
	dir := mediaDir(t)
	for _, tc := range h264Layers {
		clip, err := LoadH264(filepath.Join(dir, tc.file))
		if err != nil {
			t.Fatal(err)
		}
		info, err := ParseSPS(splitAnnexB(clip.Frames[0].Data)[0])
		if err != nil {
			t.Fatal(err)
		}
		if info.Width != tc.width || info.Height != tc.height {
			t.Errorf("%s: %dx%d, want %dx%d", tc.file, info.Width, info.Height, tc.width, tc.height)
		}
	}
}

func TestParseSPSErrors(t *testing.T) {
	good := mustHex(t, spsCases[0].hex)
	for name, b := range map[string][]byte{
		"empty":     nil,
		"short":     {0x67, 0x42},
		"not sps":   append([]byte{0x68}, good[1:]...),
		"truncated": good[:8],
		"all ones":  bytes.Repeat([]byte{0xff}, 4),
		"all zeros": append([]byte{0x67, 0x42, 0, 0x1f}, make([]byte, 16)...),
	} {
		if _, err := ParseSPS(b); !errors.Is(err, ErrInvalidSPS) {
			t.Errorf("%s: got %v, want ErrInvalidSPS", name, err)
		}
	}
}

func FuzzParseSPS(f *testing.F) {
	for _, tc := range spsCases {
		f.Add(mustHex(f, tc.hex))
	}
	f.Add([]byte{0x67, 0x42, 0xc0, 0x1f, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := ParseSPS(b)
		if err == nil && (info.Width <= 0 || info.Height <= 0 || info.Width > 1<<16 || info.Height > 1<<16) {
			t.Fatalf("accepted size %dx%d", info.Width, info.Height)
		}
	})
}

// h264PacketCases are payloads with the classification they must get.
var h264PacketCases = []struct {
	name    string
	payload []byte
	want    h264Packet
	err     bool
}{
	{"idr single", []byte{0x65, 0x88, 0x80}, h264Packet{typ: 5, auStart: true, keyStart: true, hasIDR: true}, false},
	{"p slice first mb", []byte{0x41, 0x9a, 0x00}, h264Packet{typ: 1, auStart: true}, false},
	{"p slice second slice", []byte{0x41, 0x1a, 0x00}, h264Packet{typ: 1}, false},
	{"sps single", []byte{0x67, 0x42, 0xc0, 0x1f}, h264Packet{typ: 7, auStart: true, keyStart: true}, false},
	{"stap-a sps pps", []byte{0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce}, h264Packet{typ: 24, auStart: true, keyStart: true}, false},
	{"stap-a aud idr", []byte{0x78, 0, 2, 0x09, 0xf0, 0, 2, 0x65, 0x88}, h264Packet{typ: 24, auStart: true, keyStart: true, hasIDR: true}, false},
	{"fu-a idr start", []byte{0x7c, 0x85, 0x88, 0x80}, h264Packet{typ: 28, fuStart: true, auStart: true, keyStart: true, hasIDR: true}, false},
	{"fu-a idr middle", []byte{0x7c, 0x05, 0x11}, h264Packet{typ: 28, hasIDR: true}, false},
	{"fu-a p end", []byte{0x5c, 0x41, 0x11}, h264Packet{typ: 28, fuEnd: true}, false},
	{"stap-a truncated", []byte{0x78, 0, 5, 0x67}, h264Packet{typ: 24}, true},
	{"stap-a zero size", []byte{0x78, 0, 0}, h264Packet{typ: 24}, true},
	{"stap-a empty", []byte{0x78}, h264Packet{typ: 24}, true},
	{"fu-a short", []byte{0x7c, 0x85}, h264Packet{typ: 28}, true},
	{"fu-b", []byte{0x7d, 0x85, 0, 0, 0}, h264Packet{typ: 29}, true},
	{"stap-b", []byte{0x79, 0, 0}, h264Packet{typ: 25}, true},
	{"reserved 0", []byte{0x00, 1}, h264Packet{typ: 0}, true},
	{"reserved 31", []byte{0x1f, 1}, h264Packet{typ: 31}, true},
	{"empty", nil, h264Packet{}, true},
}

func TestClassifyH264(t *testing.T) {
	for _, tc := range h264PacketCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := classifyH264(tc.payload)
			if (err != nil) != tc.err {
				t.Fatalf("error %v, want error %v", err, tc.err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestDepacketizeRoundTrip packetizes every access unit of a layer with
// pion's payloader (STAP-A for SPS+PPS, FU-A for large slices) and checks
// that the depacketizer gives the same Annex-B bytes back.
func TestDepacketizeRoundTrip(t *testing.T) {
	clip, err := LoadH264(filepath.Join(mediaDir(t), "layer-h.h264"))
	if err != nil {
		t.Fatal(err)
	}
	pay := &codecs.H264Payloader{}
	var d h264Depacketizer
	var sawSTAPA, sawFUA bool
	for i, f := range clip.Frames {
		d.reset()
		payloads := pay.Payload(DefaultMTU, f.Data)
		for j, p := range payloads {
			info, err := classifyH264(p)
			if err != nil {
				t.Fatalf("frame %d packet %d: %v", i, j, err)
			}
			if j == 0 && (!info.auStart || info.keyStart != f.Keyframe) {
				t.Fatalf("frame %d first packet: %+v, keyframe %v", i, info, f.Keyframe)
			}
			sawSTAPA = sawSTAPA || info.typ == naluSTAPA
			sawFUA = sawFUA || info.typ == naluFUA
			if err := d.push(p); err != nil {
				t.Fatalf("frame %d packet %d: %v", i, j, err)
			}
		}
		if !d.complete() || d.hasIDR != f.Keyframe {
			t.Fatalf("frame %d: complete %v idr %v", i, d.complete(), d.hasIDR)
		}
		if !bytes.Equal(stripSEI(d.au), stripSEI(f.Data)) {
			t.Fatalf("frame %d: depacketized access unit differs", i)
		}
	}
	if !sawSTAPA || !sawFUA {
		t.Fatalf("STAP-A seen %v, FU-A seen %v", sawSTAPA, sawFUA)
	}
}

// stripSEI drops the NAL units pion's payloader does not send (AUD and
// filler) so that access units compare equal.
func stripSEI(au []byte) []byte {
	var out []byte
	for _, n := range splitAnnexB(au) {
		if t := n[0] & 0x1f; t == naluAUD || t == 12 {
			continue
		}
		out = append(out, 0, 0, 0, 1)
		out = append(out, n...)
	}
	return out
}

func FuzzH264Depacketize(f *testing.F) {
	for _, tc := range h264PacketCases {
		f.Add(tc.payload, []byte{0x7c, 0x45, 0x00})
	}
	f.Add([]byte{0x7c, 0x85, 1, 2, 3}, []byte{0x7c, 0x45, 4, 5})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		for _, p := range [][]byte{a, b} {
			info, err := classifyH264(p)
			if err == nil && info.hasIDR && !info.keyStart && info.typ != naluFUA {
				t.Fatalf("IDR outside FU-A without keyStart: %+v", info)
			}
		}
		var d h264Depacketizer
		_ = d.push(a)
		_ = d.push(b)
		// Every NAL unit offset points inside the access unit, after a
		// start code.
		for _, off := range d.nals {
			if off < 4 || off > len(d.au) || !bytes.Equal(d.au[off-4:off], []byte{0, 0, 0, 1}) {
				t.Fatalf("bad NAL offset %d in %d bytes", off, len(d.au))
			}
		}
		if len(d.au) > len(a)+len(b)+8*(len(a)+len(b)) {
			t.Fatalf("access unit of %d bytes from %d input bytes", len(d.au), len(a)+len(b))
		}
	})
}

// analyzerPackets packetizes frames of a clip into RTP packets with
// consecutive sequence numbers.
func analyzerPackets(t *testing.T, clip *Clip, frames int) [][]*rtp.Packet {
	t.Helper()
	pay := &codecs.H264Payloader{}
	var seq uint16 = 65000 // wraps during the test
	var ts uint32 = 1 << 31
	var out [][]*rtp.Packet
	for i := range frames {
		f := clip.Frames[i%len(clip.Frames)]
		var pkts []*rtp.Packet
		payloads := pay.Payload(DefaultMTU, f.Data)
		for j, p := range payloads {
			pkts = append(pkts, &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Marker: j == len(payloads)-1}, Payload: p})
			seq++
		}
		ts += f.Duration
		out = append(out, pkts)
	}
	return out
}

func TestVideoAnalyzer(t *testing.T) {
	clip, err := LoadH264(filepath.Join(mediaDir(t), "layer-q.h264"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(0, 0)
	feed := func(a *videoAnalyzer, frames [][]*rtp.Packet, drop func(frame, pkt int) bool) []VideoFrame {
		var evs []VideoFrame
		for i, pkts := range frames {
			for j, p := range pkts {
				if drop != nil && drop(i, j) {
					continue
				}
				evs = append(evs, a.push(p, now)...)
			}
		}
		return evs
	}
	t.Run("clean", func(t *testing.T) {
		var rec bytes.Buffer
		a := newVideoAnalyzer("video/H264", &rec)
		evs := feed(a, analyzerPackets(t, clip, 60), nil)
		s := a.snapshot()
		if s.Frames != 60 || s.CompleteFrames != 60 || s.DecodableFrames != 60 || s.Keyframes != 2 || s.Lost != 0 {
			t.Fatalf("stats %+v", s)
		}
		if !s.FirstPacketKeyframe || s.Width != 320 || s.Height != 180 || s.FirstWidth != 320 {
			t.Fatalf("stats %+v", s)
		}
		if len(evs) != 60 || !evs[0].Keyframe || evs[0].Fingerprint == 0 {
			t.Fatalf("events %d, first %+v", len(evs), evs[0])
		}
		if rec.Len() == 0 {
			t.Fatal("nothing recorded")
		}
		if a.needKeyframe() {
			t.Fatal("clean stream asks for a keyframe")
		}
	})
	t.Run("start mid gop", func(t *testing.T) {
		a := newVideoAnalyzer("video/H264", nil)
		frames := analyzerPackets(t, clip, 60)
		feed(a, frames[5:6], nil)
		if !a.needKeyframe() {
			t.Fatal("joined mid-GOP without asking for a keyframe")
		}
		feed(a, frames[6:], nil)
		s := a.snapshot()
		if s.FirstPacketKeyframe || s.Frames != 55 || s.CompleteFrames != 55 || s.DecodableFrames != 30 {
			t.Fatalf("stats %+v", s)
		}
	})
	t.Run("loss inside a frame", func(t *testing.T) {
		a := newVideoAnalyzer("video/H264", nil)
		frames := analyzerPackets(t, clip, 60)
		if len(frames[3]) < 2 {
			t.Skip("frame 3 has one packet")
		}
		feed(a, frames, func(i, j int) bool { return i == 3 && j == 1 })
		s := a.snapshot()
		// Frame 3 is incomplete; 4..29 are complete but not decodable.
		if s.Lost != 1 || s.IncompleteFrames != 1 || s.CompleteFrames != 59 || s.DecodableFrames != 3+30 {
			t.Fatalf("stats %+v", s)
		}
	})
	t.Run("whole frame lost", func(t *testing.T) {
		a := newVideoAnalyzer("video/H264", nil)
		frames := analyzerPackets(t, clip, 60)
		feed(a, frames, func(i, _ int) bool { return i == 10 })
		s := a.snapshot()
		if s.Lost != uint64(len(frames[10])) || s.Frames != 59 || s.IncompleteFrames != 0 || s.DecodableFrames != 10+30 {
			t.Fatalf("stats %+v", s)
		}
	})
	t.Run("marker lost", func(t *testing.T) {
		a := newVideoAnalyzer("video/H264", nil)
		frames := analyzerPackets(t, clip, 60)
		// Frame 30 is a keyframe of several packets (STAP-A, then the IDR).
		last := len(frames[30]) - 1
		evs := feed(a, frames, func(i, j int) bool { return i == 30 && j == last })
		s := a.snapshot()
		if s.IncompleteFrames != 1 || s.Frames != 60 || s.DecodableFrames != 30 || evs[30].Complete || evs[30].Fingerprint != 0 {
			t.Fatalf("stats %+v, frame 30 %+v", s, evs[30])
		}
	})
	t.Run("duplicates and reordering", func(t *testing.T) {
		a := newVideoAnalyzer("video/H264", nil)
		frames := analyzerPackets(t, clip, 3)
		for _, pkts := range frames {
			for _, p := range pkts {
				a.push(p, now)
				a.push(p, now)
			}
		}
		s := a.snapshot()
		if s.Late != s.Packets || s.CompleteFrames != 3 {
			t.Fatalf("stats %+v", s)
		}
	})
}
