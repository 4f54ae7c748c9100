package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// minPLIInterval bounds how often a viewer asks for a keyframe.
const minPLIInterval = 500 * time.Millisecond

// PlayConfig configures [Play].
type PlayConfig struct {
	// URL is the WHEP endpoint, e.g. http://127.0.0.1:8080/whep/mystream.
	URL string
	// Token, if set, is sent as "Authorization: Bearer <Token>".
	Token string
	// Loopback restricts ICE to 127.0.0.1 over UDP and turns mDNS off, for
	// tests. By default every interface is used.
	Loopback bool
	// TCP, with Loopback, makes ICE use TCP (the server's ICE-TCP) instead
	// of UDP.
	TCP bool
	// OfferPassive offers a=setup:passive (the viewer is the DTLS server),
	// as some WHEP clients do, instead of pion's actpass.
	OfferPassive bool
	// Logger receives the viewer's logs. Nil discards them.
	Logger *slog.Logger
	// HTTPClient sends the POST and DELETE requests. Nil means
	// http.DefaultClient.
	HTTPClient *http.Client
	// ConnectTimeout bounds the wait for ICE and DTLS after the answer is
	// set. Zero means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// RecordH264, if set, is a file that receives every decodable H.264
	// access unit in Annex-B form, for ffprobe. It is flushed and closed
	// by Close.
	RecordH264 string
	// RequestKeyframes makes the viewer send a PLI (at most every 500 ms)
	// while its video reference chain is broken, as browsers do. By
	// default it never asks.
	RequestKeyframes bool
	// OnFrame, if set, is called from the video read goroutine for every
	// frame received. It must not block.
	OnFrame func(VideoFrame)
	// Lean keeps only NACK generation and receiver reports among pion's
	// interceptors (no per-packet stats, no TWCC): for load generators.
	Lean bool
	// ReceiveBuffer, if positive, is the kernel receive buffer asked for on
	// the viewer's UDP sockets, in bytes (load generators).
	ReceiveBuffer int
	// KernelTimestamps asks the kernel for each UDP datagram's receive
	// time (SO_TIMESTAMPNS, Linux) and reports it per video packet in
	// VideoFrame.KernelAt: a load generator sharing the server's CPU can
	// then measure the server's delay apart from its own.
	KernelTimestamps bool
	// GRO turns on UDP generic receive offload (UDP_GRO, Linux) on the
	// viewer's sockets: a run of datagrams the server sent in one
	// segmented send (UDP GSO) reaches the socket whole and is cut apart
	// in the read, instead of by the kernel datagram by datagram on
	// delivery. On loopback the kernel charges that delivery to the
	// sender, so a load generator on the server's machine would add its
	// own receiving to the server's CPU; over a network the server's card
	// cuts the run and the receiving is the viewer machine's. Each
	// datagram of a run has the run's kernel receive time.
	GRO bool
	// RTX offers RTX (RFC 4588) for every video codec, as browsers do:
	// retransmissions then come on their own stream, which pion unwraps
	// (VideoStats.Repaired counts them).
	RTX bool
}

// ViewerStats is a snapshot of what a viewer has received.
type ViewerStats struct {
	Video VideoStats
	Audio AudioStats
}

// Viewer is a running WHEP playback. Its methods are safe for concurrent
// use.
type Viewer struct {
	sess *session
	log  *slog.Logger
	cfg  PlayConfig

	record     *os.File
	recordBuf  *bufio.Writer
	closeOnce  sync.Once
	closeErr   error
	wg         sync.WaitGroup
	mu         sync.Mutex // guards the fields below
	closed     bool
	video      *videoAnalyzer
	audio      *audioAnalyzer
	firstVideo chan struct{}
	stamps     *stampTable // nil without KernelTimestamps
}

// Play connects to a WHEP endpoint with one receive-only audio and one
// receive-only video transceiver (H.264 or VP8 video, Opus audio) and
// starts counting what arrives. It returns once ICE and DTLS are
// connected; ctx bounds only this setup, and [Viewer.Close] ends playback.
// A status other than 201 Created is returned as an *[HTTPError].
func Play(ctx context.Context, cfg PlayConfig) (*Viewer, error) {
	log := cfg.Logger
	if log == nil {
		log = discardLogger
	}
	log = log.With("component", "whep_client", "url", cfg.URL)
	video := []webrtc.RTPCodecParameters{
		h264Codec(102, "42e01f"),
		h264Codec(108, "42001f"),
		h264Codec(123, "4d001f"),
		h264Codec(125, "640c1f"),
		vp8Codec,
	}
	var stamps *stampTable
	if cfg.KernelTimestamps {
		stamps = newStampTable()
	}
	api, err := newAPIWith(video, true, cfg.Loopback, cfg.TCP, cfg.Lean, cfg.RTX, cfg.ReceiveBuffer, stamps, cfg.GRO)
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("client: play: new peer connection: %w", err)
	}
	v := &Viewer{
		sess:       newSession(pc, cfg.HTTPClient, cfg.Token, log),
		log:        log,
		stamps:     stamps,
		cfg:        cfg,
		audio:      &audioAnalyzer{},
		firstVideo: make(chan struct{}),
	}
	v.sess.passive = cfg.OfferPassive
	if cfg.RecordH264 != "" {
		f, err := os.Create(cfg.RecordH264)
		if err != nil {
			_ = pc.Close()
			return nil, fmt.Errorf("client: play: %w", err)
		}
		v.record, v.recordBuf = f, bufio.NewWriterSize(f, 1<<16)
	}
	if err := v.setup(ctx); err != nil {
		return nil, errors.Join(err, v.Close())
	}
	log.Info("playing", "location", v.sess.location.String())
	return v, nil
}

