package client

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/vp9"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
)

// ErrEmptyClip is returned by the loaders when a file holds no frames.
var ErrEmptyClip = errors.New("client: media file holds no frames")

// DefaultH264FrameRate is the frame rate [LoadH264] assumes: an Annex-B
// file carries no timing of its own.
const DefaultH264FrameRate = 30

// Frame is one unit of media a publisher sends with one RTP timestamp.
type Frame struct {
	// Data is one H.264 access unit in Annex-B form (with start codes),
	// one VP8 frame or one Opus packet.
	Data []byte
	// Keyframe reports whether a decoder can start at this frame: an IDR
	// access unit (H.264) or a VP8 key frame. Every Opus packet is one.
	Keyframe bool
	// Duration is how long the frame lasts, in units of the clip's
	// ClockRate. The RTP timestamp of the next frame is this much later.
	Duration uint32
}

// Clip is a media file loaded fully into memory. A Clip is never modified
// after loading, so any number of publishers may share one.
type Clip struct {
	// MimeType is webrtc.MimeTypeH264, webrtc.MimeTypeVP8 or
	// webrtc.MimeTypeOpus.
	MimeType string
	// ClockRate is the RTP clock rate: 90000 for video, 48000 for Opus.
	ClockRate uint32
	// Frames are the frames in file order.
	Frames []Frame
	// Path is the file the clip was loaded from.
	Path string
}

// Duration returns how long one pass over the clip lasts.
func (c *Clip) Duration() time.Duration {
	var ticks uint64
	for _, f := range c.Frames {
		ticks += uint64(f.Duration)
	}
	return ticksToDuration(ticks, c.ClockRate)
}

// Keyframes returns the indexes of the frames that are keyframes.
func (c *Clip) Keyframes() []int {
	var idx []int
	for i, f := range c.Frames {
		if f.Keyframe {
			idx = append(idx, i)
		}
	}
	return idx
}

// IsVideo reports whether the clip holds video.
func (c *Clip) IsVideo() bool { return strings.HasPrefix(strings.ToLower(c.MimeType), "video/") }

func ticksToDuration(ticks uint64, clockRate uint32) time.Duration {
	if clockRate == 0 {
		return 0
	}
	sec := ticks / uint64(clockRate)
	rem := ticks % uint64(clockRate)
	return time.Duration(sec)*time.Second + time.Duration(rem*uint64(time.Second)/uint64(clockRate))
}

// LoadClip loads a media file chosen by its extension: .h264 or .264
// ([LoadH264]), .ogg or .opus ([LoadOpus]) and .ivf ([LoadIVF]).
func LoadClip(path string) (*Clip, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".h264", ".264":
		return LoadH264(path)
	case ".ogg", ".opus":
		return LoadOpus(path)
	case ".ivf":
		return LoadIVF(path)
	default:
		return nil, fmt.Errorf("client: load %s: unknown file extension (want .h264, .ogg or .ivf)", path)
	}
}

// LoadH264 loads an H.264 Annex-B file and splits it into access units
// (ITU-T H.264 §7.4.1.2.3: an access delimiter, SPS, PPS or SEI, or a slice
// with first_mb_in_slice equal to 0, after a slice starts a new access
// unit). Each frame lasts 1/[DefaultH264FrameRate] s. SEI NAL units are
// kept so that the stream is sent as encoded.
func LoadH264(path string) (*Clip, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("client: load h264: %w", err)
	}
	defer f.Close() // read-only: a close error loses nothing
	clip, err := readH264(bufio.NewReaderSize(f, 1<<16))
	if err != nil {
		return nil, fmt.Errorf("client: load h264 %s: %w", path, err)
	}
	clip.Path = path
	return clip, nil
}

