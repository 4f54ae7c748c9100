package depack

import (
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/pion/rtp/codecs"
)

// AV1 assembles AV1 temporal units from in-order packets (the AV1 RTP
// payload format, aomediacodec.github.io/av1-rtp-spec): pion's
// depacketizer joins fragmented OBUs, the marker bit or a new timestamp
// ends a temporal unit. A frame's NALUs are its OBUs without their size
// fields (mediacommon's form, which its MP4 writer takes), temporal
// delimiters dropped. A temporal unit that carries a sequence header is a
// keyframe, as WebRTC senders send one with every keyframe.
type AV1 struct {
	unit // Dropped counts temporal units

	dep  codecs.AV1Depacketizer
	data []byte // the unit so far, OBUs with size fields
}

// Push takes the next packet in sequence order (lost says packets were
// lost just before it) and calls emit with each complete temporal unit.
// The OBUs are the caller's to keep; the Frame is valid until the next
// call to Push.
func (a *AV1) Push(p Packet, lost bool, emit func(*Frame)) error {
	if lost {
		a.loss()
	}
	if a.inFrame && p.Timestamp != a.ts {
		a.finish(emit) // the marker packet was lost
	}
	if !a.inFrame {
		a.inFrame, a.broken, a.ts, a.data = true, false, p.Timestamp, nil
	}
	a.arrival = p.Arrival
	out, err := a.dep.Unmarshal(p.Payload)
	switch {
	case err != nil:
		a.loss()
	case len(a.data)+len(out) > MaxFrameSize:
		a.broken, err = true, ErrTooLarge
	default:
		a.data = append(a.data, out...)
	}
	if p.Marker {
		a.finish(emit)
	}
	return err
}

// loss breaks the unit being assembled and forgets a fragment held over.
func (a *AV1) loss() {
	a.lost()
	a.dep = codecs.AV1Depacketizer{}
}

func (a *AV1) finish(emit func(*Frame)) {
	a.inFrame = false
	ts := a.unwrap.Extend(a.ts)
	var bs av1.Bitstream
	if a.broken || len(a.data) == 0 || bs.Unmarshal(a.data) != nil {
		a.drop()
		a.dep = codecs.AV1Depacketizer{}
		return
	}
	obus := bs[:0]
	for _, obu := range bs {
		if len(obu) > 0 && av1.OBUType(obu[0]>>3&0x0f) != av1.OBUTypeTemporalDelimiter {
			obus = append(obus, obu)
		}
	}
	if len(obus) == 0 {
		return
	}
	key := av1.IsRandomAccess2(obus)
	if !a.accept(key) {
		return
	}
	emit(&Frame{Timestamp: ts, Keyframe: key, NALUs: obus, Arrival: a.arrival})
}

// AV1SequenceHeader returns the sequence header OBU of a temporal unit (as
// AV1 gives them: OBUs without size fields), nil if it has none.
func AV1SequenceHeader(obus [][]byte) []byte {
	for _, obu := range obus {
		if len(obu) > 0 && av1.OBUType(obu[0]>>3&0x0f) == av1.OBUTypeSequenceHeader {
			return obu
		}
	}
	return nil
}
