package sfu

import (
	"cmp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

// LayerStats are what a Track measures of its media: what simulcast layer
// ranking and the API use. Layers are ranked by these, never by RID name.
type LayerStats struct {
	Width, Height int     // from the latest keyframe (H.264 SPS, VP8 key frame header); 0 if unknown
	Bitrate       int     // payload bits per second over the last measurement window
	FPS           float64 // frames per second over the last window
	Active        bool    // media arrived within InactiveAfter
}

// InactiveAfter is how long a track may go without media before it counts
// as inactive (a browser drops simulcast layers when its uplink shrinks).
const InactiveAfter = time.Second

// measureWindow is the length of the bitrate and frame-rate window.
const measureWindow = time.Second

// meter measures a track's bitrate, frame rate and picture size. It is
// written by the track's goroutine and read through atomics.
type meter struct {
	windowStart time.Time
	bytes       int
	frames      int
	lastTS      uint32
	haveTS      bool

	bitrate     atomic.Int64
	fps1000     atomic.Int64 // frames per 1000 s
	size        atomic.Uint64
	lastArrival atomic.Int64 // unix nanos
}

func (m *meter) observe(p *Packet, mime string) {
	now := p.Arrival
	m.lastArrival.Store(now.UnixNano())
	if m.windowStart.IsZero() {
		m.windowStart = now
	}
	m.bytes += len(p.Payload)
	if !m.haveTS || p.Timestamp != m.lastTS {
		m.frames++
		m.lastTS, m.haveTS = p.Timestamp, true
	}
	if el := now.Sub(m.windowStart); el >= measureWindow {
		m.bitrate.Store(int64(float64(m.bytes*8) / el.Seconds()))
		m.fps1000.Store(int64(float64(m.frames*1000) / el.Seconds()))
		m.windowStart, m.bytes, m.frames = now, 0, 0
	}
	if p.Keyframe {
		if w, h, ok := pictureSize(mime, p.Payload); ok {
			m.size.Store(uint64(w)<<32 | uint64(h))
		}
	}
}

func (m *meter) stats(now time.Time) LayerStats {
	size := m.size.Load()
	last := m.lastArrival.Load()
	return LayerStats{
		Width: int(size >> 32), Height: int(size & 0xffffffff),
		Bitrate: int(m.bitrate.Load()),
		FPS:     float64(m.fps1000.Load()) / 1000,
		Active:  last != 0 && now.Sub(time.Unix(0, last)) < InactiveAfter,
	}
}

// Layer returns the track's measured layer properties.
func (t *Track) Layer() LayerStats { return t.meter.stats(time.Now()) }

// pictureSize reads the picture size from the first packet of a keyframe.
func pictureSize(mime string, p []byte) (w, h int, ok bool) {
	switch {
	case strings.EqualFold(mime, MimeTypeH264):
		sps := findH264SPS(p)
		if sps == nil {
			return 0, 0, false
		}
		var s h264.SPS
		if err := s.Unmarshal(sps); err != nil {
			return 0, 0, false
		}
		return s.Width(), s.Height(), true
	case strings.EqualFold(mime, MimeTypeVP8):
		return vp8Size(p)
	}
	return 0, 0, false
}

// findH264SPS returns the SPS NAL unit in a single-NAL or STAP-A packet.
func findH264SPS(p []byte) []byte {
	if len(p) < 1 {
		return nil
	}
	switch p[0] & h264TypeMask {
	case h264NALSPS:
		return p
	case h264STAPA:
		for i := 1; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			i += 2
			if size == 0 || i+size > len(p) {
				return nil
			}
			if p[i]&h264TypeMask == h264NALSPS {
				return p[i : i+size]
			}
			i += size
		}
	}
	return nil
}

// vp8Size reads the key frame header (RFC 6386 §9.1): after the payload
// descriptor, a 3-byte frame tag, the start code 9d 01 2a, then 14-bit
// width and height.
func vp8Size(p []byte) (int, int, bool) {
	if len(p) < 1 {
		return 0, 0, false
	}
	i := 1
	if p[0]&0x80 != 0 {
		if len(p) <= i {
			return 0, 0, false
		}
		ext := p[i]
		i++
		if ext&0x80 != 0 {
			if len(p) <= i {
				return 0, 0, false
			}
			if p[i]&0x80 != 0 {
				i++
			}
			i++
		}
		if ext&0x40 != 0 {
			i++
		}
		if ext&0x30 != 0 {
			i++
		}
	}
	if len(p) < i+10 || p[i+3] != 0x9d || p[i+4] != 0x01 || p[i+5] != 0x2a {
		return 0, 0, false
	}
	w := int(p[i+6]) | int(p[i+7]&0x3f)<<8
	h := int(p[i+8]) | int(p[i+9]&0x3f)<<8
	return w, h, true
}

// RankLayers orders video tracks from the best to the least: active before
// inactive, then by picture area, then by bitrate. Names play no part:
// publishers order and name their layers in every way.
func RankLayers(tracks []*Track) []*Track {
	type ranked struct {
		t *Track
		l LayerStats
	}
	now := time.Now()
	rs := make([]ranked, 0, len(tracks))
	for _, t := range tracks {
		if t.info.Kind == KindVideo {
			rs = append(rs, ranked{t, t.meter.stats(now)})
		}
	}
	slices.SortStableFunc(rs, func(a, b ranked) int {
		if a.l.Active != b.l.Active {
			if a.l.Active {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(b.l.Width*b.l.Height, a.l.Width*a.l.Height); c != 0 {
			return c
		}
		return cmp.Compare(b.l.Bitrate, a.l.Bitrate)
	})
	out := make([]*Track, len(rs))
	for i, r := range rs {
		out[i] = r.t
	}
	return out
}