func readH264(r io.Reader) (*Clip, error) {
	reader, err := h264reader.NewReaderWithOptions(r, h264reader.WithIncludeSEI(true))
	if err != nil {
		return nil, err
	}
	const ticks = 90000 / DefaultH264FrameRate
	clip := &Clip{MimeType: webrtc.MimeTypeH264, ClockRate: 90000}
	var (
		au       []byte
		hasSlice bool
		keyframe bool
	)
	flush := func() {
		if hasSlice {
			clip.Frames = append(clip.Frames, Frame{Data: au, Keyframe: keyframe, Duration: ticks})
		}
		au, hasSlice, keyframe = nil, false, false
	}
	for {
		nal, err := reader.NextNAL()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("nal %d of frame %d: %w", len(au), len(clip.Frames), err)
		}
		if len(nal.Data) == 0 {
			continue
		}
		typ := nal.Data[0] & 0x1f
		switch {
		case typ == naluAUD || typ == naluSPS || typ == naluPPS || typ == naluSEI || (typ >= 14 && typ <= 18):
			if hasSlice {
				flush()
			}
		case typ == naluSlice || typ == naluIDR:
			if hasSlice && firstMBIsZero(nal.Data) {
				flush()
			}
			hasSlice = true
			if typ == naluIDR {
				keyframe = true
			}
		}
		au = append(au, 0, 0, 0, 1)
		au = append(au, nal.Data...)
	}
	flush()
	if len(clip.Frames) == 0 {
		return nil, ErrEmptyClip
	}
	return clip, nil
}

// firstMBIsZero reports whether a slice NAL unit starts a picture: its
// slice header begins with first_mb_in_slice, ue(v), which is 0 exactly
// when the first bit is 1.
func firstMBIsZero(nal []byte) bool { return len(nal) > 1 && nal[1]&0x80 != 0 }

// LoadIVF loads a VP8, VP9 or AV1 IVF file. Frame durations come from the IVF time
// base converted to a 90 kHz clock.
func LoadIVF(path string) (*Clip, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("client: load ivf: %w", err)
	}
	defer f.Close() // read-only: a close error loses nothing
	clip, err := readIVF(bufio.NewReaderSize(f, 1<<16))
	if err != nil {
		return nil, fmt.Errorf("client: load ivf %s: %w", path, err)
	}
	clip.Path = path
	return clip, nil
}

func readIVF(r io.Reader) (*Clip, error) {
	reader, header, err := ivfreader.NewWith(r)
	if err != nil {
		return nil, err
	}
	mime := webrtc.MimeTypeVP8
	switch header.FourCC {
	case "VP80":
	case "VP90":
		mime = webrtc.MimeTypeVP9
	case "AV01":
		mime = webrtc.MimeTypeAV1
	default:
		return nil, fmt.Errorf("codec %q is not VP8, VP9 or AV1", header.FourCC)
	}
	if header.TimebaseDenominator == 0 || header.TimebaseNumerator == 0 {
		return nil, fmt.Errorf("invalid time base %d/%d", header.TimebaseNumerator, header.TimebaseDenominator)
	}
	clip := &Clip{MimeType: mime, ClockRate: 90000}
	var pts []uint64
	for {
		data, fh, err := reader.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("frame %d: %w", len(clip.Frames), err)
		}
		if len(data) == 0 {
			continue
		}
		// RFC 6386 §9.1: bit 0 of the frame tag is 0 for a key frame. VP9:
		// the uncompressed header's frame_type.
		key := data[0]&0x01 == 0
		switch mime {
		case webrtc.MimeTypeVP9:
			var h vp9.Header
			key = h.Unmarshal(data) == nil && !h.NonKeyFrame && !h.ShowExistingFrame
		case webrtc.MimeTypeAV1:
			// A temporal unit with a sequence header: encoders put one
			// before every keyframe.
			var bs av1.Bitstream
			key = bs.Unmarshal(data) == nil && av1.IsRandomAccess2(bs)
		}
		clip.Frames = append(clip.Frames, Frame{Data: data, Keyframe: key})
		// ivfreader reports pts*den/num, not the pts; undo that to get
		// the pts in time-base units of num/den seconds.
		pts = append(pts, fh.Timestamp*uint64(header.TimebaseNumerator)/uint64(header.TimebaseDenominator))
	}
	if len(clip.Frames) == 0 {
		return nil, ErrEmptyClip
	}
	toTicks := func(p uint64) uint64 {
		return p * 90000 * uint64(header.TimebaseNumerator) / uint64(header.TimebaseDenominator)
	}
	for i := range clip.Frames {
		var d uint64
		if i+1 < len(pts) && pts[i+1] > pts[i] {
			d = toTicks(pts[i+1]) - toTicks(pts[i])
		}
		if d == 0 || d > 90000 {
			d = 90000 / DefaultH264FrameRate
		}
		clip.Frames[i].Duration = uint32(d)
	}
	return clip, nil
}

