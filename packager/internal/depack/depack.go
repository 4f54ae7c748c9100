// Package depack turns a track's RTP packets back into the codec's frames:
// H.264 access units (RFC 6184: single NAL unit, STAP-A and FU-A packets),
// VP9 frames (RFC 9628), AV1 temporal units (the AOM AV1 RTP
// specification) and Opus packets (RFC 7587). It reorders within a small window, drops a
// frame that lost a packet instead of passing it on corrupt, and after a
// loss waits for the next keyframe before a video frame comes out again.
//
// Every input is untrusted: malformed payloads end the frame they belong to
// and count as loss; nothing here panics on any input.
package depack

import (
	"encoding/binary"
	"errors"
	"time"
)

// Frame is one access unit (video) or one packet (audio).
type Frame struct {
	// Timestamp is the RTP timestamp, extended to 64 bits.
	Timestamp int64
	// Keyframe is true for an H.264 IDR access unit and for every audio frame.
	Keyframe bool
	// NALUs are the access unit's NAL units without SPS, PPS and access unit
	// delimiters (H.264), or the one Opus packet (audio).
	NALUs [][]byte
	// SPS and PPS are the parameter sets carried in this access unit, if any.
	SPS, PPS []byte
	// Arrival is when the frame's last packet arrived.
	Arrival time.Time
}

// Packet is the part of an RTP packet the depacketizers need.
type Packet struct {
	// Seq is the sequence number extended to 64 bits, with padding-only
	// packets taken out, so consecutive media packets differ by one.
	Seq       uint64
	Timestamp uint32
	Marker    bool
	Payload   []byte
	Arrival   time.Time
}

// Errors reported for malformed payloads.
var (
	ErrShortPacket = errors.New("depack: payload too short")
	ErrNALUType    = errors.New("depack: unsupported NAL unit type")
	ErrFragment    = errors.New("depack: FU-A fragment out of sequence")
	ErrTooLarge    = errors.New("depack: access unit too large")
)

// MaxFrameSize bounds one access unit; a publisher that sends more is
// broken or hostile. 8 MiB is far above any WebRTC keyframe.
const MaxFrameSize = 8 << 20

// Reorder puts packets back in sequence order within a window. A gap that
// is still open when Window packets have arrived behind it, or MaxDelay
// after the first packet held behind it, counts as lost. MaxDelay must
// cover a retransmission: the ingest asks for lost packets (NACK) every
// 100 ms or so.
type Reorder struct {
	Window   int           // default 512 packets
	MaxDelay time.Duration // default 200 ms

	next    uint64 // sequence number expected next
	started bool
	held    map[uint64]Packet
	oldest  time.Time // arrival of the oldest held packet
}

// Push takes one packet and calls emit for every packet that is now in
// order, with lost set when packets were given up on just before it. The
// payload of a held packet is copied, so the caller may reuse p.Payload.
func (r *Reorder) Push(p Packet, emit func(p Packet, lost bool)) {
	if r.Window <= 0 {
		r.Window = 512
	}
	if r.MaxDelay <= 0 {
		r.MaxDelay = 200 * time.Millisecond
	}
	switch {
	case !r.started:
		r.started, r.next = true, p.Seq
	case p.Seq < r.next:
		return // late duplicate, or arrived after we gave up on it
	}
	if p.Seq == r.next {
		emit(p, false)
		r.next++
		r.drain(emit, false)
		return
	}
	if r.held == nil {
		r.held = map[uint64]Packet{}
	}
	if _, dup := r.held[p.Seq]; !dup {
		p.Payload = append([]byte(nil), p.Payload...)
		if len(r.held) == 0 {
			r.oldest = p.Arrival
		}
		r.held[p.Seq] = p
	}
	if len(r.held) >= r.Window || p.Arrival.Sub(r.oldest) > r.MaxDelay {
		// Give up on the gap: jump to the lowest held packet.
		low := p.Seq
		for s := range r.held {
			low = min(low, s)
		}
		r.next = low
		r.drain(emit, true)
	}
}

