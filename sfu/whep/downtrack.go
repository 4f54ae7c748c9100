package whep

import (
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hybridcast/hybridcast/sfu"
	"github.com/hybridcast/hybridcast/sfu/rtc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// downTrack is one outgoing track of a viewer.
type downTrack struct {
	id, streamID string
	kind         webrtc.RTPCodecType
	log          *slog.Logger

	bound     chan struct{} // closed by the first Bind
	boundOnce sync.Once

	sendMu sync.Mutex              // orders writeFrom's sends; taken under mu, held after it
	mu     sync.Mutex              // guards everything below
	writer webrtc.TrackLocalWriter // pion's, or direct once set
	direct *rtc.DirectWriter       // the direct send path, nil if not taken
	// batcher is direct's, once set: subscriptions on the publication's shared
	// workers then leave their sends in the worker's batch.
	batcher  atomic.Pointer[sfu.Batcher]
	ssrc     uint32
	codecs   []webrtc.RTPCodecParameters
	src      *sfu.Track // forwarded now
	target   *sfu.Track // to switch to at its next keyframe
	rw       *sfu.Rewriter
	vp8      sfu.VP8Munger // picture IDs continuous across switches
	isVP8    bool          // the current source is VP8
	canSend  bool          // the viewer negotiated the source's codec
	switched chan struct{} // tells the session a switch happened (cap 1)

	resendBuf scratch // for retransmissions, on the RTCP goroutine
	// Probe padding goes out as RTX (RFC 4588) copies of recent packets,
	// from the session's run goroutine: a copy on the media stream itself
	// would be a replay, which the viewer's SRTP drops before its bandwidth
	// estimator sees it.
	pad    scratch
	padAge uint16          // how far back the next probe copy reaches
	rtxSeq uint16          // next RTX sequence number
	rtx    uint32          // RTX SSRC, 0 if the viewer did not negotiate RTX
	rtxPT  map[uint8]uint8 // media payload type → its RTX payload type
	resend *resendGuard    // one retransmission of a packet per resendInterval; made at the first NACK
	epoch  time.Time       // the resend guard's clock starts here

	absSendTimeID uint8 // negotiated abs-send-time extension ID, 0 if none

	latency *sfu.LatencyHistogram // arrival → handed to SRTP, shared by the handler's viewers

	packets, bytes, nacks, resent, resentRTX, plis, switches, probed atomic.Uint64
	remb                                                             atomic.Int64 // the viewer's latest REMB estimate, bit/s
}

var (
	_ webrtc.TrackLocal   = (*downTrack)(nil)
	_ sfu.BatchSubscriber = (*source)(nil)
)

func newDownTrack(kind webrtc.RTPCodecType, streamID string, switched chan struct{}, log *slog.Logger) *downTrack {
	return &downTrack{id: kind.String(), streamID: streamID, kind: kind, log: log, bound: make(chan struct{}), switched: switched, epoch: time.Now()}
}

func (d *downTrack) ID() string                { return d.id }
func (d *downTrack) RID() string               { return "" }
func (d *downTrack) StreamID() string          { return d.streamID }
func (d *downTrack) Kind() webrtc.RTPCodecType { return d.kind }

// Bind is called by pion once DTLS is up and the track can send.
func (d *downTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codecs := ctx.CodecParameters()
	if len(codecs) == 0 {
		return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
	}
	d.mu.Lock()
	d.writer = ctx.WriteStream()
	if d.direct != nil {
		d.writer = d.direct
	}
	d.ssrc = uint32(ctx.SSRC())
	for _, e := range ctx.HeaderExtensions() {
		if e.URI == sdp.ABSSendTimeURI {
			d.absSendTimeID = uint8(e.ID)
		}
	}
	d.codecs = codecs
	d.rtx, d.rtxPT, d.rtxSeq = uint32(ctx.SSRCRetransmission()), map[uint8]uint8{}, uint16(rand.Uint32())
	chosen, media := codecs[0], false
	for _, c := range codecs {
		if !strings.EqualFold(c.MimeType, webrtc.MimeTypeRTX) {
			if !media {
				chosen, media = c, true // the first media format, not an RTX one
			}
			continue
		}
		if apt, err := strconv.ParseUint(strings.TrimPrefix(c.SDPFmtpLine, "apt="), 10, 7); err == nil {
			d.rtxPT[uint8(apt)] = uint8(c.PayloadType)
		}
	}
	d.rw = sfu.NewRewriter(d.ssrc, uint8(chosen.PayloadType), chosen.ClockRate, uint16(rand.Uint32()), rand.Uint32())
	d.mu.Unlock()
	d.boundOnce.Do(func() { close(d.bound) })
	d.log.Debug("bound", "kind", d.kind.String(), "codec", chosen.MimeType, "pt", chosen.PayloadType)
	return chosen, nil
}

// setDirect sends the track's packets through w from now on, instead of
// through pion's writer.
func (d *downTrack) setDirect(w *rtc.DirectWriter) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.direct = w
	if d.writer != nil {
		d.writer = w
	}
	by := w.Batcher()
	d.batcher.Store(&by)
}

