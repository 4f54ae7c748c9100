package client

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// VideoStats describes the video a viewer has received so far.
type VideoStats struct {
	// MimeType is the negotiated codec, e.g. "video/H264".
	MimeType string
	// Packets and Bytes count every RTP packet accepted (not Late),
	// padding included.
	Packets, Bytes uint64
	// PaddingPackets counts packets with an empty payload (bandwidth
	// probes); they take part in loss detection only.
	PaddingPackets uint64
	// Lost counts packets missing from the sequence number space.
	Lost uint64
	// Late counts duplicate or out-of-order packets, which are dropped
	// (a packet counted as lost that arrives later, e.g. after a NACK, is
	// counted here).
	Late uint64
	// Repaired counts the packets that came on the RTX stream (RFC 4588)
	// and were unwrapped into this one (PlayConfig.RTX); they are also
	// counted as Late or as Packets.
	Repaired uint64
	// MalformedPackets counts payloads that do not parse as
	// packetization-mode 1 H.264 (or VP8).
	MalformedPackets uint64
	// Frames counts access units (frames), split by RTP timestamp and
	// marker bit: CompleteFrames had no missing packet and no
	// depacketization error, IncompleteFrames did.
	Frames, CompleteFrames, IncompleteFrames uint64
	// DecodableFrames counts complete frames whose reference chain is
	// intact: every frame since the last complete keyframe was complete
	// and no packet was lost in between.
	DecodableFrames uint64
	// Keyframes counts frames holding an IDR slice (H.264) or VP8 key
	// frames, complete or not.
	Keyframes uint64
	// FirstPacketKeyframe reports whether the first non-padding packet
	// received started a keyframe: it held an SPS or the start of an IDR
	// slice (also inside STAP-A, or an FU-A with the S bit).
	FirstPacketKeyframe bool
	// FirstPacketAt is when the first packet arrived; FirstKeyframeAt is
	// when the first complete keyframe was completed; LastPacketAt is when
	// the latest packet arrived.
	FirstPacketAt, FirstKeyframeAt, LastPacketAt time.Time
	// FirstWidth and FirstHeight come from the first SPS received; Width
	// and Height from the latest one (they change on a layer switch).
	FirstWidth, FirstHeight, Width, Height int
	// PLIsSent counts keyframe requests the viewer sent.
	PLIsSent uint64
}

// AudioStats describes the audio a viewer has received so far.
type AudioStats struct {
	// MimeType is the negotiated codec, e.g. "audio/opus".
	MimeType string
	// Packets, Bytes, Lost and Late are counted as for video.
	Packets, Bytes, Lost, Late uint64
	// FirstPacketAt and LastPacketAt are when the first and latest packets
	// arrived.
	FirstPacketAt, LastPacketAt time.Time
}

// VideoFrame describes one received video frame; see PlayConfig.OnFrame.
type VideoFrame struct {
	// Keyframe reports an IDR access unit (H.264) or a VP8 key frame.
	Keyframe bool
	// Complete reports that no packet was missing inside the frame.
	Complete bool
	// Decodable reports that the frame is complete and its reference
	// chain back to a complete keyframe is intact.
	Decodable bool
	// Timestamp is the RTP timestamp as received (rewritten by servers).
	Timestamp uint32
	// Packets and Size count the frame's packets and payload bytes.
	Packets, Size int
	// FirstPacketAt is when the frame's first packet arrived; ReceivedAt
	// when its last one did.
	FirstPacketAt, ReceivedAt time.Time
	// KernelAt holds, with PlayConfig.KernelTimestamps, when the kernel
	// received each of the frame's packets, in the order they were read
	// (zero where the kernel gave no time). Unlike FirstPacketAt it does not
	// include the wait for the viewer's own goroutines.
	KernelAt []time.Time
	// Fingerprint is [PayloadFingerprint] of the payload of the packet
	// carrying the marker bit, or 0 if that packet never arrived.
	Fingerprint uint64
}

// pktInfo is the codec-independent view of one payload.
type pktInfo struct{ auStart, keyStart, keyframe bool }