// drain emits held packets from r.next on while they are contiguous.
func (r *Reorder) drain(emit func(Packet, bool), lost bool) {
	for len(r.held) > 0 {
		p, ok := r.held[r.next]
		if !ok {
			break
		}
		delete(r.held, r.next)
		emit(p, lost)
		lost = false
		r.next++
	}
	if len(r.held) > 0 {
		r.oldest = time.Time{}
		for _, p := range r.held {
			if r.oldest.IsZero() || p.Arrival.Before(r.oldest) {
				r.oldest = p.Arrival
			}
		}
	}
}

// Unwrap extends 32-bit RTP timestamps to 64 bits.
type Unwrap struct {
	last    int64 // newest timestamp seen, extended
	started bool
}

// Extend returns ts extended, assuming it is within 2^31 of the newest one.
func (u *Unwrap) Extend(ts uint32) int64 {
	if !u.started {
		u.started, u.last = true, int64(ts)
		return u.last
	}
	v := u.last + int64(int32(ts-uint32(u.last)))
	u.last = max(u.last, v)
	return v
}

// unit is what every video assembler (H264, VP9, AV1) keeps of the frame
// it is putting together, and their common loss rule: a frame with a hole
// is dropped, and so is every frame after it until a keyframe.
type unit struct {
	unwrap  Unwrap
	ts      uint32
	arrival time.Time
	inFrame bool
	broken  bool // a packet of the current frame was lost or malformed
	needKey bool // since a loss: drop frames until a keyframe

	// Dropped counts frames dropped for loss or malformed payloads.
	Dropped int
}

// WaitKeyframe drops frames until the next keyframe (an IDR access unit for
// H.264), as at the start of a stream.
func (u *unit) WaitKeyframe() { u.needKey = true }

// lost breaks the frame being put together, if any, and waits for a
// keyframe.
func (u *unit) lost() {
	if u.inFrame {
		u.broken = true
	}
	u.needKey = true
}

// drop counts a frame dropped for a hole or a malformed payload and waits
// for a keyframe.
func (u *unit) drop() {
	u.Dropped++
	u.needKey = true
}

// accept reports whether a whole frame may go out: any after a keyframe,
// only a keyframe while one is awaited (the others are counted dropped).
func (u *unit) accept(key bool) bool {
	if u.needKey && !key {
		u.Dropped++
		return false
	}
	u.needKey = false
	return true
}

// H264 assembles H.264 access units from in-order packets.
type H264 struct {
	unit

	size     int
	nalus    [][]byte
	fua      []byte
	inFUA    bool
	sps, pps []byte
	idr      bool
}

// Push takes the next packet in sequence order (lost says packets were
// lost just before it) and calls emit with each complete access unit. The
// frame's slices are valid until the next call to Push.
func (h *H264) Push(p Packet, lost bool, emit func(*Frame)) error {
	if lost {
		h.loss()
	}
	if h.inFrame && p.Timestamp != h.ts {
		// A new timestamp without the marker on the last frame: the marker
		// packet was lost or the sender does not set it. End the frame.
		h.finish(emit)
	}
	if !h.inFrame {
		h.start(p.Timestamp)
	}
	h.arrival = p.Arrival
	err := h.parse(p.Payload)
	if err != nil {
		h.broken = true
	}
	if p.Marker {
		h.finish(emit)
	}
	return err
}

func (h *H264) loss() {
	h.lost()
	h.inFUA, h.fua = false, h.fua[:0]
}

func (h *H264) start(ts uint32) {
	h.inFrame, h.broken, h.idr = true, false, false
	h.ts, h.size = ts, 0
	h.nalus = h.nalus[:0]
	h.sps, h.pps = nil, nil
	h.inFUA, h.fua = false, h.fua[:0]
}