// Unbind is called by pion when the sender stops.
func (d *downTrack) Unbind(webrtc.TrackLocalContext) error {
	d.mu.Lock()
	d.writer = nil
	d.mu.Unlock()
	return nil
}

// matchCodec finds the negotiated codec for a source: the same format
// first, then the same MIME type. d.mu is held.
func (d *downTrack) matchCodec(info sfu.TrackInfo) (webrtc.RTPCodecParameters, bool) {
	want := webrtc.RTPCodecCapability{MimeType: info.MimeType, ClockRate: info.ClockRate, SDPFmtpLine: info.SDPFmtpLine}
	for _, c := range d.codecs {
		if rtc.SameCodec(c.RTPCodecCapability, want) {
			return c, true
		}
	}
	for _, c := range d.codecs {
		if strings.EqualFold(c.MimeType, info.MimeType) && c.ClockRate == info.ClockRate {
			return c, true
		}
	}
	return webrtc.RTPCodecParameters{}, false
}

// source adapts one source track's subscription to the downtrack, which
// must know which track each packet comes from.
type source struct {
	d     *downTrack
	track *sfu.Track
	// backfill is where the subscription started from the track's history
	// (sfu.FromRecentKeyframe), Last 0 if it did not. Set before the
	// subscription's goroutine starts, read only by it.
	backfill sfu.Backfill
	// Each source has one goroutine, and during a switch two sources write
	// at once: each has its own scratch space.
	scratch
}

// scratch is one goroutine's space for an outgoing packet: the rewritten
// header, its abs-send-time payload and a rewritten (VP8) payload.
type scratch struct {
	hdr rtp.Header
	ast [3]byte
	buf [sfu.MaxPacketSize]byte
}

// send writes the packet in sc with payload; a non-zero astID (read under
// the downtrack's lock) adds the abs-send-time extension. On the direct
// path a non-nil b, a shared worker's batch, takes the datagram.
func (sc *scratch) send(w webrtc.TrackLocalWriter, b sfu.Batch, payload []byte, astID uint8) error {
	if astID != 0 {
		setAbsSendTime(&sc.hdr, astID, &sc.ast, time.Now())
	}
	var err error
	if dw, ok := w.(*rtc.DirectWriter); ok && b != nil {
		_, err = dw.WriteRTPTo(b, &sc.hdr, payload)
	} else {
		_, err = w.WriteRTP(&sc.hdr, payload)
	}
	return err
}

func (s *source) WriteRTP(p *sfu.Packet) error { return s.d.writeFrom(s, p, nil) }

// Batcher returns the direct path's batcher once the viewer is on it
// (sfu.BatchSubscriber).
func (s *source) Batcher() sfu.Batcher {
	if by := s.d.batcher.Load(); by != nil {
		return *by
	}
	return nil
}

// WriteRTPBatch forwards one packet, leaving its datagram in b when it
// takes the direct path (sfu.BatchSubscriber).
func (s *source) WriteRTPBatch(p *sfu.Packet, b sfu.Batch) error { return s.d.writeFrom(s, p, b) }

