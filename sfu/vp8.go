package sfu

// VP8Munger keeps a VP8 stream's picture IDs and TL0PICIDX continuous when
// its source changes (a simulcast layer switch or a new publisher): each
// layer numbers its pictures on its own, and a receiver that tracks
// references by picture ID (RFC 7741 §4.2) should see one sequence. It
// rewrites a copy of the payload descriptor in place of the source's;
// the field widths (7- or 15-bit picture ID) stay as the source sent them.
//
// A VP8Munger is used by one goroutine at a time.
type VP8Munger struct {
	started, switching bool
	picOffset          uint16
	tl0Offset          uint8
	lastPic            uint16 // newest outgoing picture ID (15-bit space)
	lastTL0            uint8
	haveTL0            bool
}

// SwitchSource makes the next packet start a new mapping that continues
// the outgoing numbering.
func (m *VP8Munger) SwitchSource() { m.switching = true }

// vp8Fields locates the picture ID and TL0PICIDX in a payload descriptor.
type vp8Fields struct {
	picAt, picLen int // offset and length (1 or 2 bytes), 0 if absent
	tl0At         int // offset, -1 if absent
}

func parseVP8Fields(p []byte) (vp8Fields, bool) {
	f := vp8Fields{tl0At: -1}
	if len(p) < 1 {
		return f, false
	}
	if p[0]&0x80 == 0 { // no X: no extensions
		return f, true
	}
	if len(p) < 2 {
		return f, false
	}
	ext := p[1]
	i := 2
	if ext&0x80 != 0 { // I
		if len(p) <= i {
			return f, false
		}
		f.picAt, f.picLen = i, 1
		if p[i]&0x80 != 0 { // M
			f.picLen = 2
		}
		i += f.picLen
	}
	if ext&0x40 != 0 { // L
		f.tl0At = i
		i++
	}
	if ext&0x30 != 0 { // T or K
		i++
	}
	if len(p) < i {
		return f, false
	}
	return f, true
}

func (f vp8Fields) pic(p []byte) uint16 {
	if f.picLen == 2 {
		return uint16(p[f.picAt]&0x7f)<<8 | uint16(p[f.picAt+1])
	}
	return uint16(p[f.picAt] & 0x7f)
}

// Munge copies payload into dst (which must have room for it) with the
// picture ID and TL0PICIDX rewritten, and returns the copy. A payload whose
// descriptor cannot be parsed, or that carries neither field, is returned
// as is.
func (m *VP8Munger) Munge(payload, dst []byte) []byte { return m.munge(payload, dst, true) }

// Retransmission rewrites a resent packet of the current source the same
// way, without changing the state.
func (m *VP8Munger) Retransmission(payload, dst []byte) []byte {
	if !m.started || m.switching {
		return payload
	}
	return m.munge(payload, dst, false)
}

func (m *VP8Munger) munge(payload, dst []byte, update bool) []byte {
	f, ok := parseVP8Fields(payload)
	if !ok || (f.picLen == 0 && f.tl0At < 0) || len(dst) < len(payload) {
		return payload
	}
	if !m.started || m.switching {
		if f.picLen > 0 {
			m.picOffset = m.lastPic + 1 - f.pic(payload)
			if !m.started {
				m.picOffset = 0
			}
		}
		if f.tl0At >= 0 {
			m.tl0Offset = m.lastTL0 + 1 - payload[f.tl0At]
			if !m.haveTL0 {
				m.tl0Offset = 0
			}
		}
		m.started, m.switching = true, false
	}
	out := dst[:len(payload)]
	copy(out, payload)
	switch f.picLen {
	case 2:
		pic := (f.pic(payload) + m.picOffset) & 0x7fff
		out[f.picAt] = 0x80 | byte(pic>>8)
		out[f.picAt+1] = byte(pic)
		if update {
			m.lastPic = pic
		}
	case 1:
		pic := (f.pic(payload) + m.picOffset) & 0x7f
		out[f.picAt] = byte(pic)
		if update {
			m.lastPic = pic
		}
	}
	if f.tl0At >= 0 {
		out[f.tl0At] = payload[f.tl0At] + m.tl0Offset
		if update {
			m.lastTL0, m.haveTL0 = out[f.tl0At], true
		}
	}
	return out
}
