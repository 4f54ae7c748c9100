package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// DefaultMTU is the largest RTP payload a publisher sends unless
// PublishConfig.MTU says otherwise. It leaves room in a 1200-byte packet
// for the RTP header, header extensions and the SRTP tag.
const DefaultMTU = 1160

// maxLag is how far the send loop may fall behind real time (after a
// stall) before it gives up catching up and continues from now.
const maxLag = time.Second

// ErrNoMedia is returned by Publish when the config has no clip.
var ErrNoMedia = errors.New("client: no video or audio clip to publish")

// PublishConfig configures [Publish].
type PublishConfig struct {
	// URL is the WHIP endpoint, e.g. http://127.0.0.1:8080/whip/mystream.
	URL string
	// Token, if set, is sent as "Authorization: Bearer <Token>" on POST
	// and DELETE.
	Token string
	// Video is an H.264, VP8, VP9 or AV1 clip, or nil to publish audio
	// only. The only video codec offered is the clip's: H.264 with
	// packetization-mode=1 and profile-level-id=42e01f, VP8, VP9 profile 0,
	// or AV1.
	Video *Clip
	// Audio is an Opus clip, or nil to publish video only.
	Audio *Clip
	// Loopback restricts ICE to 127.0.0.1 over UDP and turns mDNS off, for
	// tests. By default every interface is used.
	Loopback bool
	// Logger receives the publisher's logs. Nil discards them.
	Logger *slog.Logger
	// HTTPClient sends the POST and DELETE requests. Nil means
	// http.DefaultClient.
	HTTPClient *http.Client
	// ConnectTimeout bounds the wait for ICE and DTLS after the answer is
	// set. Zero means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// MTU is the largest RTP payload in bytes. Zero means DefaultMTU.
	MTU int
	// OnFrameSent, if set, is called from the send goroutine for each
	// video frame just before its first packet is written, so that no
	// receiver can see a frame before its SentFrame exists. It must not
	// block.
	OnFrameSent func(SentFrame)
	// PaceFactor, if above zero, spreads video packets over time as a
	// browser's pacer does: at most PaceFactor times the clip's mean
	// bitrate (Chrome paces at 2.5 times its target bitrate), so a
	// keyframe leaves over tens of milliseconds instead of in one burst.
	// Zero writes each frame's packets at once.
	PaceFactor float64
	// OnPacketSent, if set, is called from the send goroutine just before
	// each video packet is written, with the frame's RTP timestamp, the
	// packet's position in the frame (0 first) and the time. With pacing a
	// frame's packets leave over time, and this says when each one did.
	// It must not block.
	OnPacketSent func(timestamp uint32, index int, at time.Time)
	// OnSendStart, if set, is called once from the send goroutine before
	// its first packet: a load tool can lock that goroutine to its thread
	// and give the thread its own scheduling. Every RTP write happens on
	// that goroutine.
	OnSendStart func()
}

// SentFrame describes a video frame a publisher has sent.
type SentFrame struct {
	// Index is the frame's position in the clip.
	Index int
	// Timestamp is the RTP timestamp it was sent with.
	Timestamp uint32
	// Keyframe reports an IDR access unit or a VP8 key frame.
	Keyframe bool
	// Requested reports that a keyframe request (PLI or FIR) was pending
	// when the frame was chosen, so the send loop skipped ahead to it.
	Requested bool
	// Packets is the number of RTP packets the frame took.
	Packets int
	// SentAt is when the frame's first packet was written (the callback
	// runs just before). With pacing it can be later than the frame's
	// capture time.
	SentAt time.Time
	// Fingerprint is [PayloadFingerprint] of the last packet's payload.
	Fingerprint uint64
}

