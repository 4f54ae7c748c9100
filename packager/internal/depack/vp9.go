package depack

import (
	"errors"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/vp9"
	"github.com/pion/rtp/codecs"
)

// ErrVP9Start is a VP9 packet that continues a frame whose start was not seen.
var ErrVP9Start = errors.New("depack: VP9 packet without the start of its frame")

// VP9 assembles VP9 frames from in-order packets (the RTP payload format of
// draft-ietf-payload-vp9 / RFC 9628): the payload descriptor's B and E
// flags, or the marker bit, delimit a frame. One spatial layer is assumed,
// as in WebRTC simulcast; a frame is kept whole (a superframe stays one
// sample, as VP9 in MP4 stores it). A frame is a keyframe when its
// uncompressed header says so.
type VP9 struct {
	unit

	data  []byte
	pkt   codecs.VP9Packet
	frame [1][]byte
}

// Push takes the next packet in sequence order (lost says packets were
// lost just before it) and calls emit with each complete frame, as the one
// element of Frame.NALUs. The frame's bytes are the caller's to keep; the
// Frame and its NALUs slice are valid until the next call to Push.
func (v *VP9) Push(p Packet, lost bool, emit func(*Frame)) error {
	if lost {
		v.lost()
	}
	if v.inFrame && p.Timestamp != v.ts {
		v.finish(emit) // the end of the last frame was lost
	}
	payload, err := v.pkt.Unmarshal(p.Payload)
	if err != nil {
		v.lost()
		return err
	}
	switch {
	case v.pkt.B:
		if v.inFrame {
			v.broken = true
			v.finish(emit) // its end was lost
		}
		// A new buffer per frame: the pipeline keeps the frame it was given.
		v.inFrame, v.broken, v.ts, v.data = true, false, p.Timestamp, nil
	case !v.inFrame:
		v.needKey = true
		return ErrVP9Start
	}
	v.arrival = p.Arrival
	if len(v.data)+len(payload) > MaxFrameSize {
		v.broken = true
		err = ErrTooLarge
	} else {
		v.data = append(v.data, payload...)
	}
	if v.pkt.E || p.Marker {
		v.finish(emit)
	}
	return err
}

func (v *VP9) finish(emit func(*Frame)) {
	v.inFrame = false
	ts := v.unwrap.Extend(v.ts)
	if v.broken || len(v.data) == 0 {
		v.drop()
		return
	}
	key := IsVP9Keyframe(v.data)
	if !v.accept(key) {
		return
	}
	v.frame[0] = v.data
	emit(&Frame{Timestamp: ts, Keyframe: key, NALUs: v.frame[:], Arrival: v.arrival})
}

// IsVP9Keyframe reports whether frame (a VP9 frame or superframe) starts
// with a keyframe's uncompressed header.
func IsVP9Keyframe(frame []byte) bool {
	var h vp9.Header
	return h.Unmarshal(frame) == nil && !h.NonKeyFrame && !h.ShowExistingFrame
}