// videoAnalyzer assembles received video packets into frames and keeps
// VideoStats. push is called from one goroutine; stats from any.
type videoAnalyzer struct {
	h264 bool
	vp8  bool
	// record, if set, receives every decodable H.264 access unit.
	record io.Writer

	mu    sync.Mutex
	stats VideoStats

	haveSeq   bool
	lastSeq   uint16
	seenMedia bool
	chainOK   bool
	// undecodable is set when the last frame finished was not decodable.
	undecodable bool
	lastSPS     []byte
	recordErr   error

	cur struct {
		active     bool
		ts         uint32
		broken     bool
		keyframe   bool
		firstAt    time.Time
		kernelAt   []time.Time // with stamps: one per media packet
		packets    int
		size       int
		fingerprnt uint64
	}
	dep    h264Depacketizer
	events []VideoFrame
	// stamps: collect each packet's kernel receive time (pushAt's kernel).
	stamps bool
}

func newVideoAnalyzer(mimeType string, record io.Writer) *videoAnalyzer {
	a := &videoAnalyzer{
		h264:   strings.EqualFold(mimeType, webrtc.MimeTypeH264),
		vp8:    strings.EqualFold(mimeType, webrtc.MimeTypeVP8),
		record: record,
	}
	a.stats.MimeType = mimeType
	return a
}

func (a *videoAnalyzer) snapshot() VideoStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

// needKeyframe reports whether the last frame finished could not be
// decoded, so that a keyframe is needed.
func (a *videoAnalyzer) needKeyframe() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.undecodable
}

func (a *videoAnalyzer) notePLI() {
	a.mu.Lock()
	a.stats.PLIsSent++
	a.mu.Unlock()
}

func (a *videoAnalyzer) inspect(payload []byte) (pktInfo, error) {
	switch {
	case a.h264:
		p, err := classifyH264(payload)
		return pktInfo{auStart: p.auStart, keyStart: p.keyStart}, err
	case a.vp8:
		var v codecs.VP8Packet
		body, err := v.Unmarshal(payload)
		if err != nil || len(body) == 0 {
			return pktInfo{}, errTruncated
		}
		start := v.S == 1 && v.PID == 0
		key := start && body[0]&0x01 == 0
		return pktInfo{auStart: start, keyStart: key, keyframe: key}, nil
	default:
		return pktInfo{auStart: true}, nil
	}
}

// noteRepaired counts a packet that came on the RTX stream.
func (a *videoAnalyzer) noteRepaired() {
	a.mu.Lock()
	a.stats.Repaired++
	a.mu.Unlock()
}

// push accounts one packet and returns the frames it finished. The
// returned slice is reused by the next call.
func (a *videoAnalyzer) push(pkt *rtp.Packet, now time.Time) []VideoFrame {
	return a.pushAt(pkt, now, time.Time{})
}