// PublisherStats counts what a publisher has sent and received.
type PublisherStats struct {
	// FramesSent and KeyframesSent count video frames.
	FramesSent, KeyframesSent uint64
	// RequestedKeyframes counts keyframes sent early to answer a PLI or
	// FIR.
	RequestedKeyframes uint64
	// VideoPackets and VideoBytes count video RTP packets and payload
	// bytes.
	VideoPackets, VideoBytes uint64
	// AudioFramesSent counts Opus packets (one per RTP packet).
	AudioFramesSent uint64
	// Loops counts completed passes over the video clip (or the audio clip
	// when there is no video).
	Loops uint64
	// PLIsReceived, FIRsReceived and NACKsReceived count RTCP feedback
	// received on the video sender.
	PLIsReceived, FIRsReceived, NACKsReceived uint64
	// WriteErrors counts failed track writes.
	WriteErrors uint64
}

// Publisher is a running WHIP publication. Its methods are safe for
// concurrent use.
type Publisher struct {
	sess *session
	log  *slog.Logger
	cfg  PublishConfig

	videoTrack, audioTrack *webrtc.TrackLocalStaticRTP
	keyframes              []int // indexes of the video clip's keyframes
	keyframeWanted         atomic.Bool

	stop      chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup

	framesSent, keyframesSent, requested, videoPackets, videoBytes atomic.Uint64
	audioSent, loops, plis, firs, nacks, writeErrors               atomic.Uint64
}

// Publish connects to a WHIP endpoint and starts sending cfg.Video and
// cfg.Audio in a loop, paced in real time. It returns once ICE and DTLS
// are connected; ctx bounds only this setup, and [Publisher.Close] ends
// the publication. A status other than 201 Created is returned as an
// *[HTTPError].
func Publish(ctx context.Context, cfg PublishConfig) (*Publisher, error) {
	if cfg.Video == nil && cfg.Audio == nil {
		return nil, ErrNoMedia
	}
	if cfg.Video != nil && len(cfg.Video.Frames) == 0 || cfg.Audio != nil && len(cfg.Audio.Frames) == 0 {
		return nil, ErrEmptyClip
	}
	if cfg.MTU <= 0 {
		cfg.MTU = DefaultMTU
	}
	log := cfg.Logger
	if log == nil {
		log = discardLogger
	}
	log = log.With("component", "whip_client", "url", cfg.URL)

	var video []webrtc.RTPCodecParameters
	if cfg.Video != nil {
		switch {
		case strings.EqualFold(cfg.Video.MimeType, webrtc.MimeTypeH264):
			video = append(video, h264Codec(102, "42e01f"))
		case strings.EqualFold(cfg.Video.MimeType, webrtc.MimeTypeVP8):
			video = append(video, vp8Codec)
		case strings.EqualFold(cfg.Video.MimeType, webrtc.MimeTypeVP9):
			video = append(video, vp9Codec)
		case strings.EqualFold(cfg.Video.MimeType, webrtc.MimeTypeAV1):
			video = append(video, av1Codec)
		default:
			return nil, fmt.Errorf("client: publish: unsupported video codec %q", cfg.Video.MimeType)
		}
	}
	if cfg.Audio != nil && !strings.EqualFold(cfg.Audio.MimeType, webrtc.MimeTypeOpus) {
		return nil, fmt.Errorf("client: publish: unsupported audio codec %q", cfg.Audio.MimeType)
	}
	api, err := newAPI(video, cfg.Audio != nil, cfg.Loopback)
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("client: publish: new peer connection: %w", err)
	}
	p := &Publisher{
		sess: newSession(pc, cfg.HTTPClient, cfg.Token, log),
		log:  log,
		cfg:  cfg,
		stop: make(chan struct{}),
	}
	if err := p.setup(ctx); err != nil {
		return nil, errors.Join(err, p.Close())
	}
	p.wg.Go(p.run)
	log.Info("publishing", "location", p.sess.location.String())
	return p, nil
}

