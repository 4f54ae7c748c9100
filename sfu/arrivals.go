package sfu

import (
	"sync"
	"sync/atomic"
	"time"
)

// Arrivals remembers when the kernel received recent RTP packets on the
// server's media socket, keyed by SSRC and sequence number (which SRTP
// leaves in the clear). The socket's reader records each datagram as it
// reads it; a Track looks its packet up once pion has read, decrypted and
// handed it over, so that the packet's Arrival, and every latency measured
// from it, includes the time spent in pion's read path and waiting for the
// goroutines on it, which can be milliseconds on a busy server.
//
// It is a fixed table that later packets overwrite: no entry needs to be
// evicted when a publisher leaves, and a packet not found (overwritten,
// or never stamped: ICE-TCP, a kernel without SO_TIMESTAMPNS) arrives
// "now", as it did before the table.
type Arrivals struct {
	mu    sync.Mutex
	slots [arrivalSlots]arrivalSlot

	found, missed atomic.Uint64
	// Ingress measures the packets found, from the kernel's receive time
	// to the track: pion's read path and the waits for the goroutines on it.
	Ingress LatencyHistogram
}

type arrivalSlot struct {
	key uint64 // 1<<48 | ssrc<<16 | seq; 0: empty
	at  int64  // unix nanoseconds, the kernel's wall clock
}

// arrivalSlots covers a few hundred milliseconds of a busy server's
// ingress: a packet is looked up within milliseconds of its arrival.
const arrivalSlots = 8192

// maxArrivalAge bounds how long before now a packet's recorded arrival may
// be and still be taken: anything older is a stale entry of an SSRC and
// sequence number that came round again.
const maxArrivalAge = time.Second

func arrivalKey(ssrc uint32, seq uint16) (key uint64, slot int) {
	key = 1<<48 | uint64(ssrc)<<16 | uint64(seq)
	h := (ssrc * 0x9e3779b1) ^ uint32(seq)
	return key, int(h % arrivalSlots)
}

// Record notes that the packet ssrc/seq reached the socket at t.
func (a *Arrivals) Record(ssrc uint32, seq uint16, t time.Time) {
	key, i := arrivalKey(ssrc, seq)
	a.mu.Lock()
	a.slots[i] = arrivalSlot{key: key, at: t.UnixNano()}
	a.mu.Unlock()
}

// Arrival returns when packet ssrc/seq reached the socket, as a time on
// now's clock (now carries Go's monotonic reading; the kernel's time is
// the wall clock's, so it is placed by its distance from now's wall
// reading), or now if it is not known or implausible.
func (a *Arrivals) Arrival(ssrc uint32, seq uint16, now time.Time) time.Time {
	if a == nil {
		return now
	}
	key, i := arrivalKey(ssrc, seq)
	a.mu.Lock()
	s := a.slots[i]
	a.mu.Unlock()
	age := time.Duration(now.UnixNano() - s.at)
	if s.key != key || age < 0 || age > maxArrivalAge {
		a.missed.Add(1)
		return now
	}
	a.found.Add(1)
	a.Ingress.Observe(age)
	return now.Add(-age)
}

// Counts returns how many lookups found the kernel's time and how many
// did not.
func (a *Arrivals) Counts() (found, missed uint64) {
	return a.found.Load(), a.missed.Load()
}
