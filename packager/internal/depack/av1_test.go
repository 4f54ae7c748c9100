package depack

import (
	"bytes"
	"testing"
)

// AV1 RTP payloads (aomediacodec.github.io/av1-rtp-spec §4.4): an
// aggregation header |Z|Y|W W|N|0|0|0| and, with W = 1, one OBU element
// without a length field. OBU headers here carry no size field: type 1 is
// a sequence header (0x08), type 6 a frame (0x30). (Senders leave out
// temporal delimiters, §5; pion's depacketizer refuses an OBU without a
// payload, which a temporal delimiter is.)
func av1Payload(z, y, n bool, element ...byte) []byte {
	h := byte(1 << 4) // W = 1
	if z {
		h |= 0x80
	}
	if y {
		h |= 0x40
	}
	if n {
		h |= 0x08
	}
	return append([]byte{h}, element...)
}

func TestAV1(t *testing.T) {
	var a AV1
	a.WaitKeyframe()
	got, emit := collect()
	push := func(seq uint64, ts uint32, marker, lost bool, payload []byte) {
		t.Helper()
		if err := a.Push(Packet{Seq: seq, Timestamp: ts, Marker: marker, Payload: payload}, lost, emit); err != nil {
			t.Fatalf("packet %d: %v", seq, err)
		}
	}
	seqHdr := []byte{0x08, 0x00, 0x00, 0x00, 0x42}
	// An inter unit before any keyframe is dropped.
	push(1, 0, true, false, av1Payload(false, false, false, 0x30, 1, 2))
	// A keyframe: a sequence header in one packet, a frame OBU fragmented
	// over two (Y on the first, Z on the second).
	push(3, 3000, false, false, av1Payload(false, false, true, seqHdr...))
	push(4, 3000, false, false, av1Payload(false, true, false, 0x30, 0xa1, 0xa2))
	push(5, 3000, true, false, av1Payload(true, false, false, 0xa3, 0xa4))
	// An inter unit.
	push(6, 6000, true, false, av1Payload(false, false, false, 0x30, 0xb1))
	if len(*got) != 2 {
		t.Fatalf("%d units, want 2", len(*got))
	}
	if k := (*got)[0]; !k.Keyframe || len(k.NALUs) != 2 || !bytes.Equal(k.NALUs[0], seqHdr) || !bytes.Equal(k.NALUs[1], []byte{0x30, 0xa1, 0xa2, 0xa3, 0xa4}) {
		t.Fatalf("keyframe unit %x (keyframe %v)", k.NALUs, k.Keyframe)
	}
	if !bytes.Equal(AV1SequenceHeader((*got)[0].NALUs), seqHdr) || AV1SequenceHeader((*got)[1].NALUs) != nil {
		t.Fatal("AV1SequenceHeader is wrong")
	}
	if i := (*got)[1]; i.Keyframe || len(i.NALUs) != 1 || i.Timestamp-(*got)[0].Timestamp != 3000 {
		t.Fatalf("inter unit %x at %d (keyframe %v)", i.NALUs, i.Timestamp, i.Keyframe)
	}
	// A loss in the middle of a fragmented OBU drops the unit and the
	// inter units after it, until a keyframe.
	push(7, 9000, false, false, av1Payload(false, true, false, 0x30, 0xc1))
	push(9, 9000, true, true, av1Payload(true, false, false, 0xc2))
	push(10, 12000, true, false, av1Payload(false, false, false, 0x30, 0xd1))
	push(11, 15000, false, false, av1Payload(false, false, true, seqHdr...))
	push(12, 15000, true, false, av1Payload(false, false, false, 0x30, 0xe1))
	if len(*got) != 3 || !(*got)[2].Keyframe || a.Dropped != 3 {
		t.Fatalf("after a loss: %d units (want 3, the last a keyframe), %d dropped (want 3)", len(*got), a.Dropped)
	}
	if err := a.Push(Packet{Seq: 13, Timestamp: 18000, Marker: true, Payload: []byte{0x10}}, false, emit); err == nil {
		t.Fatal("a payload without an OBU was accepted")
	}
}

// FuzzAV1 feeds arbitrary payloads, marker bits and loss flags through the
// reorder buffer and the AV1 assembler: nothing may panic, and no unit
// that comes out is empty or holds an empty OBU.
func FuzzAV1(f *testing.F) {
	f.Add(av1Payload(false, false, true, 0x08, 0, 0, 0, 0x42), true, uint16(0), false)
	f.Add(av1Payload(false, true, false, 0x30, 1, 2), false, uint16(1), false)
	f.Add(av1Payload(true, false, false, 3, 4), true, uint16(2), true)
	f.Add([]byte{0x20, 0x05, 0x30, 1}, true, uint16(3), false) // W = 2, a length past the end
	f.Add([]byte{0x00, 0xff, 0xff, 0xff, 0xff, 0x0f}, true, uint16(4), false)
	f.Fuzz(func(t *testing.T, payload []byte, marker bool, seq uint16, lost bool) {
		var a AV1
		emit := func(fr *Frame) {
			if len(fr.NALUs) == 0 {
				t.Fatal("empty unit")
			}
			for _, o := range fr.NALUs {
				if len(o) == 0 {
					t.Fatal("empty OBU")
				}
			}
		}
		pushFuzzed(payload, marker, seq, lost, a.Push, emit)
	})
}