// LoadOpus loads an Ogg Opus file (RFC 7845). pion's oggreader returns whole
// pages, and encoders such as ffmpeg put up to a second of packets in one
// page, so packets are split here by the page's lacing values; the
// identification header is checked with oggreader.ParseOpusHead. Each
// packet's duration comes from its TOC byte (RFC 6716 §3.1).
func LoadOpus(path string) (*Clip, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("client: load opus: %w", err)
	}
	clip, err := parseOggOpus(data)
	if err != nil {
		return nil, fmt.Errorf("client: load opus %s: %w", path, err)
	}
	clip.Path = path
	return clip, nil
}

// oggPageHeaderLen is the fixed part of an Ogg page header (RFC 3533 §6).
const oggPageHeaderLen = 27

func parseOggOpus(data []byte) (*Clip, error) {
	clip := &Clip{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000}
	var (
		packets [][]byte
		partial []byte
		serial  uint32
		page    int
	)
	for off := 0; off < len(data); page++ {
		if len(data)-off < oggPageHeaderLen || !bytes.Equal(data[off:off+4], []byte("OggS")) {
			return nil, fmt.Errorf("page %d at offset %d: no Ogg page header", page, off)
		}
		h := data[off : off+oggPageHeaderLen]
		pageSerial := binary.LittleEndian.Uint32(h[14:18])
		if page == 0 {
			serial = pageSerial
		}
		nseg := int(h[26])
		if len(data)-off < oggPageHeaderLen+nseg {
			return nil, fmt.Errorf("page %d at offset %d: truncated segment table", page, off)
		}
		lacing := data[off+oggPageHeaderLen : off+oggPageHeaderLen+nseg]
		body := off + oggPageHeaderLen + nseg
		pos := body
		for _, l := range lacing {
			if pos+int(l) > len(data) {
				return nil, fmt.Errorf("page %d at offset %d: truncated payload", page, off)
			}
			if pageSerial == serial {
				partial = append(partial, data[pos:pos+int(l)]...)
			}
			pos += int(l)
			if l < 255 && pageSerial == serial {
				packets = append(packets, partial)
				partial = nil
			}
		}
		off = pos
	}
	if len(packets) < 2 {
		return nil, fmt.Errorf("no Opus headers")
	}
	// The input sample rate in OpusHead is informational (RFC 7845 §5.1):
	// Opus over RTP always uses a 48 kHz clock (RFC 7587 §4.1).
	if _, err := oggreader.ParseOpusHead(packets[0]); err != nil {
		return nil, fmt.Errorf("opus head: %w", err)
	}
	// packets[1] is OpusTags.
	for i, p := range packets[2:] {
		d := opusPacketDuration(p)
		if d == 0 {
			return nil, fmt.Errorf("packet %d: invalid TOC", i)
		}
		clip.Frames = append(clip.Frames, Frame{Data: p, Keyframe: true, Duration: d})
	}
	if len(clip.Frames) == 0 {
		return nil, ErrEmptyClip
	}
	return clip, nil
}

// opusPacketDuration returns the duration of an Opus packet in 48 kHz
// samples from its TOC byte (RFC 6716 §3.1), or 0 if the packet is invalid.
func opusPacketDuration(p []byte) uint32 {
	if len(p) == 0 {
		return 0
	}
	config := p[0] >> 3
	var frame uint32 // in 1/48000 s
	switch {
	case config < 12: // SILK: 10, 20, 40, 60 ms
		frame = []uint32{480, 960, 1920, 2880}[config%4]
	case config < 16: // Hybrid: 10, 20 ms
		frame = []uint32{480, 960}[config%2]
	default: // CELT: 2.5, 5, 10, 20 ms
		frame = []uint32{120, 240, 480, 960}[config%4]
	}
	var count uint32
	switch p[0] & 0x03 {
	case 0:
		count = 1
	case 1, 2:
		count = 2
	default:
		if len(p) < 2 {
			return 0
		}
		count = uint32(p[1] & 0x3f)
	}
	d := frame * count
	if d == 0 || d > 5760 { // RFC 6716 §3.2.5: at most 120 ms
		return 0
	}
	return d
}