func (p *Publisher) setup(ctx context.Context) error {
	const streamID = "hybridcast"
	pc := p.sess.pc
	if c := p.cfg.Video; c != nil {
		t, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: c.MimeType, ClockRate: c.ClockRate}, "video", streamID)
		if err != nil {
			return fmt.Errorf("client: publish: video track: %w", err)
		}
		tr, err := pc.AddTransceiverFromTrack(t, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return fmt.Errorf("client: publish: add video: %w", err)
		}
		p.videoTrack, p.keyframes = t, c.Keyframes()
		if len(p.keyframes) == 0 {
			p.log.Warn("video clip has no keyframe", "path", c.Path)
		}
		p.wg.Go(func() { p.readRTCP(tr.Sender(), true) })
	}
	if c := p.cfg.Audio; c != nil {
		t, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: c.MimeType, ClockRate: c.ClockRate, Channels: 2}, "audio", streamID)
		if err != nil {
			return fmt.Errorf("client: publish: audio track: %w", err)
		}
		tr, err := pc.AddTransceiverFromTrack(t, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return fmt.Errorf("client: publish: add audio: %w", err)
		}
		p.audioTrack = t
		p.wg.Go(func() { p.readRTCP(tr.Sender(), false) })
	}
	if err := p.sess.negotiate(ctx, p.cfg.URL); err != nil {
		return err
	}
	return p.sess.waitConnected(ctx, p.cfg.ConnectTimeout)
}

// Close stops sending, sends DELETE to the session URL, closes the
// PeerConnection and waits for the publisher's goroutines. It returns the
// DELETE or close error of the first call; later calls return the same.
func (p *Publisher) Close() error {
	p.closeOnce.Do(func() {
		close(p.stop)
		p.closeErr = p.sess.teardown()
		p.wg.Wait()
		p.log.Info("publisher closed", "frames_sent", p.framesSent.Load(), "plis_received", p.plis.Load())
	})
	return p.closeErr
}

// Done is closed when the PeerConnection fails or is closed, e.g. when the
// server ends the session.
func (p *Publisher) Done() <-chan struct{} { return p.sess.ended }

// Location returns the session URL from the server's Location header.
func (p *Publisher) Location() string {
	if p.sess.location == nil {
		return ""
	}
	return p.sess.location.String()
}

// Stats returns a snapshot of the publisher's counters.
func (p *Publisher) Stats() PublisherStats {
	return PublisherStats{
		FramesSent:         p.framesSent.Load(),
		KeyframesSent:      p.keyframesSent.Load(),
		RequestedKeyframes: p.requested.Load(),
		VideoPackets:       p.videoPackets.Load(),
		VideoBytes:         p.videoBytes.Load(),
		AudioFramesSent:    p.audioSent.Load(),
		Loops:              p.loops.Load(),
		PLIsReceived:       p.plis.Load(),
		FIRsReceived:       p.firs.Load(),
		NACKsReceived:      p.nacks.Load(),
		WriteErrors:        p.writeErrors.Load(),
	}
}

// readRTCP drains a sender's RTCP, which pion's interceptors need (NACK
// responder, reports), and turns PLI and FIR on the video sender into a
// keyframe request. It ends when the PeerConnection closes.
func (p *Publisher) readRTCP(sender *webrtc.RTPSender, video bool) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, pkt := range pkts {
			switch pkt.(type) {
			case *rtcp.PictureLossIndication:
				if video {
					p.plis.Add(1)
					p.keyframeWanted.Store(true)
				}
			case *rtcp.FullIntraRequest:
				if video {
					p.firs.Add(1)
					p.keyframeWanted.Store(true)
				}
			case *rtcp.TransportLayerNack:
				if video {
					p.nacks.Add(1)
				}
			}
		}
	}
}

// stream is the send state of one track, owned by the run goroutine.
type stream struct {
	clip    *Clip
	track   *webrtc.TrackLocalStaticRTP
	pay     rtp.Payloader
	pos     int    // next frame index
	ts      uint32 // next RTP timestamp
	seq     uint16 // next sequence number
	elapsed uint64 // clock ticks sent since start

	// With pacing: packets waiting to be written, and the pacer.
	queue []pacedPacket
	pace  pacer
}

// maxPaceCredit is how far behind its schedule the pacer may be and still
// catch up: a send loop woken late (a timer is never exact, and less so on
// a busy machine) writes the packets it owes at once, so the rate holds.
// Beyond it the pacer gives up the debt: a stall longer than this lowers
// the rate, and the load tool reports the publisher behind.
const maxPaceCredit = 20 * time.Millisecond

