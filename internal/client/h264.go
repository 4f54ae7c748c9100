package client

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
)

// H.264 NAL unit types (ITU-T H.264 Table 7-1, RFC 6184 §5.4).
const (
	naluSlice = 1
	naluIDR   = 5
	naluSEI   = 6
	naluSPS   = 7
	naluPPS   = 8
	naluAUD   = 9
	naluSTAPA = 24
	naluSTAPB = 25
	naluMTAP1 = 26
	naluMTAP2 = 27
	naluFUA   = 28
	naluFUB   = 29
)

var (
	errEmptyPayload   = errors.New("empty payload")
	errUnsupportedNAL = errors.New("NAL unit type not allowed in packetization-mode 1")
	errTruncated      = errors.New("truncated aggregation packet")
)

// PayloadFingerprint returns a 64-bit FNV-1a hash of an RTP payload.
// Publishers report the fingerprint of each video frame's last RTP packet
// (the one with the marker bit) and viewers report the same for the frames
// they receive, so a load tool can pair the two and measure latency even
// though a server rewrites SSRC, sequence numbers and timestamps. Frames
// repeat when a clip loops, so match within a window shorter than the clip.
func PayloadFingerprint(payload []byte) uint64 {
	h := fnv.New64a()
	_, _ = h.Write(payload)
	return h.Sum64()
}

// h264Packet is what classifyH264 learns from one RTP payload.
type h264Packet struct {
	// typ is the payload's NAL unit type (24 for STAP-A, 28 for FU-A).
	typ uint8
	// fuStart and fuEnd are the S and E bits of an FU-A header.
	fuStart, fuEnd bool
	// auStart reports that the payload begins an access unit: an AUD,
	// SPS, PPS or SEI, or a slice with first_mb_in_slice 0 (a whole NAL
	// unit or the first fragment of one).
	auStart bool
	// keyStart reports that the payload holds an SPS or the start of an
	// IDR slice, as the first packet of a keyframe does.
	keyStart bool
	// hasIDR reports that the payload holds (part of) an IDR slice.
	hasIDR bool
}

// classifyH264 inspects an RTP payload of packetization-mode 1 (RFC 6184
// §5.2: single NAL unit, STAP-A or FU-A) without copying it.
func classifyH264(payload []byte) (h264Packet, error) {
	if len(payload) == 0 {
		return h264Packet{}, errEmptyPayload
	}
	p := h264Packet{typ: payload[0] & 0x1f}
	nalStarts := func(nal []byte, whole bool) {
		t := nal[0] & 0x1f
		switch t {
		case naluSPS:
			p.keyStart = true
			p.auStart = p.auStart || whole
		case naluPPS, naluAUD, naluSEI:
			p.auStart = p.auStart || whole
		case naluIDR, naluSlice:
			if t == naluIDR {
				p.keyStart, p.hasIDR = true, true
			}
			p.auStart = p.auStart || (whole && firstMBIsZero(nal))
		}
	}
	switch {
	case p.typ >= 1 && p.typ <= 23:
		nalStarts(payload, true)
	case p.typ == naluSTAPA:
		first := true
		err := forEachSTAPA(payload, func(nal []byte) {
			// Only the first aggregated unit can start an access unit;
			// later ones may carry a keyframe's SPS/PPS/IDR too.
			t := nal[0] & 0x1f
			if first {
				nalStarts(nal, true)
				first = false
				return
			}
			if t == naluSPS {
				p.keyStart = true
			}
			if t == naluIDR {
				p.keyStart, p.hasIDR = true, true
			}
		})
		if err != nil {
			return p, err
		}
	case p.typ == naluFUA:
		if len(payload) < 3 {
			return p, fmt.Errorf("FU-A of %d bytes: %w", len(payload), errTruncated)
		}
		hdr := payload[1]
		p.fuStart, p.fuEnd = hdr&0x80 != 0, hdr&0x40 != 0
		t := hdr & 0x1f
		if t == naluIDR {
			p.hasIDR = true
		}
		if p.fuStart {
			// Rebuild the fragmented unit's first bytes to look at them.
			nal := []byte{payload[0]&0xe0 | t, payload[2]}
			nalStarts(nal, true)
		}
	case p.typ == naluSTAPB || p.typ == naluMTAP1 || p.typ == naluMTAP2 || p.typ == naluFUB:
		return p, fmt.Errorf("type %d: %w", p.typ, errUnsupportedNAL)
	default:
		return p, fmt.Errorf("reserved NAL unit type %d", p.typ)
	}
	return p, nil
}

