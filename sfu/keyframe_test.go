package sfu

import "testing"

// Each case was checked by hand against the RFC named in keyframe.go.
var keyframeCases = []struct {
	name, mime string
	payload    []byte
	want       bool
}{
	{"h264 single SPS", MimeTypeH264, []byte{0x67, 0x42}, true},
	{"h264 single IDR", MimeTypeH264, []byte{0x65, 0x88}, true},
	{"h264 single P slice", MimeTypeH264, []byte{0x41, 0x9a}, false},
	{"h264 STAP-A SPS+PPS", MimeTypeH264, []byte{0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce}, true},
	{"h264 STAP-A SEI+P", MimeTypeH264, []byte{0x78, 0, 2, 0x06, 0x05, 0, 2, 0x41, 0x9a}, false},
	{"h264 STAP-A truncated size", MimeTypeH264, []byte{0x78, 0, 9, 0x67}, false},
	{"h264 FU-A IDR start", MimeTypeH264, []byte{0x7c, 0x85, 0x88}, true},
	{"h264 FU-A IDR middle", MimeTypeH264, []byte{0x7c, 0x05, 0x88}, false},
	{"h264 FU-A P start", MimeTypeH264, []byte{0x5c, 0x81, 0x9a}, false},
	{"h264 FU-A header only", MimeTypeH264, []byte{0x7c}, false},
	{"h264 empty", MimeTypeH264, nil, false},
	// VP8: descriptor S=1 PID=0, then payload header with P=0 (key frame).
	{"vp8 key, no extension", MimeTypeVP8, []byte{0x10, 0x00}, true},
	{"vp8 inter, no extension", MimeTypeVP8, []byte{0x10, 0x01}, false},
	{"vp8 key, 15-bit picture id", MimeTypeVP8, []byte{0x90, 0x80, 0x81, 0x23, 0x00}, true},
	{"vp8 key, picture id + tl0picidx + tid", MimeTypeVP8, []byte{0x90, 0xe0, 0x05, 0x07, 0x20, 0x00}, true},
	{"vp8 not start of partition", MimeTypeVP8, []byte{0x00, 0x00}, false},
	{"vp8 truncated extension", MimeTypeVP8, []byte{0x90, 0x80}, false},
	// VP9: B=1, P=0.
	{"vp9 key begin", MimeTypeVP9, []byte{0x08}, true},
	{"vp9 inter begin", MimeTypeVP9, []byte{0x48}, false},
	{"vp9 key not begin", MimeTypeVP9, []byte{0x00}, false},
	{"vp9 key spatial layer 1", MimeTypeVP9, []byte{0xa8, 0x01, 0x02}, false},
	{"vp9 key spatial layer 0", MimeTypeVP9, []byte{0xa8, 0x01, 0x00}, true},
	// AV1: N bit of the aggregation header.
	{"av1 new sequence", MimeTypeAV1, []byte{0x08}, true},
	{"av1 continuation", MimeTypeAV1, []byte{0x10}, false},
	// H.265: NAL type in bits 1-6 of the first byte.
	{"h265 VPS", MimeTypeH265, []byte{32 << 1, 1}, true},
	{"h265 IDR_W_RADL", MimeTypeH265, []byte{19 << 1, 1}, true},
	{"h265 TRAIL_R", MimeTypeH265, []byte{1 << 1, 1}, false},
	{"h265 FU IDR start", MimeTypeH265, []byte{49 << 1, 1, 0x80 | 19}, true},
	{"h265 AP with SPS", MimeTypeH265, []byte{48 << 1, 1, 0, 2, 33 << 1, 1}, true},
	{"opus is never a keyframe", MimeTypeOpus, []byte{0x78}, false},
}

func TestIsKeyframe(t *testing.T) {
	for _, c := range keyframeCases {
		if got := IsKeyframe(c.mime, c.payload); got != c.want {
			t.Errorf("%s: IsKeyframe = %v, want %v", c.name, got, c.want)
		}
	}
}

func FuzzIsKeyframe(f *testing.F) {
	for _, c := range keyframeCases {
		f.Add(c.mime, c.payload)
	}
	f.Fuzz(func(t *testing.T, mime string, payload []byte) {
		_ = IsKeyframe(mime, payload) // must not panic or read out of bounds
	})
}

// FuzzTrackWrite feeds arbitrary bytes to a track as if a publisher sent
// them: no panic, and every pooled packet is released exactly once.
func FuzzTrackWrite(f *testing.F) {
	good := videoPacket(7, 90000, payloadSPS)
	raw, _ := good.Marshal()
	f.Add(raw)
	f.Add([]byte{0x80, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1})          // header only: padding-like, empty payload
	f.Add([]byte{0xa0, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 4}) // padding bit with a bad padding size
	f.Add([]byte{0x90, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xbe, 0xde, 0, 9})
	f.Fuzz(func(t *testing.T, data []byte) {
		tr := NewTrack(TrackConfig{Info: TrackInfo{ID: "video", Kind: KindVideo, MimeType: MimeTypeH264}, HistorySize: 4})
		c := newCollector()
		unsub, _ := tr.Subscribe(c, WithoutKeyframeStart())
		for range 3 { // the same bytes again are duplicates or reordering
			_ = tr.Write(data)
		}
		unsub()
		tr.Close()
		if n := tr.pool.errors.Load(); n != 0 {
			t.Fatalf("%d double releases", n)
		}
	})
}