func (v *Viewer) setup(ctx context.Context) error {
	pc := v.sess.pc
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			return fmt.Errorf("client: play: add %s transceiver: %w", kind, err)
		}
	}
	pc.OnTrack(v.onTrack)
	if err := v.sess.negotiate(ctx, v.cfg.URL); err != nil {
		return err
	}
	return v.sess.waitConnected(ctx, v.cfg.ConnectTimeout)
}

// onTrack starts the goroutines reading a remote track's RTP and its
// receiver's RTCP, unless the viewer is closing.
func (v *Viewer) onTrack(track *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return
	}
	log := v.log.With("kind", track.Kind().String(), "codec", track.Codec().MimeType, "ssrc", uint32(track.SSRC()))
	log.Info("track started")
	// Reading the receiver's RTCP lets the report interceptor see sender
	// reports, so receiver reports carry LSR/DLSR.
	v.wg.Go(func() {
		for {
			if _, _, err := receiver.ReadRTCP(); err != nil {
				return
			}
		}
	})
	switch {
	case track.Kind() == webrtc.RTPCodecTypeVideo && v.video == nil:
		a := newVideoAnalyzer(track.Codec().MimeType, nil)
		a.stamps = v.stamps != nil
		if v.recordBuf != nil { // not a typed nil in the interface
			a.record = v.recordBuf
		}
		v.video = a
		close(v.firstVideo)
		v.wg.Go(func() { v.readVideo(track, a, log) })
	case track.Kind() == webrtc.RTPCodecTypeAudio:
		v.wg.Go(func() { v.readAudio(track) })
	default:
		log.Warn("ignoring extra video track")
		v.wg.Go(func() {
			for {
				if _, _, err := track.ReadRTP(); err != nil {
					return
				}
			}
		})
	}
}

func (v *Viewer) readVideo(track *webrtc.TrackRemote, a *videoAnalyzer, log *slog.Logger) {
	var lastPLI time.Time
	for {
		pkt, attrs, err := track.ReadRTP()
		if err != nil {
			log.Debug("video read ended", "error", err)
			return
		}
		if attrs != nil && attrs.Get(webrtc.AttributeRtxSsrc) != nil {
			a.noteRepaired()
		}
		now := time.Now()
		frames := a.pushAt(pkt, now, v.stamps.lookup(pkt.SSRC, pkt.SequenceNumber))
		if cb := v.cfg.OnFrame; cb != nil {
			for _, f := range frames {
				cb(f)
			}
		}
		if v.cfg.RequestKeyframes && now.Sub(lastPLI) >= minPLIInterval && a.needKeyframe() {
			lastPLI = now
			pli := &rtcp.PictureLossIndication{MediaSSRC: uint32(track.SSRC())}
			if err := v.sess.pc.WriteRTCP([]rtcp.Packet{pli}); err != nil {
				log.Debug("send PLI", "error", err)
			} else {
				a.notePLI()
			}
		}
	}
}

func (v *Viewer) readAudio(track *webrtc.TrackRemote) {
	v.mu.Lock()
	a := v.audio
	a.mu.Lock()
	a.stats.MimeType = track.Codec().MimeType
	a.mu.Unlock()
	v.mu.Unlock()
	for {
		pkt, _, err := track.ReadRTP()
		if err != nil {
			return
		}
		a.push(pkt, time.Now())
	}
}

// Stats returns a snapshot of what the viewer has received so far.
func (v *Viewer) Stats() ViewerStats {
	v.mu.Lock()
	video, audio := v.video, v.audio
	v.mu.Unlock()
	var s ViewerStats
	if video != nil {
		s.Video = video.snapshot()
	}
	s.Audio = audio.snapshot()
	return s
}

// VideoStarted is closed when the first video packet has arrived.
func (v *Viewer) VideoStarted() <-chan struct{} { return v.firstVideo }

// Done is closed when the PeerConnection fails or is closed, e.g. when the
// server ends the session.
func (v *Viewer) Done() <-chan struct{} { return v.sess.ended }

// Location returns the session URL from the server's Location header.
func (v *Viewer) Location() string {
	if v.sess.location == nil {
		return ""
	}
	return v.sess.location.String()
}

// Close sends DELETE to the session URL, closes the PeerConnection, waits
// for the viewer's goroutines and finishes the recording. Later calls
// return the first call's error.
func (v *Viewer) Close() error {
	v.closeOnce.Do(func() {
		v.mu.Lock()
		v.closed = true
		v.mu.Unlock()
		errs := []error{v.sess.teardown()}
		v.wg.Wait()
		if v.record != nil {
			if v.video != nil && v.video.recordErr != nil {
				errs = append(errs, fmt.Errorf("client: write recording: %w", v.video.recordErr))
			}
			if err := v.recordBuf.Flush(); err != nil {
				errs = append(errs, fmt.Errorf("client: flush recording: %w", err))
			}
			if err := v.record.Close(); err != nil {
				errs = append(errs, fmt.Errorf("client: close recording: %w", err))
			}
		}
		v.closeErr = errors.Join(errs...)
	})
	return v.closeErr
}