// pacer is a leaky bucket: a packet may go once the bytes written before
// it have drained at rate bytes per second.
type pacer struct {
	rate float64   // bytes per second; 0: no pacing
	next time.Time // the earliest time the next packet may go
}

// resume starts a frame queued behind an empty queue: after an idle spell
// the frame is paced from its first packet, with no credit saved up.
func (p *pacer) resume(now time.Time) {
	if p.next.Before(now) {
		p.next = now
	}
}

// sent accounts for n bytes written at now. A late write keeps its credit,
// up to maxPaceCredit, so that a late wakeup does not lower the rate.
func (p *pacer) sent(now time.Time, n int) {
	base := p.next
	if now.Sub(base) > maxPaceCredit {
		base = now.Add(-maxPaceCredit)
	}
	p.next = base.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
}

// pacedPacket is a video packet waiting in the pacer; frame is set on a
// frame's first packet, to be reported when that packet is written.
type pacedPacket struct {
	pkt   rtp.Packet
	frame *SentFrame
	index int // position in the frame
}

// meanBitrate returns the clip's mean bitrate in bits per second.
func meanBitrate(c *Clip) float64 {
	var bytes int
	for _, f := range c.Frames {
		bytes += len(f.Data)
	}
	d := c.Duration().Seconds()
	if d <= 0 {
		return 0
	}
	return float64(bytes) * 8 / d
}

func (s *stream) due(start time.Time) time.Time {
	return start.Add(ticksToDuration(s.elapsed, s.clip.ClockRate))
}

// run is the publisher's only send goroutine: one timer paces both tracks
// against the wall clock.
func (p *Publisher) run() {
	if p.cfg.OnSendStart != nil {
		p.cfg.OnSendStart()
	}
	var video, audio *stream
	if p.cfg.Video != nil {
		var pay rtp.Payloader = &codecs.H264Payloader{}
		switch {
		case strings.EqualFold(p.cfg.Video.MimeType, webrtc.MimeTypeVP8):
			pay = &codecs.VP8Payloader{EnablePictureID: true}
		case strings.EqualFold(p.cfg.Video.MimeType, webrtc.MimeTypeVP9):
			pay = &codecs.VP9Payloader{}
		case strings.EqualFold(p.cfg.Video.MimeType, webrtc.MimeTypeAV1):
			pay = &codecs.AV1Payloader{}
		}
		video = &stream{clip: p.cfg.Video, track: p.videoTrack, pay: pay, ts: rand.Uint32(), seq: uint16(rand.Uint32())}
		if p.cfg.PaceFactor > 0 {
			video.pace.rate = p.cfg.PaceFactor * meanBitrate(p.cfg.Video) / 8
		}
	}
	if p.cfg.Audio != nil {
		audio = &stream{clip: p.cfg.Audio, track: p.audioTrack, pay: &codecs.OpusPayloader{}, ts: rand.Uint32(), seq: uint16(rand.Uint32())}
	}
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		now := time.Now()
		next := now.Add(time.Hour)
		if video != nil && len(video.queue) > 0 {
			if !video.pace.next.After(now) {
				p.writePaced(video, now)
				continue
			}
			next = video.pace.next
		}
		if video != nil {
			if d := video.due(start); !d.After(now) {
				if lag := now.Sub(d); lag > maxLag {
					p.log.Warn("send loop fell behind, skipping ahead", "lag", lag)
					start = start.Add(lag)
				}
				p.sendVideo(video)
				continue
			} else if d.Before(next) {
				next = d
			}
		}
		if audio != nil {
			if d := audio.due(start); !d.After(now) {
				if lag := now.Sub(d); lag > maxLag {
					start = start.Add(lag)
				}
				p.sendAudio(audio, video == nil)
				continue
			} else if d.Before(next) {
				next = d
			}
		}
		timer.Reset(next.Sub(now))
		select {
		case <-p.stop:
			return
		case <-timer.C:
		}
	}
}

// nextVideoFrame returns the index of the frame to send at pos: pos itself,
// or with a keyframe wanted the first keyframe at or after pos, wrapping
// around the clip.
func nextVideoFrame(keyframes []int, pos int, wantKeyframe bool) int {
	if !wantKeyframe || len(keyframes) == 0 {
		return pos
	}
	for _, k := range keyframes {
		if k >= pos {
			return k
		}
	}
	return keyframes[0]
}