// forEachSTAPA calls fn for every NAL unit in a STAP-A payload (RFC 6184
// §5.7.1: a 16-bit size before each unit). Zero-size units are an error.
func forEachSTAPA(payload []byte, fn func(nal []byte)) error {
	b := payload[1:]
	n := 0
	for len(b) > 0 {
		if len(b) < 2 {
			return errTruncated
		}
		size := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if size == 0 || size > len(b) {
			return errTruncated
		}
		fn(b[:size])
		b = b[size:]
		n++
	}
	if n == 0 {
		return errTruncated
	}
	return nil
}

// h264Depacketizer turns the RTP payloads of one access unit back into
// Annex-B NAL units (RFC 6184 §5.8 for FU-A).
type h264Depacketizer struct {
	// au is the access unit so far, in Annex-B form.
	au []byte
	// inFU reports that an FU-A fragmented unit is open at the end of au.
	inFU bool
	// nals holds the offsets in au of each complete NAL unit (after its
	// start code), so that SPS units can be found.
	nals []int
	// broken is set when a fragment arrives out of order.
	broken bool
	// hasIDR is set when the access unit holds an IDR slice.
	hasIDR bool
	// sps is the last complete SPS unit seen in the access unit. It points
	// into au and is valid until the next reset.
	sps []byte
}

func (d *h264Depacketizer) reset() {
	d.au = d.au[:0]
	d.nals = d.nals[:0]
	d.inFU, d.broken, d.hasIDR, d.sps = false, false, false, nil
}

func (d *h264Depacketizer) appendNAL(nal []byte) {
	d.au = append(d.au, 0, 0, 0, 1)
	start := len(d.au)
	d.nals = append(d.nals, start)
	d.au = append(d.au, nal...)
	d.noteNAL(d.au[start:])
}

func (d *h264Depacketizer) noteNAL(nal []byte) {
	switch nal[0] & 0x1f {
	case naluIDR:
		d.hasIDR = true
	case naluSPS:
		d.sps = nal
	}
}

// push adds one RTP payload. An error means the payload was malformed;
// the access unit is then marked broken.
func (d *h264Depacketizer) push(payload []byte) error {
	if len(payload) == 0 {
		return nil
	}
	typ := payload[0] & 0x1f
	if d.inFU && typ != naluFUA {
		// The open fragmented unit never ended.
		d.inFU, d.broken = false, true
	}
	switch {
	case typ >= 1 && typ <= 23:
		d.appendNAL(payload)
	case typ == naluSTAPA:
		var nals [][]byte
		if err := forEachSTAPA(payload, func(nal []byte) { nals = append(nals, nal) }); err != nil {
			d.broken = true
			return err
		}
		for _, nal := range nals {
			d.appendNAL(nal)
		}
	case typ == naluFUA:
		if len(payload) < 3 {
			d.broken = true
			return errTruncated
		}
		hdr := payload[1]
		start, end := hdr&0x80 != 0, hdr&0x40 != 0
		switch {
		case start:
			if d.inFU {
				d.broken = true
			}
			d.au = append(d.au, 0, 0, 0, 1)
			d.nals = append(d.nals, len(d.au))
			d.au = append(d.au, payload[0]&0xe0|hdr&0x1f)
			d.au = append(d.au, payload[2:]...)
			d.inFU = true
		case d.inFU:
			d.au = append(d.au, payload[2:]...)
		default:
			// A middle or end fragment without its start.
			d.broken = true
			return nil
		}
		if hdr&0x1f == naluIDR {
			d.hasIDR = true
		}
		if end {
			d.inFU = false
			if n := len(d.nals); n > 0 {
				d.noteNAL(d.au[d.nals[n-1]:])
			}
		}
	default:
		d.broken = true
		return fmt.Errorf("type %d: %w", typ, errUnsupportedNAL)
	}
	return nil
}

// complete reports whether the access unit ends cleanly.
func (d *h264Depacketizer) complete() bool { return !d.broken && !d.inFU && len(d.nals) > 0 }