// pushAt is push for a packet the kernel received at kernel (zero if not
// known).
func (a *videoAnalyzer) pushAt(pkt *rtp.Packet, now, kernel time.Time) []VideoFrame {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = a.events[:0]
	s := &a.stats
	gap := false
	if a.haveSeq {
		d := pkt.SequenceNumber - a.lastSeq
		if d == 0 || d >= 0x8000 {
			s.Late++
			return nil
		}
		if d > 1 {
			s.Lost += uint64(d - 1)
			gap = true
		}
	}
	s.Packets++
	s.Bytes += uint64(len(pkt.Payload))
	if s.FirstPacketAt.IsZero() {
		s.FirstPacketAt = now
	}
	s.LastPacketAt = now
	a.haveSeq, a.lastSeq = true, pkt.SequenceNumber
	if gap {
		a.chainOK = false
		if a.cur.active && pkt.Timestamp == a.cur.ts {
			a.cur.broken = true
		}
	}
	if len(pkt.Payload) == 0 {
		s.PaddingPackets++
		return nil
	}
	info, err := a.inspect(pkt.Payload)
	if err != nil {
		s.MalformedPackets++
	}
	if !a.seenMedia {
		a.seenMedia = true
		s.FirstPacketKeyframe = info.keyStart
	}
	if a.cur.active && pkt.Timestamp != a.cur.ts {
		a.finish(now, false) // the marker packet never came
	}
	if !a.cur.active {
		a.cur.active, a.cur.ts, a.cur.firstAt = true, pkt.Timestamp, now
		a.cur.broken, a.cur.keyframe = !info.auStart, false
		a.cur.packets, a.cur.size, a.cur.fingerprnt = 0, 0, 0
		a.cur.kernelAt = nil
		a.dep.reset()
	}
	if a.stamps {
		a.cur.kernelAt = append(a.cur.kernelAt, kernel)
	}
	a.cur.packets++
	a.cur.size += len(pkt.Payload)
	if err != nil {
		a.cur.broken = true
	}
	if info.keyframe {
		a.cur.keyframe = true
	}
	if a.h264 {
		_ = a.dep.push(pkt.Payload) // errors mark dep broken
	}
	if pkt.Marker {
		a.cur.fingerprnt = PayloadFingerprint(pkt.Payload)
		a.finish(now, true)
	}
	return a.events
}

// finish closes the current frame. a.mu is held.
func (a *videoAnalyzer) finish(now time.Time, markerSeen bool) {
	s := &a.stats
	complete := markerSeen && !a.cur.broken
	keyframe := a.cur.keyframe
	if a.h264 {
		complete = complete && a.dep.complete()
		keyframe = a.dep.hasIDR
		if sps := a.dep.sps; sps != nil && !bytes.Equal(sps, a.lastSPS) {
			a.lastSPS = append(a.lastSPS[:0], sps...)
			if info, err := ParseSPS(sps); err == nil {
				s.Width, s.Height = info.Width, info.Height
				if s.FirstWidth == 0 {
					s.FirstWidth, s.FirstHeight = info.Width, info.Height
				}
			}
		}
	}
	s.Frames++
	if complete {
		s.CompleteFrames++
	} else {
		s.IncompleteFrames++
	}
	if keyframe {
		s.Keyframes++
	}
	switch {
	case complete && keyframe:
		a.chainOK = true
	case !complete:
		a.chainOK = false
	}
	decodable := complete && a.chainOK
	a.undecodable = !decodable
	if decodable {
		s.DecodableFrames++
		if keyframe && s.FirstKeyframeAt.IsZero() {
			s.FirstKeyframeAt = now
		}
		if a.h264 && a.record != nil && a.recordErr == nil {
			_, a.recordErr = a.record.Write(a.dep.au)
		}
	}
	a.events = append(a.events, VideoFrame{
		Keyframe:      keyframe,
		Complete:      complete,
		Decodable:     decodable,
		Timestamp:     a.cur.ts,
		Packets:       a.cur.packets,
		Size:          a.cur.size,
		FirstPacketAt: a.cur.firstAt,
		ReceivedAt:    now,
		KernelAt:      a.cur.kernelAt, // a new slice per frame: reset above
		Fingerprint:   a.cur.fingerprnt,
	})
	a.cur.active = false
}

// audioAnalyzer keeps AudioStats.
type audioAnalyzer struct {
	mu      sync.Mutex
	stats   AudioStats
	haveSeq bool
	lastSeq uint16
}

func (a *audioAnalyzer) push(pkt *rtp.Packet, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := &a.stats
	if a.haveSeq {
		d := pkt.SequenceNumber - a.lastSeq
		if d == 0 || d >= 0x8000 {
			s.Late++
			return
		}
		s.Lost += uint64(d - 1)
	}
	a.haveSeq, a.lastSeq = true, pkt.SequenceNumber
	s.Packets++
	s.Bytes += uint64(len(pkt.Payload))
	if s.FirstPacketAt.IsZero() {
		s.FirstPacketAt = now
	}
	s.LastPacketAt = now
}

func (a *audioAnalyzer) snapshot() AudioStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}
