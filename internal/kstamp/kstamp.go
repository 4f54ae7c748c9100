// Package kstamp reads the kernel's receive time of UDP datagrams
// (SO_TIMESTAMPNS on Linux) and the RTP key (SSRC and sequence number) that
// SRTP leaves in the clear, so that a packet's arrival can be known before
// the goroutines that decrypt and route it get to run.
package kstamp

// RTPKey returns the SSRC and sequence number of an RTP packet (or of an
// SRTP datagram, whose header is in the clear), and false for anything else:
// STUN, DTLS and RTCP, told apart as RFC 7983 and RFC 5761 §4 say (RTP
// version 2; RTCP packet types 192-223 sit where RTP has the marker bit and
// payload type).
func RTPKey(b []byte) (ssrc uint32, seq uint16, ok bool) {
	if len(b) < 12 || b[0]>>6 != 2 || (b[1] >= 192 && b[1] <= 223) {
		return 0, 0, false
	}
	seq = uint16(b[2])<<8 | uint16(b[3])
	ssrc = uint32(b[8])<<24 | uint32(b[9])<<16 | uint32(b[10])<<8 | uint32(b[11])
	return ssrc, seq, true
}