// follow makes t the track to switch to: the next packet from t, which a
// keyframe-gated subscription makes a keyframe, switches to it. Until then
// the current source keeps flowing, so the viewer's picture never stops for
// longer than the new layer's keyframe takes, and its decoder never sees a
// P-frame of a layer it has no keyframe for.
func (d *downTrack) follow(t *sfu.Track) *source {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.target = t
	return &source{d: d, track: t}
}

// current returns the track being forwarded and the pending target.
func (d *downTrack) current() (cur, target *sfu.Track) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.src, d.target
}

// switchLocked makes t the forwarded source. d.mu is held.
func (d *downTrack) switchLocked(t *sfu.Track) {
	d.src, d.target = t, nil
	d.switches.Add(1)
	d.rw.SwitchSource()
	d.vp8.SwitchSource()
	d.isVP8 = strings.EqualFold(t.Info().MimeType, sfu.MimeTypeVP8)
	select {
	case d.switched <- struct{}{}:
	default:
	}
	c, ok := d.matchCodec(t.Info())
	d.canSend = ok
	if !ok {
		d.log.Warn("viewer did not negotiate the publisher's codec; not sending this track",
			"kind", d.kind.String(), "codec", t.Info().MimeType)
		return
	}
	d.rw.SetPayloadType(uint8(c.PayloadType))
}

// writeFrom forwards one packet of src's track. It runs on that track's
// subscription goroutine for this viewer, or on one of its shared workers:
// then b, if not nil, is the worker's batch, which takes the datagram
// when it goes by the direct path.
func (d *downTrack) writeFrom(src *source, p *sfu.Packet, b sfu.Batch) error {
	t := src.track
	d.mu.Lock()
	switch {
	case d.rw == nil: // not bound: cannot happen, sessions subscribe once connected
		d.mu.Unlock()
		return nil
	case t == d.target && p.Keyframe:
		d.switchLocked(t)
		if src.backfill.Last != 0 {
			d.rw.CatchUp(src.backfill.Last, src.backfill.LastTimestamp)
		}
	case t != d.src:
		d.mu.Unlock()
		return nil // the old layer after a switch, or the target before its keyframe
	}
	w := d.writer
	if w == nil || !d.canSend {
		d.mu.Unlock()
		return nil
	}
	d.rw.Rewrite(p, &src.hdr)
	payload := p.Payload
	if d.isVP8 {
		payload = d.vp8.Munge(payload, src.buf[:])
	}
	astID := d.absSendTimeID
	// During a switch the old and the new source's goroutines both get
	// here: sendMu, taken before mu is let go, keeps the packets in the
	// order of their rewritten sequence numbers (a viewer would see the
	// old layer's last packet after the new layer's first as a loss).
	d.sendMu.Lock()
	d.mu.Unlock()
	err := src.send(w, b, payload, astID)
	d.sendMu.Unlock()
	if err != nil {
		return err
	}
	if d.latency != nil {
		d.latency.Observe(time.Since(p.Arrival))
	}
	d.packets.Add(1)
	d.bytes.Add(uint64(len(p.Payload)))
	return nil
}

