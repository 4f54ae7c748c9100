package sfu

import "strings"

// Codec MIME types the SFU understands. They match pion/webrtc's constants.
const (
	MimeTypeH264 = "video/H264"
	MimeTypeH265 = "video/H265"
	MimeTypeVP8  = "video/VP8"
	MimeTypeVP9  = "video/VP9"
	MimeTypeAV1  = "video/AV1"
	MimeTypeOpus = "audio/opus"
)

// IsKeyframe reports whether an RTP payload of the given codec carries the
// beginning of a keyframe: a point where a decoder with no prior state can
// start. It looks at the payload format headers only and never reads past
// the end of payload; it is safe on untrusted input.
func IsKeyframe(mimeType string, payload []byte) bool {
	switch {
	case strings.EqualFold(mimeType, MimeTypeH264):
		return h264Keyframe(payload)
	case strings.EqualFold(mimeType, MimeTypeVP8):
		return vp8Keyframe(payload)
	case strings.EqualFold(mimeType, MimeTypeVP9):
		return vp9Keyframe(payload)
	case strings.EqualFold(mimeType, MimeTypeAV1):
		return av1Keyframe(payload)
	case strings.EqualFold(mimeType, MimeTypeH265):
		return h265Keyframe(payload)
	}
	return false
}

// H.264 NAL unit types (ITU-T H.264 table 7-1) and RTP packet types (RFC 6184 §5.2).
const (
	h264NALIDR   = 5
	h264NALSPS   = 7
	h264STAPA    = 24
	h264FUA      = 28
	h264TypeMask = 0x1f
)

// h264Keyframe is true for a packet that carries an SPS or the first
// fragment of an IDR slice, alone, aggregated (STAP-A) or fragmented (FU-A).
func h264Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch t := p[0] & h264TypeMask; t {
	case h264NALIDR, h264NALSPS:
		return true
	case h264STAPA:
		// RFC 6184 §5.7.1: STAP-A header, then (16-bit size, NAL unit)*.
		for i := 1; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			i += 2
			if size == 0 || i+size > len(p) {
				return false
			}
			if n := p[i] & h264TypeMask; n == h264NALIDR || n == h264NALSPS {
				return true
			}
			i += size
		}
	case h264FUA:
		// RFC 6184 §5.8: FU indicator, FU header (S E R Type).
		if len(p) < 2 {
			return false
		}
		start := p[1]&0x80 != 0
		n := p[1] & h264TypeMask
		return start && (n == h264NALIDR || n == h264NALSPS)
	}
	return false
}

// vp8Keyframe follows RFC 7741 §4.2 (payload descriptor) and §4.3 (the P bit
// of the VP8 payload header is 0 for a key frame).
func vp8Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	x := p[0]&0x80 != 0
	s := p[0]&0x10 != 0
	pid := p[0] & 0x07
	if !s || pid != 0 {
		return false
	}
	i := 1
	if x {
		if len(p) <= i {
			return false
		}
		ext := p[i]
		i++
		if ext&0x80 != 0 { // I: PictureID
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 { // M: 15-bit PictureID
				i++
			}
			i++
		}
		if ext&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if ext&0x30 != 0 { // T or K: TID/Y/KEYIDX
			i++
		}
	}
	if len(p) <= i {
		return false
	}
	return p[i]&0x01 == 0
}

// vp9Keyframe follows RFC 9628 §4.2: B (start of frame) set, P (inter-picture
// predicted) clear, and, when layer indices are present, spatial layer 0.
func vp9Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	b0 := p[0]
	iBit := b0&0x80 != 0
	pBit := b0&0x40 != 0
	lBit := b0&0x20 != 0
	bBit := b0&0x08 != 0
	if !bBit || pBit {
		return false
	}
	if !lBit {
		return true
	}
	i := 1
	if iBit {
		if len(p) <= i {
			return false
		}
		if p[i]&0x80 != 0 { // M: 15-bit picture ID
			i++
		}
		i++
	}
	if len(p) <= i {
		return false
	}
	sid := (p[i] >> 1) & 0x07
	return sid == 0
}

// av1Keyframe uses the N bit of the AV1 aggregation header (AV1 RTP
// specification §4.4): the packet is the first of a new coded video sequence.
func av1Keyframe(p []byte) bool {
	return len(p) >= 1 && p[0]&0x08 != 0
}

// H.265 NAL unit types (ITU-T H.265 table 7-1) and RTP packet types (RFC 7798 §4.4).
const (
	h265NALIRAPFirst = 16
	h265NALIRAPLast  = 23
	h265NALVPS       = 32
	h265NALSPS       = 33
	h265AP           = 48
	h265FU           = 49
)

func h265KeyNAL(t byte) bool {
	return (t >= h265NALIRAPFirst && t <= h265NALIRAPLast) || t == h265NALVPS || t == h265NALSPS
}

func h265Keyframe(p []byte) bool {
	if len(p) < 2 {
		return false
	}
	switch t := (p[0] >> 1) & 0x3f; t {
	case h265AP:
		for i := 2; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			i += 2
			if size == 0 || i+size > len(p) {
				return false
			}
			if h265KeyNAL((p[i] >> 1) & 0x3f) {
				return true
			}
			i += size
		}
		return false
	case h265FU:
		if len(p) < 3 {
			return false
		}
		return p[2]&0x80 != 0 && h265KeyNAL(p[2]&0x3f)
	default:
		return h265KeyNAL(t)
	}
}
