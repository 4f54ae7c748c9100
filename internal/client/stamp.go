package client

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/hybridcast/hybridcast/internal/kstamp"
)

// stampTable remembers when the kernel received each RTP packet of one
// viewer's sockets (SO_TIMESTAMPNS), keyed by SSRC and sequence number,
// which SRTP leaves in the clear. The socket read goroutine writes it and
// the track's read goroutine looks packets up once pion has decrypted
// them. The kernel's time is the packet's arrival at the viewer's machine,
// whenever the viewer's goroutines get to run, so a load generator that
// shares the CPU with the server can still tell the server's delay from
// its own.
type stampTable struct {
	base  time.Time // the zero of the 48-bit stamps
	mu    sync.RWMutex
	rings map[uint32]*stampRing
}

// stampRingSize covers a second of 4 Mbit/s video: a packet is looked up
// within milliseconds of its arrival, unless the reader falls that far
// behind.
const stampRingSize = 4096

// stampRing holds, per slot, the sequence number in the top 16 bits and
// the kernel time in the low 48 (nanoseconds since the table's base, about
// 78 hours of range).
type stampRing [stampRingSize]atomic.Uint64

func newStampTable() *stampTable {
	return &stampTable{base: time.Now().Round(0), rings: map[uint32]*stampRing{}}
}

// maxStampSSRCs bounds the table: a viewer receives audio, video and
// perhaps RTX; anything beyond is not ours to track.
const maxStampSSRCs = 8

// record notes that the RTP packet in b (an SRTP datagram) reached the
// socket at t. Non-RTP datagrams (STUN, DTLS, RTCP) are ignored.
func (s *stampTable) record(b []byte, t time.Time) {
	ssrc, seq, ok := kstamp.RTPKey(b)
	if !ok {
		return
	}
	d := t.Sub(s.base)
	if d < 0 || d >= 1<<48 {
		return
	}
	s.mu.RLock()
	r := s.rings[ssrc]
	s.mu.RUnlock()
	if r == nil {
		s.mu.Lock()
		if r = s.rings[ssrc]; r == nil {
			if len(s.rings) >= maxStampSSRCs {
				s.mu.Unlock()
				return
			}
			r = new(stampRing)
			s.rings[ssrc] = r
		}
		s.mu.Unlock()
	}
	r[seq%stampRingSize].Store(uint64(seq)<<48 | uint64(d))
}

// lookup returns when the kernel received packet seq of ssrc, or the zero
// Time if it is not known (no timestamp, or overwritten since).
func (s *stampTable) lookup(ssrc uint32, seq uint16) time.Time {
	if s == nil {
		return time.Time{}
	}
	s.mu.RLock()
	r := s.rings[ssrc]
	s.mu.RUnlock()
	if r == nil {
		return time.Time{}
	}
	v := r[seq%stampRingSize].Load()
	if v == 0 || uint16(v>>48) != seq {
		return time.Time{}
	}
	return s.base.Add(time.Duration(v & (1<<48 - 1)))
}