// senderReport returns the stream's RTCP sender report for now, once media
// has gone out.
//
// Its RTP time comes from the publisher's own sender reports when there
// are: the source's latest report, its NTP time moved onto our clock
// (sfu.PublisherClock, one offset for all the publisher's tracks), gives
// the source's RTP time at now, and the outgoing stream's is that plus the
// Rewriter's offset. The publisher's reports tie each stream's timestamps
// to its capture clock, so a viewer that lines up audio and video by their
// reports (RFC 3550 §6.4.1) plays them as the publisher captured them. A
// report made from the send times instead, as pion's interceptor makes it,
// ties a video frame to when its last packet left: after a paced keyframe
// that is tens of milliseconds late, and the publisher's encoder delay,
// which audio does not share, is lost. Before the publisher's first report
// the newest packet's arrival stands in.
func (d *downTrack) senderReport(now time.Time) (*rtcp.SenderReport, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rw == nil || d.src == nil || d.ssrc == 0 {
		return nil, false
	}
	offset, lastTS, lastArrival, ok := d.rw.Timeline()
	if !ok {
		return nil, false
	}
	clock := float64(d.src.Info().ClockRate)
	if clock <= 0 {
		return nil, false
	}
	rtpTime := lastTS + uint32(int64(now.Sub(lastArrival).Seconds()*clock))
	if sr, ok := d.src.SenderReport(); ok && !sr.ServerTime.IsZero() && now.Sub(sr.Arrival) < maxReportAge {
		rtpTime = sr.RTPTime + offset + uint32(int64(now.Sub(sr.ServerTime).Seconds()*clock))
	}
	return &rtcp.SenderReport{
		SSRC:        d.ssrc,
		NTPTime:     sfu.TimeToNTP(now),
		RTPTime:     rtpTime,
		PacketCount: uint32(d.packets.Load()),
		OctetCount:  uint32(d.bytes.Load()),
	}, true
}

// maxReportAge is how long a publisher's sender report stands for its
// stream's clock: publishers send one every second or so, and after a
// longer silence the arrivals are the better guide.
const maxReportAge = 10 * time.Second

// handleRTCP reacts to the viewer's feedback for this track.
func (d *downTrack) handleRTCP(pkts []rtcp.Packet) {
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			d.plis.Add(1)
			d.log.Debug("viewer asks for a keyframe", "kind", d.kind.String())
			d.mu.Lock()
			src := d.src
			d.mu.Unlock()
			if src != nil {
				src.RequestKeyframe()
			}
		case *rtcp.ReceiverEstimatedMaximumBitrate:
			d.remb.Store(int64(p.Bitrate))
			d.log.Debug("remb", "bitrate", p.Bitrate)
		case *rtcp.TransportLayerNack:
			for _, pair := range p.Nacks {
				pair.Range(func(seq uint16) bool {
					d.nacks.Add(1)
					d.retransmit(seq)
					return true
				})
			}
		}
	}
}

// retransmit resends one packet from the source's history.
func (d *downTrack) retransmit(out uint16) {
	d.mu.Lock()
	src, w := d.src, d.writer
	if src == nil || w == nil || !d.canSend {
		d.mu.Unlock()
		return
	}
	in, ok := d.rw.SourceSeq(out)
	if ok && d.resend == nil {
		d.resend = new(resendGuard) // 8 KB, only for viewers that lose packets
	}
	if ok && !d.resend.allow(out, time.Since(d.epoch)+1) {
		ok = false // resent a moment ago: still on its way
	}
	d.mu.Unlock()
	if !ok {
		return
	}
	p := src.Lookup(in)
	if p == nil {
		return
	}
	defer p.Release()
	d.mu.Lock()
	if d.src != src {
		d.mu.Unlock()
		return
	}
	sc := &d.resendBuf
	payload := d.resentLocked(p, &sc.hdr, sc.buf[2:])
	rtx := false
	if n, ok := d.rtxLocked(sc, payload); ok {
		payload, rtx = sc.buf[:n], true
	}
	astID := d.absSendTimeID
	d.mu.Unlock()
	if err := sc.send(w, nil, payload, astID); err == nil {
		d.resent.Add(1)
		if rtx {
			d.resentRTX.Add(1)
		}
	}
}

// rtxLocked makes the packet whose header is in sc.hdr and whose payload
// is payload (in sc.buf[2:] or elsewhere) an RTX packet (RFC 4588 §4): the
// original sequence number, then the payload, in sc.buf, on the RTX stream
// with its own sequence number. It returns the RTX payload's length, and
// false (changing nothing) when the viewer negotiated no RTX for the
// codec. A retransmission on the media stream itself works too, but a
// browser cannot tell it from the original and counts neither as
// retransmitted nor as recovered. d.mu is held.
func (d *downTrack) rtxLocked(sc *scratch, payload []byte) (int, bool) {
	rtxPT, ok := d.rtxPT[d.rw.PayloadType()]
	if d.rtx == 0 || !ok || 2+len(payload) > len(sc.buf) {
		return 0, false
	}
	osn := sc.hdr.SequenceNumber
	n := 2 + copy(sc.buf[2:], payload)
	sc.buf[0], sc.buf[1] = byte(osn>>8), byte(osn)
	sc.hdr.SSRC, sc.hdr.PayloadType, sc.hdr.SequenceNumber = d.rtx, rtxPT, d.rtxSeq
	d.rtxSeq++
	return n, true
}

