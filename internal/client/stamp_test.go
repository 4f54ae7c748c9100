package client

import (
	"encoding/binary"
	"testing"
	"time"
)

// rtpHeader is a 12-byte RTP header with the given sequence number and
// SSRC (version 2, payload type 96).
func rtpHeader(seq uint16, ssrc uint32) []byte {
	b := make([]byte, 12)
	b[0], b[1] = 0x80, 96
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[8:], ssrc)
	return b
}

func TestStampTable(t *testing.T) {
	s := newStampTable()
	t0 := time.Now().Round(0) // wall clock only, as the kernel's times are
	s.record(rtpHeader(7, 0xabcd), t0)
	if got := s.lookup(0xabcd, 7); !got.Equal(t0) {
		t.Fatalf("lookup = %v, want %v", got, t0)
	}
	// Unknown SSRC, unknown sequence number.
	if got := s.lookup(0x1234, 7); !got.IsZero() {
		t.Fatalf("unknown SSRC: %v", got)
	}
	if got := s.lookup(0xabcd, 8); !got.IsZero() {
		t.Fatalf("unknown seq: %v", got)
	}
	// A later packet in the same slot replaces it: the old one is gone,
	// not answered with the new one's time.
	s.record(rtpHeader(7+stampRingSize, 0xabcd), t0.Add(time.Second))
	if got := s.lookup(0xabcd, 7); !got.IsZero() {
		t.Fatalf("overwritten slot answered %v", got)
	}
	if got := s.lookup(0xabcd, 7+stampRingSize); !got.Equal(t0.Add(time.Second)) {
		t.Fatalf("new packet: %v", got)
	}
	// RTCP (a sender report, packet type 200), STUN and short datagrams
	// are not RTP.
	sr := rtpHeader(9, 0xabcd)
	sr[1] = 200
	s.record(sr, t0)
	s.record([]byte{0x00, 0x01, 0, 0}, t0)
	s.record(rtpHeader(9, 0xabcd)[:11], t0)
	if got := s.lookup(0xabcd, 9); !got.IsZero() {
		t.Fatalf("non-RTP datagram recorded: %v", got)
	}
	// A nil table (no KernelTimestamps) answers zero.
	var none *stampTable
	if got := none.lookup(0xabcd, 7); !got.IsZero() {
		t.Fatalf("nil table: %v", got)
	}
	// At most maxStampSSRCs streams are tracked.
	for i := range maxStampSSRCs + 2 {
		s.record(rtpHeader(1, uint32(i)), t0)
	}
	if got := s.lookup(maxStampSSRCs+1, 1); !got.IsZero() {
		t.Fatalf("SSRC beyond the bound tracked: %v", got)
	}
}
