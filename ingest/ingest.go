package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/hybridcast/hybridcast/internal/signal"
	"github.com/hybridcast/hybridcast/sfu"
	"github.com/hybridcast/hybridcast/sfu/rtc"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// Config configures the WHIP endpoint.
type Config struct {
	Registry *sfu.Registry
	Engine   *rtc.Engine
	// Token is the Bearer token publishers must present; "" allows anyone.
	Token string
	// ICEServers are advertised to clients in Link headers.
	ICEServers []webrtc.ICEServer
	// GatherTimeout bounds the wait for our own ICE candidates. Default 5 s.
	GatherTimeout time.Duration
	Logger        *slog.Logger
}

// Handler serves the WHIP endpoint under /whip/.
type Handler struct {
	cfg Config
	log *slog.Logger
	*signal.Endpoint
}

var _ http.Handler = (*Handler)(nil)

// New makes the WHIP handler.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.GatherTimeout <= 0 {
		cfg.GatherTimeout = 5 * time.Second
	}
	h := &Handler{cfg: cfg, log: cfg.Logger.With("component", "whip")}
	h.Endpoint = signal.NewEndpoint(signal.EndpointConfig{
		Name:       "whip",
		Create:     h.publish,
		Run:        func(s signal.Resource, stop <-chan struct{}) { s.(*session).wait(stop) },
		Authorize:  func(r *http.Request) error { return signal.BearerToken(r, cfg.Token) },
		ICEServers: cfg.ICEServers,
		Logger:     h.log,
	})
	return h
}

// Sessions returns how many publishers are connected.
func (h *Handler) Sessions() int { return h.Len() }

func (h *Handler) publish(r *http.Request) (string, signal.Resource, string, error) {
	name := r.PathValue("stream")
	if err := signal.StreamName(name); err != nil {
		return "", nil, "", err
	}
	if err := signal.BearerToken(r, h.cfg.Token); err != nil {
		return "", nil, "", err
	}
	raw, offer, err := signal.ReadOffer(r)
	if err != nil {
		return "", nil, "", err
	}
	for _, m := range offer.Media {
		if m.Direction == "recvonly" || m.Direction == "inactive" {
			return "", nil, "", signal.Errorf(http.StatusBadRequest, "WHIP offer's %s section is %s: a publisher must send (sendonly)", m.Kind, m.Direction)
		}
	}
	raw, sim, err := rewriteSSRCSimulcast(raw)
	if err != nil {
		return "", nil, "", signal.Errorf(http.StatusBadRequest, "%w", err)
	}
	if sim != nil {
		for _, sec := range sim.sections {
			h.log.Info("simulcast announced by SSRC: layers named by SSRC", "stream", name, "mid", sec.mid, "ssrcs", sec.ssrcs)
		}
	}
	router := h.cfg.Registry.RouterFor(name)
	id := signal.NewID()
	pub, err := router.Publish(id)
	if errors.Is(err, sfu.ErrPublisherExists) {
		return "", nil, "", signal.Errorf(http.StatusConflict, "stream %q already has a publisher", name)
	}
	if err != nil {
		return "", nil, "", err
	}
	s, answer, err := h.newSession(r.Context(), id, name, pub, raw, offer, sim)
	if err != nil {
		pub.Close()
		return "", nil, "", err
	}
	h.log.Info("publisher connected", "stream", name, "session", id, "remote", r.RemoteAddr)
	return id, s, answer, nil
}

// session is one publisher's PeerConnection.
type session struct {
	id, stream string
	log        *slog.Logger
	pc         *webrtc.PeerConnection
	pub        *sfu.Publication
	etag       string
	ufrag      string

	failed       chan struct{} // closed when ICE/DTLS fails or the peer closes
	failOnce     sync.Once
	mu           sync.Mutex // guards closed, tracksOfKind and wg.Go after Close started
	closed       bool
	tracksOfKind map[sfu.Kind]int
	clock        sfu.PublisherClock // the publisher's sender reports on our clock
	arrivals     *sfu.Arrivals      // the media socket's kernel receive times
	wg           sync.WaitGroup
	closeOnce    sync.Once
	closeResult  error
}

// newSession answers the offer raw. sim, if not nil, is the SSRC simulcast
// that rewriteSSRCSimulcast put into RID form in raw: the session's
// PeerConnection gets a ridTagger and the answer loses what only the
// rewrite asked for.
func (h *Handler) newSession(ctx context.Context, id, name string, pub *sfu.Publication, raw string, offer *rtc.Offer, sim *simLayers) (*session, string, error) {
	var first []interceptor.Factory
	if sim != nil {
		first = append(first, newRIDTagger(sim))
	}
	api, err := h.cfg.Engine.PublisherAPI(first...)
	if err != nil {
		return nil, "", fmt.Errorf("publisher API: %w", err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, "", fmt.Errorf("new peer connection: %w", err)
	}
	s := &session{
		id: id, stream: name, log: h.log.With("stream", name, "session", id), pc: pc, pub: pub,
		etag: `"` + signal.NewID() + `"`, ufrag: offer.Ufrag,
		failed: make(chan struct{}), tracksOfKind: map[sfu.Kind]int{}, arrivals: h.cfg.Engine.Arrivals(),
	}
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		s.log.Debug("connection state", "state", st.String())
		if st == webrtc.PeerConnectionStateFailed || st == webrtc.PeerConnectionStateClosed {
			s.failOnce.Do(func() { close(s.failed) })
		}
	})
	pc.OnTrack(s.onTrack)

	answer, err := signal.Answer(ctx, pc, raw, func() { preferCodecs(pc, offer) }, h.cfg.GatherTimeout, s.log)
	if err == nil && sim != nil {
		answer, err = sim.restoreAnswer(answer)
	}
	if err != nil {
		_ = s.Close()
		return nil, "", err
	}
	return s, answer, nil
}

