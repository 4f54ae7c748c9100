package depack

import (
	"bytes"
	"errors"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/vp9"
)

// vp9Key is the start of a VP9 profile 0 keyframe of 320x180, written bit by
// bit from the uncompressed header syntax (VP9 bitstream spec §6.2):
// frame_marker 2, profile 0, show_existing_frame 0, frame_type 0 (key),
// show_frame 1, error_resilient_mode 0, the sync code 49 83 42,
// color_space 1, color_range 0, width-1 = 319, height-1 = 179; then
// filler standing in for the compressed data.
var vp9Key = []byte{0x82, 0x49, 0x83, 0x42, 0x20, 0x13, 0xf0, 0x0b, 0x30, 0xaa, 0xbb}

// vp9Inter starts an inter frame: frame_type 1.
var vp9Inter = []byte{0x86, 0x00, 0x11, 0x22}

// vp9Packet puts a payload descriptor (non-flexible, no picture ID) before
// data: B starts a frame, E ends it, P marks an inter frame.
func vp9Packet(b, e, p bool, data []byte) []byte {
	d := byte(0)
	if p {
		d |= 0x40
	}
	if b {
		d |= 0x08
	}
	if e {
		d |= 0x04
	}
	return append([]byte{d}, data...)
}

func TestVP9KeyframeHeader(t *testing.T) {
	var h vp9.Header
	if err := h.Unmarshal(vp9Key); err != nil || h.Width() != 320 || h.Height() != 180 || h.NonKeyFrame {
		t.Fatalf("test keyframe parses as %+v, %v", h, err)
	}
	if !IsVP9Keyframe(vp9Key) || IsVP9Keyframe(vp9Inter) || IsVP9Keyframe([]byte{0x00}) {
		t.Fatal("IsVP9Keyframe is wrong")
	}
}

func TestVP9(t *testing.T) {
	var v VP9
	v.WaitKeyframe()
	got, emit := collect()
	push := func(seq uint64, ts uint32, marker, lost bool, payload []byte) error {
		return v.Push(Packet{Seq: seq, Timestamp: ts, Marker: marker, Payload: payload}, lost, emit)
	}
	// An inter frame before any keyframe is dropped.
	if err := push(1, 0, true, false, vp9Packet(true, true, true, vp9Inter)); err != nil {
		t.Fatal(err)
	}
	// A keyframe in two packets, then an inter frame in one.
	key1, key2 := vp9Key[:5], vp9Key[5:]
	for _, err := range []error{
		push(2, 3000, false, false, vp9Packet(true, false, false, key1)),
		push(3, 3000, true, false, vp9Packet(false, true, false, key2)),
		push(4, 6000, true, false, vp9Packet(true, true, true, vp9Inter)),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(*got) != 2 || !(*got)[0].Keyframe || !bytes.Equal((*got)[0].NALUs[0], vp9Key) || (*got)[1].Keyframe || !bytes.Equal((*got)[1].NALUs[0], vp9Inter) {
		t.Fatalf("frames %+v", *got)
	}
	if (*got)[1].Timestamp-(*got)[0].Timestamp != 3000 {
		t.Fatalf("timestamps %d, %d", (*got)[0].Timestamp, (*got)[1].Timestamp)
	}
	// A loss in a frame drops it and the inter frames after it, until a
	// keyframe.
	_ = push(5, 9000, false, false, vp9Packet(true, false, true, vp9Inter))
	_ = push(7, 9000, true, true, vp9Packet(false, true, true, vp9Inter))
	_ = push(8, 12000, true, false, vp9Packet(true, true, true, vp9Inter))
	_ = push(9, 15000, true, false, vp9Packet(true, true, false, vp9Key))
	if len(*got) != 3 || !(*got)[2].Keyframe || v.Dropped != 3 {
		t.Fatalf("after a loss: %d frames (want 3, the last a keyframe), %d dropped (want 3)", len(*got), v.Dropped)
	}
	// A frame's middle without its start is an error.
	if err := push(10, 18000, true, false, vp9Packet(false, true, true, vp9Inter)); !errors.Is(err, ErrVP9Start) {
		t.Fatalf("continuation without a start: %v", err)
	}
	if err := push(11, 21000, true, false, nil); err == nil {
		t.Fatal("an empty payload was accepted")
	}
}

// FuzzVP9 feeds arbitrary payloads, marker bits and loss flags through the
// reorder buffer and the VP9 assembler: nothing may panic, and no frame
// that comes out is empty or over the size limit.
func FuzzVP9(f *testing.F) {
	f.Add(vp9Packet(true, true, false, vp9Key), true, uint16(0), false)
	f.Add(vp9Packet(true, false, true, vp9Inter), false, uint16(1), false)
	f.Add(vp9Packet(false, true, true, vp9Inter), true, uint16(2), true)
	f.Add([]byte{0x80}, true, uint16(3), false) // picture ID flag, no ID
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, true, uint16(4), false)
	f.Fuzz(func(t *testing.T, payload []byte, marker bool, seq uint16, lost bool) {
		var v VP9
		emit := func(fr *Frame) {
			if len(fr.NALUs) != 1 || len(fr.NALUs[0]) == 0 || len(fr.NALUs[0]) > MaxFrameSize {
				t.Fatalf("frame %d parts", len(fr.NALUs))
			}
		}
		pushFuzzed(payload, marker, seq, lost, v.Push, emit)
	})
}
