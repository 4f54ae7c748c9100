package ingest

import (
	"encoding/binary"

	"github.com/pion/interceptor"
)

// ridTagger is a pion interceptor for one publisher PeerConnection whose
// offer announced simulcast by SSRC. It writes the mid and rtp-stream-id
// header extensions (RFC 8285 one-byte or two-byte form, RFC 8852) into
// each incoming RTP packet of the simulcast SSRCs that lacks them, so pion
// demultiplexes the layers by RID as it does a browser's. It must be the
// first interceptor of the chain: the NACK generator and pion's demuxer see
// the packet after it.
//
// The packet grows in the reader's buffer (by 8 to 36 bytes); one that
// does not fit, has a header extension of another profile, or is not RTP
// passes as it is. After its first packets pion knows the SSRC and no
// longer needs the tags, so a packet left untagged later costs nothing.
type ridTagger struct {
	interceptor.NoOp
	layers map[uint32]*ridTag
}

// ridTag is what the tagger writes into one SSRC's packets, prepared once.
type ridTag struct {
	midID, ridID   uint8
	midOne, ridOne []byte // one-byte form elements (RFC 8285 section 4.2)
	midTwo, ridTwo []byte // two-byte form elements (RFC 8285 section 4.3)
}

// newRIDTagger prepares the tags of every simulcast SSRC of l.
func newRIDTagger(l *simLayers) *ridTagger {
	t := &ridTagger{layers: map[uint32]*ridTag{}}
	one := func(id uint8, v string) []byte { return append([]byte{id<<4 | byte(len(v)-1)}, v...) }
	two := func(id uint8, v string) []byte { return append([]byte{id, byte(len(v))}, v...) }
	for _, s := range l.sections {
		for _, ssrc := range s.ssrcs {
			r := rid(ssrc)
			t.layers[ssrc] = &ridTag{
				midID: s.midExtID, ridID: s.ridExtID,
				midOne: one(s.midExtID, s.mid), ridOne: one(s.ridExtID, r),
				midTwo: two(s.midExtID, s.mid), ridTwo: two(s.ridExtID, r),
			}
		}
	}
	return t
}

// NewInterceptor makes ridTagger its own interceptor.Factory: a
// PeerConnection's API that carries it is made for that PeerConnection alone.
func (t *ridTagger) NewInterceptor(string) (interceptor.Interceptor, error) { return t, nil }

// BindRemoteStream tags the packets of one incoming stream.
func (t *ridTagger) BindRemoteStream(_ *interceptor.StreamInfo, reader interceptor.RTPReader) interceptor.RTPReader {
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, a, err := reader.Read(b, a)
		if err != nil {
			return n, a, err
		}
		return t.tag(b, n), a, nil
	})
}

const (
	rtpHeaderSize    = 12
	oneByteProfile   = 0xBEDE
	twoByteProfile   = 0x1000 // RFC 8285 section 4.3: 0x100 followed by 4 app bits
	twoByteMask      = 0xFFF0
	extHeaderSize    = 4
	oneByteIDReserve = 15 // RFC 8285 section 4.2: id 15 ends the parsing
)

// tag writes the missing mid and rid elements into the RTP packet b[:n],
// growing it within len(b), and returns the packet's new length. It
// allocates nothing.
func (t *ridTagger) tag(b []byte, n int) int {
	if n < rtpHeaderSize || n > len(b) || b[0]>>6 != 2 {
		return n
	}
	tg := t.layers[binary.BigEndian.Uint32(b[8:12])]
	if tg == nil {
		return n
	}
	hdr := rtpHeaderSize + 4*int(b[0]&0x0f) // fixed header and CSRCs
	if hdr > n {
		return n
	}
	profile := uint16(oneByteProfile)
	start := hdr + extHeaderSize // first element byte
	used := start                // end of the last element
	payload := hdr               // where the payload starts now
	hasMid := false
	if b[0]&0x10 != 0 {
		if start > n {
			return n
		}
		profile = binary.BigEndian.Uint16(b[hdr:])
		payload = start + 4*int(binary.BigEndian.Uint16(b[hdr+2:]))
		if payload > n {
			return n
		}
	}
	two := profile&twoByteMask == twoByteProfile
	if profile != oneByteProfile && !two {
		return n // an extension block of another profile has no room for ours
	}
	if payload > hdr {
		var ok bool
		if used, hasMid, ok = scanElements(b[:payload], start, two, tg); !ok {
			return n
		}
	}
	mid, r := tg.midOne, tg.ridOne
	if two {
		mid, r = tg.midTwo, tg.ridTwo
	}
	if hasMid {
		mid = nil
	}
	end := used + len(mid) + len(r)        // end of the elements after ours
	newPayload := start + (end-start+3)&^3 // padded to 32-bit words
	grow := newPayload - payload
	if n+grow > len(b) {
		return n
	}
	copy(b[newPayload:], b[payload:n])
	if b[0]&0x10 == 0 {
		b[0] |= 0x10
		binary.BigEndian.PutUint16(b[hdr:], oneByteProfile)
	}
	binary.BigEndian.PutUint16(b[hdr+2:], uint16((newPayload-start)/4))
	copy(b[used+copy(b[used:], mid):], r)
	clear(b[end:newPayload])
	return n + grow
}

// scanElements walks the extension elements in b[start:] and returns the
// end of the last one and whether the mid is there. ok is false when the
// rid is already there or the block is malformed: then the packet is left
// alone.
func scanElements(b []byte, start int, two bool, tg *ridTag) (used int, hasMid, ok bool) {
	used = start
	for i := start; i < len(b); {
		var id uint8
		var size int
		if !two {
			if b[i] == 0 { // padding byte
				i++
				continue
			}
			id = b[i] >> 4
			if id == 0 {
				// Padding that is not a zero byte: receivers differ (libwebrtc
				// skips one byte, pion reads an element), so leave it alone.
				return 0, false, false
			}
			if id == oneByteIDReserve {
				return 0, false, false
			}
			size = 1 + int(b[i]&0x0f) + 1
		} else {
			id = b[i]
			if id == 0 {
				i++
				continue
			}
			if i+1 >= len(b) {
				return 0, false, false
			}
			size = 2 + int(b[i+1])
		}
		if i+size > len(b) || id == tg.ridID {
			return 0, false, false
		}
		hasMid = hasMid || id == tg.midID
		i += size
		used = i
	}
	return used, hasMid, true
}