// preferCodecs makes our answer carry exactly one codec per section: the
// offered codec we prefer most (H.264 first).
func preferCodecs(pc *webrtc.PeerConnection, offer *rtc.Offer) {
	for _, t := range pc.GetTransceivers() {
		if t.Mid() == "" {
			continue
		}
		for _, m := range offer.Media {
			if m.Mid != t.Mid() {
				continue
			}
			if best, ok := m.Best(); ok {
				_ = t.SetCodecPreferences([]webrtc.RTPCodecParameters{best})
			}
		}
	}
}

func (s *session) ETag() string        { return s.etag }
func (s *session) RemoteUfrag() string { return s.ufrag }

// AddCandidates adds trickled candidates.
func (s *session) AddCandidates(f signal.Fragment) error { return signal.AddCandidates(s.pc, f) }

// Stream names the stream the session publishes.
func (s *session) Stream() string { return s.stream }

// wait returns when the publisher's connection fails or closes, or stop is closed.
func (s *session) wait(stop <-chan struct{}) {
	select {
	case <-s.failed:
		s.log.Info("publisher gone")
	case <-stop:
	}
}

// Close ends the session: the PeerConnection closes, read loops end, the
// publication and its tracks close.
func (s *session) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.closeResult = s.pc.Close()
		s.wg.Wait()
		s.pub.Close()
	})
	return s.closeResult
}

// onTrack runs on pion's goroutine for each incoming stream (once per
// simulcast layer); it starts the read loop and the RTCP loop.
func (s *session) onTrack(remote *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	codec := remote.Codec()
	kind := sfu.KindAudio
	if remote.Kind() == webrtc.RTPCodecTypeVideo {
		kind = sfu.KindVideo
	}
	ssrc := uint32(remote.SSRC())
	id := kind.String()
	switch {
	case remote.RID() != "":
		id += "-" + remote.RID()
	case s.tracksOfKind[kind] > 0:
		// A second section of the same kind without RIDs: its track is
		// told apart by SSRC. (Simulcast announced by SSRC has RIDs here:
		// the SSRCs in decimal, see ssrcsim.go.)
		id += fmt.Sprintf("-%d", ssrc)
	}
	s.tracksOfKind[kind]++
	track, err := s.pub.AddTrack(sfu.TrackConfig{
		Info: sfu.TrackInfo{
			ID: id, Kind: kind, MimeType: codec.MimeType, ClockRate: codec.ClockRate, Channels: codec.Channels,
			SDPFmtpLine: codec.SDPFmtpLine, PayloadType: uint8(codec.PayloadType), RID: remote.RID(), SSRC: ssrc,
		},
		RequestKeyframe: func() {
			if err := s.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
				s.log.Debug("send PLI", "err", err)
			}
		},
		Arrivals: s.arrivals,
	})
	if err != nil {
		s.log.Warn("add track", "err", err)
		return
	}
	s.log.Info("track", "id", id, "codec", codec.MimeType, "ssrc", ssrc)
	s.wg.Go(func() { readRTP(remote, track, s.log) })
	s.wg.Go(func() { readRTCP(receiver, remote.RID(), track, &s.clock) })
}

func readRTP(remote *webrtc.TrackRemote, track *sfu.Track, log *slog.Logger) {
	buf := make([]byte, sfu.MaxPacketSize)
	for {
		n, _, err := remote.Read(buf)
		if err != nil {
			return
		}
		if err := track.Write(buf[:n]); err != nil {
			if errors.Is(err, sfu.ErrTrackClosed) {
				return
			}
			log.Debug("bad rtp packet", "track", track, "err", err)
		}
	}
}

// readRTCP keeps the publisher's sender reports as the track's clock.
func readRTCP(receiver *webrtc.RTPReceiver, rid string, track *sfu.Track, clock *sfu.PublisherClock) {
	for {
		var pkts []rtcp.Packet
		var err error
		if rid != "" {
			pkts, _, err = receiver.ReadSimulcastRTCP(rid)
		} else {
			pkts, _, err = receiver.ReadRTCP()
		}
		if err != nil {
			return
		}
		for _, p := range pkts {
			if sr, ok := p.(*rtcp.SenderReport); ok && sr.SSRC == track.Info().SSRC {
				now := time.Now()
				track.SetSenderReport(sfu.SenderReport{NTPTime: sr.NTPTime, RTPTime: sr.RTPTime, Arrival: now,
					ServerTime: clock.ServerTime(sr.NTPTime, now)})
			}
		}
	}
}
