package ingest

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/pion/rtp"
)

// testTagger tags SSRCs 1111 and 2222 of section "0" with mid id 1, rid id 2.
func testTagger() *ridTagger {
	return newRIDTagger(&simLayers{sections: []simSection{{mid: "0", ssrcs: []uint32{1111, 2222}, midExtID: 1, ridExtID: 2}}})
}

type ext struct {
	id   uint8
	data string
}

// rtpPacket marshals a packet; profile 0 means no header extension.
func rtpPacket(t testing.TB, ssrc uint32, profile uint16, exts []ext, csrc []uint32, payload []byte, padding byte) []byte {
	t.Helper()
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 102, SequenceNumber: 7, Timestamp: 9, SSRC: ssrc, CSRC: csrc}, Payload: payload}
	if profile != 0 {
		p.Extension, p.ExtensionProfile = true, profile
		for _, e := range exts {
			if err := p.SetExtension(e.id, []byte(e.data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if padding > 0 {
		p.Padding, p.PaddingSize = true, padding
	}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withByte returns b with b[i] = v.
func withByte(b []byte, i int, v byte) []byte {
	b[i] = v
	return b
}

func TestTagRID(t *testing.T) {
	payload := bytes.Repeat([]byte{0x41, 0x9a}, 300)
	cases := []struct {
		name    string
		pkt     []byte
		room    int // bytes of buffer beyond the packet
		tagged  bool
		rid     string
		profile uint16
		keep    []ext // extensions that must survive
	}{
		{name: "no extension", pkt: rtpPacket(t, 1111, 0, nil, nil, payload, 0), room: 64, tagged: true, rid: "1111", profile: 0xBEDE},
		{name: "browser-like mid and twcc", pkt: rtpPacket(t, 2222, 0xBEDE, []ext{{1, "0"}, {3, "\x00\x07"}}, nil, payload, 0), room: 64, tagged: true, rid: "2222", profile: 0xBEDE, keep: []ext{{3, "\x00\x07"}}},
		{name: "two-byte form", pkt: rtpPacket(t, 1111, 0x1000, []ext{{200, "abcdefghijklmnopq"}}, nil, payload, 0), room: 64, tagged: true, rid: "1111", profile: 0x1000, keep: []ext{{200, "abcdefghijklmnopq"}}},
		{name: "CSRCs and padding", pkt: rtpPacket(t, 1111, 0xBEDE, []ext{{5, "xy"}}, []uint32{7, 8}, payload, 4), room: 64, tagged: true, rid: "1111", profile: 0xBEDE, keep: []ext{{5, "xy"}}},
		{name: "rid already there", pkt: rtpPacket(t, 1111, 0xBEDE, []ext{{2, "h"}}, nil, payload, 0), room: 64},
		{name: "other SSRC", pkt: rtpPacket(t, 3333, 0, nil, nil, payload, 0), room: 64},
		{name: "other profile", pkt: rtpPacket(t, 1111, 0x1234, nil, nil, payload, 0), room: 64},
		{name: "no room", pkt: rtpPacket(t, 1111, 0, nil, nil, payload, 0), room: 11},
		{name: "truncated", pkt: rtpPacket(t, 1111, 0, nil, nil, payload, 0)[:11], room: 64},
		{name: "not RTP version 2", pkt: append([]byte{0x40}, rtpPacket(t, 1111, 0, nil, nil, payload, 0)[1:]...), room: 64},
		{name: "extension longer than packet", pkt: append(rtpPacket(t, 1111, 0xBEDE, []ext{{5, "xy"}}, nil, nil, 0)[:14], 0xff, 0xff), room: 64},
		{name: "one-byte id 15", pkt: withByte(rtpPacket(t, 1111, 0xBEDE, []ext{{5, "x"}}, nil, payload, 0), 16, 0xf0), room: 64},
	}
	tg := testTagger()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			buf := make([]byte, len(c.pkt)+c.room)
			copy(buf, c.pkt)
			n := tg.tag(buf, len(c.pkt))
			if !c.tagged {
				if n != len(c.pkt) || !bytes.Equal(buf[:n], c.pkt) {
					t.Fatalf("packet changed:\n%x\n%x", c.pkt, buf[:n])
				}
				return
			}
			var before, after rtp.Packet
			if err := before.Unmarshal(c.pkt); err != nil {
				t.Fatal(err)
			}
			if err := after.Unmarshal(buf[:n]); err != nil {
				t.Fatalf("tagged packet does not parse: %v", err)
			}
			if got := string(after.GetExtension(2)); got != c.rid {
				t.Errorf("rid %q, want %q", got, c.rid)
			}
			if got := string(after.GetExtension(1)); got != "0" {
				t.Errorf("mid %q, want 0", got)
			}
			if after.ExtensionProfile != c.profile {
				t.Errorf("profile %#x, want %#x", after.ExtensionProfile, c.profile)
			}
			for _, e := range c.keep {
				if got := string(after.GetExtension(e.id)); got != e.data {
					t.Errorf("extension %d: %q, want %q", e.id, got, e.data)
				}
			}
			if !bytes.Equal(after.Payload, before.Payload) || after.PaddingSize != before.PaddingSize ||
				after.SSRC != before.SSRC || after.SequenceNumber != before.SequenceNumber || len(after.CSRC) != len(before.CSRC) {
				t.Errorf("packet changed beyond its extensions: %+v", after.Header)
			}
			if again := tg.tag(buf, n); again != n {
				t.Errorf("tagged twice: %d → %d bytes", n, again)
			}
		})
	}
}

// BenchmarkTagRID: a 1200-byte browser-like packet (mid and TWCC
// extensions) gets its rid; the copy that restores the packet each round is
// part of the figure.
func BenchmarkTagRID(b *testing.B) {
	for _, bc := range []struct {
		name string
		pkt  []byte
	}{
		{"plain", rtpPacket(b, 1111, 0, nil, nil, make([]byte, 1188), 0)},
		{"mid+twcc", rtpPacket(b, 1111, 0xBEDE, []ext{{1, "0"}, {3, "\x00\x07"}}, nil, make([]byte, 1180), 0)},
		{"other SSRC", rtpPacket(b, 3333, 0, nil, nil, make([]byte, 1188), 0)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tg := testTagger()
			buf := make([]byte, 1500)
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.pkt)))
			for b.Loop() {
				copy(buf, bc.pkt)
				tg.tag(buf, len(bc.pkt))
			}
		})
	}
}

