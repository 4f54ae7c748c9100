package sfu

import (
	"time"

	"github.com/pion/rtp"
)

// Rewriter turns the packets of one or more successive source tracks into
// one continuous RTP stream for a viewer: its own SSRC, gap-free sequence
// numbers (upstream losses stay gaps, so the viewer can NACK them) and
// timestamps that keep increasing when the source changes (a publisher that
// reconnects, or later a simulcast layer switch).
//
// A Rewriter is used by one goroutine.
type Rewriter struct {
	ssrc        uint32
	payloadType uint8
	clockRate   uint32

	started   bool
	switching bool
	seqOffset uint64 // out = uint16(in.Seq + seqOffset)
	tsOffset  uint32 // out = in.Timestamp + tsOffset

	lastOut     uint16    // newest outgoing sequence number
	lastIn      uint64    // the forwarding Seq it was made from
	lastTS      uint32    // newest outgoing timestamp
	lastArrival time.Time // arrival of the packet that had lastTS
	sourceFirst uint64    // first forwarding Seq of the current source

	// Catch-up (CatchUp): packets up to cuLast (0: none) get the caught-up
	// timestamps and are never retransmitted; cuLast stays until the next
	// source. (A packet up to cuLast cannot come again after the live ones:
	// the subscription drops what the history already gave it.)
	cuLast      uint64
	cuLastTS    uint32 // source timestamp of the packet cuLast
	cuFrame     bool   // cuIn/cuOut hold the frame being caught up
	cuIn, cuOut uint32 // its source and outgoing timestamp
}

// NewRewriter returns a Rewriter for one outgoing stream. initialSeq and
// initialTS seed the outgoing numbering (RFC 3550 §5.1 recommends random
// initial values).
func NewRewriter(ssrc uint32, payloadType uint8, clockRate uint32, initialSeq uint16, initialTS uint32) *Rewriter {
	return &Rewriter{
		ssrc: ssrc, payloadType: payloadType, clockRate: clockRate,
		lastOut: initialSeq - 1, lastTS: initialTS,
	}
}

// SetPayloadType changes the outgoing payload type.
func (r *Rewriter) SetPayloadType(pt uint8) { r.payloadType = pt }

// PayloadType returns the outgoing payload type.
func (r *Rewriter) PayloadType() uint8 { return r.payloadType }

// SwitchSource tells the Rewriter that the next packet comes from a new
// source: it continues the outgoing sequence and timeline from there.
func (r *Rewriter) SwitchSource() { r.switching, r.cuLast = true, 0 }

// Rewrite fills out with p's header rewritten for the outgoing stream. The
// header extensions of the source are dropped: their IDs belong to the
// publisher's session. out.Extensions keeps its capacity for reuse.
func (r *Rewriter) Rewrite(p *Packet, out *rtp.Header) {
	if !r.started || r.switching {
		r.seqOffset = uint64(r.lastOut+1) - p.Seq
		ts := r.lastTS
		if r.started {
			// Advance the timeline by the wall-clock time between the last
			// packet of the old source and the first of the new, at least
			// one tick, so that timestamps never go backwards.
			gap := p.Arrival.Sub(r.lastArrival)
			ticks := uint32(1)
			if gap > 0 {
				ticks = max(1, uint32(gap.Seconds()*float64(r.clockRate)))
			}
			ts += ticks
		}
		r.tsOffset = ts - p.Timestamp
		r.sourceFirst = p.Seq
		r.lastIn = p.Seq - 1
		r.started, r.switching = true, false
	}
	// Padding was stripped from the payload by the parser; the outgoing
	// packet carries none.
	r.Retransmission(p, out)
	if p.Seq <= r.cuLast {
		out.Timestamp = r.caughtUp(p)
	}
	if int16(out.SequenceNumber-r.lastOut) > 0 {
		r.lastOut, r.lastIn = out.SequenceNumber, p.Seq
	}
	if int32(out.Timestamp-r.lastTS) > 0 {
		r.lastTS, r.lastArrival = out.Timestamp, p.Arrival
	}
}

// CatchUp tells the Rewriter that the source's packets up to forwarding
// sequence number last, whose RTP timestamp is lastTS, were queued for the
// viewer at once from the track's history (sfu.Backfill), and that the next
// packet is the first of them. Those frames get the timestamp of the last
// one, each one tick more than the frame before, so that they look as
// recent as the last: the viewer decodes them at once and shows the latest
// picture, instead of scheduling the live frames after them up to the
// backfill's age late (a receiver times playout from the first frames it
// gets). The live packets keep their timestamps and with them the stream's
// clock (its sender reports).
//
// Call it after SwitchSource (or before the first packet), on the
// Rewriter's goroutine. The caught-up packets are not retransmitted:
// SourceSeq refuses them, because a copy would carry another timestamp.
func (r *Rewriter) CatchUp(last uint64, lastTS uint32) {
	r.cuLast, r.cuLastTS, r.cuFrame = last, lastTS, false
}

// caughtUp returns the outgoing timestamp of a caught-up packet.
func (r *Rewriter) caughtUp(p *Packet) uint32 {
	if r.cuFrame && p.Timestamp == r.cuIn {
		return r.cuOut // the frame's other packets
	}
	ts := r.cuLastTS + r.tsOffset
	if r.cuFrame {
		ts = r.cuOut + 1
	}
	r.cuFrame, r.cuIn, r.cuOut = true, p.Timestamp, ts
	return ts
}

// Retransmission fills out with the header that p had when it was first
// sent to the viewer, for answering a NACK. It does not change the
// Rewriter's state. p must come from the current source.
func (r *Rewriter) Retransmission(p *Packet, out *rtp.Header) {
	exts := out.Extensions[:0]
	*out = p.Header
	out.Extensions = exts
	out.Extension = false
	out.ExtensionProfile = 0
	out.SSRC = r.ssrc
	out.PayloadType = r.payloadType
	out.SequenceNumber = uint16(p.Seq + r.seqOffset)
	out.Timestamp = p.Timestamp + r.tsOffset
	out.Padding = false
	out.PaddingSize = 0
}

// SourceSeq maps an outgoing sequence number (from a viewer's NACK) back to
// the current source's forwarding sequence number. It fails for numbers
// from before the last source switch or never sent.
func (r *Rewriter) SourceSeq(out uint16) (uint64, bool) {
	if !r.started {
		return 0, false
	}
	diff := int64(int16(out - r.lastOut))
	if diff > 0 {
		return 0, false
	}
	in := int64(r.lastIn) + diff
	if in < int64(r.sourceFirst) || uint64(in) <= r.cuLast {
		return 0, false
	}
	return uint64(in), true
}

// Timeline relates the outgoing timestamps to the current source's: a live
// packet of the source goes out with its timestamp + offset. lastTS is the
// newest outgoing timestamp and lastArrival the arrival of the packet that
// had it. ok is false before the first packet and between a SwitchSource
// and the new source's first packet.
func (r *Rewriter) Timeline() (offset, lastTS uint32, lastArrival time.Time, ok bool) {
	return r.tsOffset, r.lastTS, r.lastArrival, r.started && !r.switching
}

// Last returns the newest outgoing sequence number and timestamp.
func (r *Rewriter) Last() (seq uint16, ts uint32) { return r.lastOut, r.lastTS }
