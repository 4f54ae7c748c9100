package whep

import (
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hybridcast/hybridcast/sfu"
	"github.com/hybridcast/hybridcast/sfu/rtc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// downTrack is one outgoing track of a viewer.
type downTrack struct {
	id, streamID string
	kind         webrtc.RTPCodecType
	log          *slog.Logger

	bound     chan struct{} // closed by the first Bind
	boundOnce sync.Once

	mu      sync.Mutex // guards everything below
	writer  webrtc.TrackLocalWriter
	ssrc    uint32
	codecs  []webrtc.RTPCodecParameters
	src     *sfu.Track
	rw      *sfu.Rewriter
	canSend bool // the viewer negotiated the source's codec

	fwdHdr rtp.Header // scratch for the forwarding goroutine
	rtxHdr rtp.Header // scratch for the RTCP goroutine

	packets, bytes, nacks, resent, plis atomic.Uint64
}

var (
	_ webrtc.TrackLocal = (*downTrack)(nil)
	_ sfu.Subscriber    = (*downTrack)(nil)
)

func newDownTrack(kind webrtc.RTPCodecType, streamID string, log *slog.Logger) *downTrack {
	return &downTrack{id: kind.String(), streamID: streamID, kind: kind, log: log, bound: make(chan struct{})}
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
	d.ssrc = uint32(ctx.SSRC())
	d.codecs = codecs
	chosen := codecs[0]
	if d.src != nil {
		if c, ok := d.matchCodec(d.src.Info()); ok {
			chosen = c
		}
	}
	clock := chosen.ClockRate
	d.rw = sfu.NewRewriter(d.ssrc, uint8(chosen.PayloadType), clock, uint16(rand.Uint32()), rand.Uint32())
	if d.src != nil {
		d.setSourceLocked(d.src)
	}
	d.mu.Unlock()
	d.boundOnce.Do(func() { close(d.bound) })
	d.log.Debug("bound", "kind", d.kind.String(), "codec", chosen.MimeType, "pt", chosen.PayloadType)
	return chosen, nil
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

// setSource switches the downtrack to a new source track; the next packet
// continues the outgoing numbering.
func (d *downTrack) setSource(t *sfu.Track) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.src = t
	if d.rw != nil {
		d.setSourceLocked(t)
	}
}

func (d *downTrack) setSourceLocked(t *sfu.Track) {
	d.rw.SwitchSource()
	c, ok := d.matchCodec(t.Info())
	d.canSend = ok
	if !ok {
		d.log.Warn("viewer did not negotiate the publisher's codec; not sending this track",
			"kind", d.kind.String(), "codec", t.Info().MimeType)
		return
	}
	d.rw.SetPayloadType(uint8(c.PayloadType))
}

// WriteRTP forwards one packet of the source (sfu.Subscriber). It runs on
// the subscription's goroutine.
func (d *downTrack) WriteRTP(p *sfu.Packet) error {
	d.mu.Lock()
	w := d.writer
	if w == nil || !d.canSend {
		d.mu.Unlock()
		return nil
	}
	d.rw.Rewrite(p, &d.fwdHdr)
	d.mu.Unlock()
	if _, err := w.WriteRTP(&d.fwdHdr, p.Payload); err != nil {
		return err
	}
	d.packets.Add(1)
	d.bytes.Add(uint64(len(p.Payload)))
	return nil
}

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
	d.rw.Retransmission(p, &d.rtxHdr)
	d.mu.Unlock()
	if _, err := w.WriteRTP(&d.rtxHdr, p.Payload); err == nil {
		d.resent.Add(1)
	}
}
