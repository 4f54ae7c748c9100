package kstamp

import "testing"

func TestRTPKey(t *testing.T) {
	rtp := []byte{0x80, 0x60, 0x12, 0x34, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef}
	for _, c := range []struct {
		name string
		b    []byte
		ssrc uint32
		seq  uint16
		ok   bool
	}{
		{"RTP", rtp, 0xdeadbeef, 0x1234, true},
		{"RTP with marker", append([]byte{0x80, 0xe0}, rtp[2:]...), 0xdeadbeef, 0x1234, true},
		{"RTCP sender report", append([]byte{0x80, 200}, rtp[2:]...), 0, 0, false},
		{"RTCP type 223", append([]byte{0x80, 223}, rtp[2:]...), 0, 0, false},
		{"STUN", append([]byte{0x00, 0x01}, rtp[2:]...), 0, 0, false},
		{"DTLS", append([]byte{22, 0xfe}, rtp[2:]...), 0, 0, false},
		{"short", rtp[:11], 0, 0, false},
		{"empty", nil, 0, 0, false},
	} {
		ssrc, seq, ok := RTPKey(c.b)
		if ssrc != c.ssrc || seq != c.seq || ok != c.ok {
			t.Errorf("%s: RTPKey = %#x, %#x, %v; want %#x, %#x, %v", c.name, ssrc, seq, ok, c.ssrc, c.seq, c.ok)
		}
	}
}

// FuzzRTPKey: any input, no panic, and a key only for 12 bytes or more of
// RTP version 2.
func FuzzRTPKey(f *testing.F) {
	f.Add([]byte{0x80, 0x60, 0x12, 0x34, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef})
	f.Add([]byte{0x80, 200, 0, 6})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, _, ok := RTPKey(b); ok && (len(b) < 12 || b[0]>>6 != 2) {
			t.Errorf("key for %x", b)
		}
	})
}
