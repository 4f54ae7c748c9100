package whep

import "time"

// resendInterval is the shortest time between two retransmissions of one
// packet to one viewer. A viewer asks again for a packet that has not come
// yet (pion every 100 ms, Chromium every round trip, up to ten times), and
// on a busy server the first retransmission may still be queued: resending
// it on every request turns one loss into a storm of duplicates that takes
// the CPU the queue needs to drain (measured with examples/load at 200
// viewers: 1.09 million packets reported lost, 48 % of frames delivered,
// a fifth of the server's CPU spent on retransmissions). After this
// interval the packet is resent again, in case the retransmission itself
// was lost.
const resendInterval = 200 * time.Millisecond

// resendMemory is how many recent retransmissions a resendGuard remembers,
// one slot per sequence number modulo this (about two seconds of 720p).
const resendMemory = 512

// resendGuard remembers when each recently retransmitted packet was last
// sent. It is not safe for concurrent use.
type resendGuard struct {
	marks [resendMemory]resendMark
}

type resendMark struct {
	seq uint16
	at  time.Duration // on the caller's monotonic clock; 0 is an empty slot
}

// allow reports whether packet seq may be resent now, and if so records
// it. now must be positive and must not go backwards.
func (g *resendGuard) allow(seq uint16, now time.Duration) bool {
	m := &g.marks[seq%resendMemory]
	if m.at != 0 && m.seq == seq && now-m.at < resendInterval {
		return false
	}
	m.seq, m.at = seq, now
	return true
}