func (p *Publisher) sendVideo(s *stream) {
	wanted := p.keyframeWanted.Swap(false)
	idx := nextVideoFrame(p.keyframes, s.pos, wanted)
	if idx < s.pos {
		p.loops.Add(1)
	}
	f := s.clip.Frames[idx]
	// Counted before the frame goes out, so that whoever has seen it (its
	// OnFrameSent, or the receiving end) finds it in Stats.
	p.framesSent.Add(1)
	if f.Keyframe {
		p.keyframesSent.Add(1)
		if wanted {
			p.requested.Add(1)
		}
	}
	payloads := s.pay.Payload(uint16(p.cfg.MTU), f.Data)
	if len(payloads) == 0 {
		p.log.Warn("video frame gave no packets", "index", idx)
	}
	for i, pl := range payloads {
		pp := pacedPacket{pkt: rtp.Packet{
			Header: rtp.Header{
				Version:        2,
				Marker:         i == len(payloads)-1,
				SequenceNumber: s.seq,
				Timestamp:      s.ts,
			},
			Payload: pl,
		}, index: i}
		if i == 0 && p.cfg.OnFrameSent != nil {
			pp.frame = &SentFrame{
				Index:       idx,
				Timestamp:   s.ts,
				Keyframe:    f.Keyframe,
				Requested:   wanted && f.Keyframe,
				Packets:     len(payloads),
				Fingerprint: PayloadFingerprint(payloads[len(payloads)-1]),
			}
		}
		s.seq++
		if s.pace.rate > 0 {
			if len(s.queue) == 0 {
				s.pace.resume(time.Now())
			}
			s.queue = append(s.queue, pp)
		} else {
			p.writeVideo(s, &pp, time.Now())
		}
	}
	s.ts += f.Duration
	s.elapsed += uint64(f.Duration)
	s.pos = idx + 1
	if s.pos == len(s.clip.Frames) {
		s.pos = 0
		p.loops.Add(1)
	}
}

// writePaced writes the first queued packet and sets when the next may go.
func (p *Publisher) writePaced(s *stream, now time.Time) {
	pp := &s.queue[0]
	p.writeVideo(s, pp, now)
	s.pace.sent(now, len(pp.pkt.Payload))
	s.queue[0] = pacedPacket{}
	s.queue = s.queue[1:]
	if len(s.queue) == 0 {
		s.queue = s.queue[:0:0] // let the array go
	}
}

func (p *Publisher) writeVideo(s *stream, pp *pacedPacket, now time.Time) {
	if pp.frame != nil {
		pp.frame.SentAt = now
		p.cfg.OnFrameSent(*pp.frame)
	}
	if p.cfg.OnPacketSent != nil {
		p.cfg.OnPacketSent(pp.pkt.Timestamp, pp.index, now)
	}
	if err := s.track.WriteRTP(&pp.pkt); err != nil {
		p.noteWriteError(err)
	}
	p.videoBytes.Add(uint64(len(pp.pkt.Payload)))
	p.videoPackets.Add(1)
}

func (p *Publisher) sendAudio(s *stream, countLoops bool) {
	f := s.clip.Frames[s.pos]
	for _, pl := range s.pay.Payload(uint16(p.cfg.MTU), f.Data) {
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: s.seq, Timestamp: s.ts}, Payload: pl}
		s.seq++
		if err := s.track.WriteRTP(&pkt); err != nil {
			p.noteWriteError(err)
		}
	}
	p.audioSent.Add(1)
	s.ts += f.Duration
	s.elapsed += uint64(f.Duration)
	s.pos++
	if s.pos == len(s.clip.Frames) {
		s.pos = 0
		if countLoops {
			p.loops.Add(1)
		}
	}
}

func (p *Publisher) noteWriteError(err error) {
	if p.writeErrors.Add(1) == 1 {
		p.log.Warn("track write failed", "error", err)
	}
}