func (h *H264) finish(emit func(*Frame)) {
	h.inFrame = false
	ts := h.unwrap.Extend(h.ts)
	if h.broken || h.inFUA {
		h.drop()
		return
	}
	if len(h.nalus) == 0 || !h.accept(h.idr) {
		return
	}
	emit(&Frame{Timestamp: ts, Keyframe: h.idr, NALUs: h.nalus, SPS: h.sps, PPS: h.pps, Arrival: h.arrival})
}

// NAL unit types (ITU-T H.264 Table 7-1) and RTP payload types (RFC 6184).
const (
	naluIDR   = 5
	naluSEI   = 6
	naluSPS   = 7
	naluPPS   = 8
	naluAUD   = 9
	naluStapA = 24
	naluFUA   = 28
)

func (h *H264) parse(b []byte) error {
	if len(b) < 1 {
		return ErrShortPacket
	}
	switch t := b[0] & 0x1f; {
	case t >= 1 && t <= 23:
		if h.inFUA {
			return ErrFragment
		}
		return h.add(b)
	case t == naluStapA:
		if h.inFUA {
			return ErrFragment
		}
		b = b[1:]
		for len(b) > 0 {
			if len(b) < 2 {
				return ErrShortPacket
			}
			n := int(binary.BigEndian.Uint16(b))
			b = b[2:]
			if n == 0 || n > len(b) {
				return ErrShortPacket
			}
			if err := h.add(b[:n]); err != nil {
				return err
			}
			b = b[n:]
		}
		return nil
	case t == naluFUA:
		if len(b) < 3 {
			return ErrShortPacket
		}
		start, end := b[1]&0x80 != 0, b[1]&0x40 != 0
		switch {
		case start && h.inFUA, !start && !h.inFUA:
			h.inFUA, h.fua = false, h.fua[:0]
			return ErrFragment
		case start:
			h.inFUA = true
			h.fua = append(h.fua[:0], b[0]&0xe0|b[1]&0x1f)
		}
		if len(h.fua)+len(b)-2 > MaxFrameSize {
			h.inFUA, h.fua = false, h.fua[:0]
			return ErrTooLarge
		}
		h.fua = append(h.fua, b[2:]...)
		if end {
			h.inFUA = false
			nalu := append([]byte(nil), h.fua...)
			h.fua = h.fua[:0]
			return h.add(nalu)
		}
		return nil
	default:
		return ErrNALUType
	}
}

// add keeps one complete NAL unit of the current access unit. nalu may
// alias the packet, so it is copied.
func (h *H264) add(nalu []byte) error {
	if len(nalu) == 0 {
		return ErrShortPacket
	}
	h.size += len(nalu)
	if h.size > MaxFrameSize {
		return ErrTooLarge
	}
	switch nalu[0] & 0x1f {
	case naluSPS:
		h.sps = append([]byte(nil), nalu...)
		return nil
	case naluPPS:
		h.pps = append([]byte(nil), nalu...)
		return nil
	case naluAUD:
		return nil
	case naluIDR:
		h.idr = true
	}
	if len(h.nalus) >= 1024 {
		return ErrTooLarge
	}
	h.nalus = append(h.nalus, append([]byte(nil), nalu...))
	return nil
}

// Opus turns in-order Opus RTP packets into frames (one packet each).
type Opus struct {
	unwrap Unwrap
}

// Push takes the next packet in sequence order and calls emit with its
// frame. Audio has no inter-frame dependency that loss could break.
func (o *Opus) Push(p Packet, _ bool, emit func(*Frame)) error {
	ts := o.unwrap.Extend(p.Timestamp)
	if len(p.Payload) == 0 {
		return ErrShortPacket
	}
	emit(&Frame{Timestamp: ts, Keyframe: true, NALUs: [][]byte{append([]byte(nil), p.Payload...)}, Arrival: p.Arrival})
	return nil
}