// resentLocked fills hdr with the header p had when it was first sent to
// the viewer and returns its payload as then (VP8 picture IDs rewritten
// into dst), for a retransmission or a probe copy. d.mu is held.
func (d *downTrack) resentLocked(p *sfu.Packet, hdr *rtp.Header, dst []byte) []byte {
	d.rw.Retransmission(p, hdr)
	if d.isVP8 {
		return d.vp8.Retransmission(p.Payload, dst)
	}
	return p.Payload
}

// probeSpan is how many of the newest packets probe padding cycles
// through: about a frame of 720p, all still in the viewer's buffers.
const probeSpan = 8

// canProbe reports whether the viewer negotiated RTX for the codec being
// sent, which probe padding needs.
func (d *downTrack) canProbe() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rw == nil || d.rtx == 0 {
		return false
	}
	_, ok := d.rtxPT[d.rw.PayloadType()]
	return ok
}

// probe sends RTX copies of the current source's newest packets, each with
// a fresh abs-send-time, until about budget bytes have gone: probe traffic
// for the viewer's bandwidth estimator (see layerPolicy). The viewer's RTX
// receiver finds it has the packets already and drops them. It returns
// the bytes sent, 0 when there is nothing to copy.
func (d *downTrack) probe(budget int) int {
	sent := 0
	for misses := 0; sent < budget && misses < probeSpan; {
		d.mu.Lock()
		src, w := d.src, d.writer
		if d.rw == nil || src == nil || w == nil || !d.canSend || d.rtx == 0 {
			d.mu.Unlock()
			return sent
		}
		if _, ok := d.rtxPT[d.rw.PayloadType()]; !ok {
			d.mu.Unlock()
			return sent
		}
		last, _ := d.rw.Last()
		d.padAge = (d.padAge + 1) % probeSpan
		in, ok := d.rw.SourceSeq(last - d.padAge)
		d.mu.Unlock()
		var p *sfu.Packet
		if ok {
			p = src.Lookup(in)
		}
		if p == nil {
			misses++
			continue
		}
		d.mu.Lock()
		if d.src != src {
			d.mu.Unlock()
			p.Release()
			return sent
		}
		n, ok := d.rtxLocked(&d.pad, d.resentLocked(p, &d.pad.hdr, d.pad.buf[2:]))
		if !ok {
			d.mu.Unlock()
			p.Release()
			misses++
			continue
		}
		astID := d.absSendTimeID
		d.mu.Unlock()
		p.Release()
		if err := d.pad.send(w, nil, d.pad.buf[:n], astID); err != nil {
			return sent
		}
		d.probed.Add(1)
		sent += n
		misses = 0 // stop after a span of misses in a row, not in all
	}
	return sent
}

// estimate returns the viewer's latest bandwidth estimate in bit/s, 0 if
// none arrived.
func (d *downTrack) estimate() int { return int(d.remb.Load()) }

// setAbsSendTime adds the abs-send-time header extension
// (http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time): the send
// time as 24-bit 6.18 fixed-point seconds. buf is the caller's scratch, so
// nothing is allocated per packet.
func setAbsSendTime(h *rtp.Header, id uint8, buf *[3]byte, now time.Time) {
	ns := uint64(now.UnixNano())
	secs := ns / 1e9
	frac := (ns % 1e9) << 18 / 1e9
	v := uint32((secs<<18 | frac) & 0xffffff)
	buf[0], buf[1], buf[2] = byte(v>>16), byte(v>>8), byte(v)
	_ = h.SetExtension(id, buf[:])
}