// FuzzTagRID: tag never panics or writes past the buffer; a packet pion
// parses stays the same packet with the rid (and mid) added, and tagging
// is idempotent.
func FuzzTagRID(f *testing.F) {
	payload := []byte{0x65, 0x88, 0x84, 0x00}
	f.Add(rtpPacket(f, 1111, 0, nil, nil, payload, 0), uint8(40))
	f.Add(rtpPacket(f, 2222, 0xBEDE, []ext{{1, "0"}, {3, "\x00\x07"}}, nil, payload, 0), uint8(40))
	f.Add(rtpPacket(f, 1111, 0x1000, []ext{{200, "abc"}}, []uint32{5}, payload, 3), uint8(40))
	f.Add(rtpPacket(f, 1111, 0xBEDE, []ext{{2, "h"}}, nil, payload, 0), uint8(40))
	f.Add(rtpPacket(f, 1111, 0, nil, nil, payload, 0), uint8(3))
	f.Add([]byte{0x90, 0x66, 0, 1, 0, 0, 0, 9, 0, 0, 0x04, 0x57, 0xbe, 0xde, 0, 1, 0, 0, 0, 0}, uint8(16))
	tg := testTagger()
	f.Fuzz(func(t *testing.T, pkt []byte, room uint8) {
		buf := make([]byte, len(pkt)+int(room)+8)
		copy(buf, pkt)
		binary.BigEndian.PutUint64(buf[len(buf)-8:], 0x0123456789abcdef) // a guard beyond the room
		n := tg.tag(buf[:len(pkt)+int(room)], len(pkt))
		if n > len(pkt)+int(room) || binary.BigEndian.Uint64(buf[len(buf)-8:]) != 0x0123456789abcdef {
			t.Fatalf("wrote past the buffer: n %d", n)
		}
		changed := n != len(pkt) || !bytes.Equal(buf[:n], pkt)
		var before, after rtp.Packet
		if !changed || before.Unmarshal(pkt) != nil {
			return
		}
		if err := after.Unmarshal(buf[:n]); err != nil {
			t.Fatalf("tagged packet does not parse: %v\n%x\n%x", err, pkt, buf[:n])
		}
		rid := string(after.GetExtension(2))
		if before.SSRC != 1111 && before.SSRC != 2222 || rid != map[uint32]string{1111: "1111", 2222: "2222"}[before.SSRC] {
			t.Fatalf("SSRC %d tagged rid %q", before.SSRC, rid)
		}
		if !bytes.Equal(after.Payload, before.Payload) || after.PaddingSize != before.PaddingSize {
			t.Fatalf("payload changed:\n%x\n%x", pkt, buf[:n])
		}
		for _, id := range before.GetExtensionIDs() {
			if !bytes.Equal(after.GetExtension(id), before.GetExtension(id)) {
				t.Fatalf("extension %d changed:\n%x\n%x", id, pkt, buf[:n])
			}
		}
		if again := tg.tag(buf[:len(pkt)+int(room)], n); again != n {
			t.Fatalf("tagged twice")
		}
	})
}
