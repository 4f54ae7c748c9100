package sfu

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// MaxPacketSize is the largest RTP packet a Track accepts, in bytes. It is
// larger than any WebRTC MTU (pion receives at most 1460 bytes by default).
const MaxPacketSize = 1500

// Packet is one RTP packet as a Track forwards it. Its header is the
// publisher's, unchanged; subscribers that present a continuous stream to a
// viewer rewrite a copy of it (see [Rewriter]).
//
// A Packet is shared by every subscriber of the track and by the track's NACK
// history: treat it as read-only, and do not retain it after
// Subscriber.WriteRTP returns unless you took a reference with [Track.Lookup].
type Packet struct {
	rtp.Packet

	// Seq is the track's forwarding sequence number: the publisher's sequence
	// number extended to 64 bits, with padding-only packets taken out, so a
	// subscriber can rewrite it into a gap-free stream. Losses upstream
	// remain gaps.
	Seq uint64
	// Keyframe is true on the first packet of a video keyframe (for H.264,
	// the packet that carries the SPS or the start of the IDR) and on every
	// audio packet. A subscriber may start decoding at such a packet.
	Keyframe bool
	// Arrival is when the packet reached the server: the kernel's receive
	// time where the track's Arrivals has it, else when it reached the track.
	Arrival time.Time

	refs atomic.Int32
	pool *packetPool
	buf  [MaxPacketSize]byte
}

// Release drops a reference taken with [Track.Lookup].
func (p *Packet) Release() {
	switch n := p.refs.Add(-1); {
	case n == 0:
		p.pool.put(p)
	case n < 0:
		// A double release is a bug in the caller; make it loud in tests
		// without crashing a live server.
		p.refs.Store(0)
		p.pool.errors.Add(1)
	}
}

func (p *Packet) retain() { p.refs.Add(1) }

// packetPool recycles Packets with their buffers.
type packetPool struct {
	pool   sync.Pool
	errors atomic.Uint64
}

func newPacketPool() *packetPool {
	pp := &packetPool{}
	pp.pool.New = func() any { return &Packet{pool: pp} }
	return pp
}

func (pp *packetPool) get() *Packet {
	p := pp.pool.Get().(*Packet)
	p.refs.Store(1)
	return p
}

func (pp *packetPool) put(p *Packet) {
	p.Payload = nil
	pp.pool.Put(p)
}

// load copies raw into p's buffer and parses it.
func (p *Packet) load(raw []byte) error {
	if len(raw) > MaxPacketSize {
		return fmt.Errorf("%w: %d bytes", ErrPacketTooLarge, len(raw))
	}
	n := copy(p.buf[:], raw)
	if err := p.Unmarshal(p.buf[:n]); err != nil {
		return fmt.Errorf("sfu: parse rtp packet: %w", err)
	}
	return nil
}

// loadPacket marshals pkt into p's buffer and parses it back, so that p owns
// every byte it refers to.
func (p *Packet) loadPacket(pkt *rtp.Packet) error {
	size := pkt.MarshalSize()
	if size > MaxPacketSize {
		return fmt.Errorf("%w: %d bytes", ErrPacketTooLarge, size)
	}
	n, err := pkt.MarshalTo(p.buf[:])
	if err != nil {
		return fmt.Errorf("sfu: marshal rtp packet: %w", err)
	}
	if err := p.Unmarshal(p.buf[:n]); err != nil {
		return fmt.Errorf("sfu: parse rtp packet: %w", err)
	}
	return nil
}
