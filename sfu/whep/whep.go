package whep

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/hybridcast/hybridcast/internal/signal"
	"github.com/hybridcast/hybridcast/sfu"
	"github.com/hybridcast/hybridcast/sfu/rtc"
	"github.com/pion/webrtc/v4"
)

// Config configures the WHEP endpoint.
type Config struct {
	Registry *sfu.Registry
	Engine   *rtc.Engine
	// ICEServers are advertised to clients in Link headers.
	ICEServers []webrtc.ICEServer
	// PublisherWait is how long a viewer waits for a publisher: one that
	// connects to a known stream while it is offline, or whose publisher
	// left. Default 30 s.
	PublisherWait time.Duration
	// GatherTimeout bounds the wait for our own ICE candidates. Default 5 s.
	GatherTimeout time.Duration
	Logger        *slog.Logger
}

// Handler serves the WHEP endpoint under /whep/.
type Handler struct {
	cfg Config
	log *slog.Logger
	*signal.Endpoint
}

var _ http.Handler = (*Handler)(nil)

// New makes the WHEP handler.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PublisherWait <= 0 {
		cfg.PublisherWait = 30 * time.Second
	}
	if cfg.GatherTimeout <= 0 {
		cfg.GatherTimeout = 5 * time.Second
	}
	h := &Handler{cfg: cfg, log: cfg.Logger.With("component", "whep")}
	h.Endpoint = signal.NewEndpoint(signal.EndpointConfig{
		Name:       "whep",
		Create:     h.play,
		Run:        func(s signal.Resource, stop <-chan struct{}) { s.(*session).run(stop, cfg.PublisherWait) },
		ICEServers: cfg.ICEServers,
		Logger:     h.log,
	})
	return h
}

// Sessions returns how many viewers are connected.
func (h *Handler) Sessions() int { return h.Len() }

func (h *Handler) play(r *http.Request) (string, signal.Resource, string, error) {
	name := r.PathValue("stream")
	if err := signal.StreamName(name); err != nil {
		return "", nil, "", err
	}
	router := h.cfg.Registry.Router(name)
	if router == nil {
		return "", nil, "", signal.Errorf(http.StatusNotFound, "stream %q not found: nobody has published it", name)
	}
	raw, offer, err := signal.ReadOffer(r)
	if err != nil {
		return "", nil, "", err
	}
	for _, m := range offer.Media {
		if m.Direction == "sendonly" || m.Direction == "inactive" {
			return "", nil, "", signal.Errorf(http.StatusBadRequest, "WHEP offer's %s section is %s: a viewer must receive (recvonly)", m.Kind, m.Direction)
		}
	}
	id := signal.NewID()
	s, answer, err := h.newSession(r.Context(), id, router, raw, offer)
	if err != nil {
		return "", nil, "", err
	}
	return id, s, answer, nil
}

// session is one viewer.
type session struct {
	id     string
	log    *slog.Logger
	router *sfu.Router
	pc     *webrtc.PeerConnection
	etag   string
	ufrag  string
	tracks []*downTrack

	failed    chan struct{}
	failOnce  sync.Once
	connected chan struct{} // closed when ICE and DTLS are up
	connOnce  sync.Once
	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

func (h *Handler) newSession(ctx context.Context, id string, router *sfu.Router, raw string, offer *rtc.Offer) (*session, string, error) {
	pc, err := h.cfg.Engine.ViewerAPI().NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, "", fmt.Errorf("new peer connection: %w", err)
	}
	s := &session{
		id: id, log: h.log.With("stream", router.Name(), "session", id), router: router, pc: pc,
		etag: `"` + signal.NewID() + `"`, ufrag: offer.Ufrag,
		failed: make(chan struct{}), connected: make(chan struct{}), closing: make(chan struct{}),
	}
	fail := func() { s.failOnce.Do(func() { close(s.failed) }) }
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		s.log.Debug("connection state", "state", st.String())
		switch st {
		case webrtc.PeerConnectionStateConnected:
			s.connOnce.Do(func() { close(s.connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			fail()
		}
	})
	abort := func(err error) (*session, string, error) {
		_ = pc.Close()
		s.wg.Wait()
		return nil, "", err
	}
	kinds := map[webrtc.RTPCodecType]bool{}
	for _, m := range offer.Media {
		if kinds[m.Kind] || len(m.Codecs) == 0 {
			continue // one track per kind
		}
		kinds[m.Kind] = true
		dt := newDownTrack(m.Kind, router.Name(), s.log)
		sender, err := pc.AddTrack(dt)
		if err != nil {
			return abort(fmt.Errorf("add %s track: %w", m.Kind, err))
		}
		s.tracks = append(s.tracks, dt)
		s.wg.Go(func() { s.readRTCP(sender, dt) })
	}
	answer, err := signal.Answer(ctx, pc, raw, func() { s.preferCodecs(offer) }, h.cfg.GatherTimeout, s.log)
	if err != nil {
		return abort(err)
	}
	return s, answer, nil
}

// preferCodecs orders each section's codecs with the live publisher's codec
// first, then ours (H.264 first), so the answer lists what we will send.
func (s *session) preferCodecs(offer *rtc.Offer) {
	tracks, _ := s.router.Tracks()
	for _, t := range s.pc.GetTransceivers() {
		for _, m := range offer.Media {
			if m.Mid != t.Mid() || len(m.Codecs) == 0 {
				continue
			}
			codecs := append([]webrtc.RTPCodecParameters(nil), m.Codecs...)
			for _, tr := range tracks {
				info := tr.Info()
				want := webrtc.RTPCodecCapability{MimeType: info.MimeType, ClockRate: info.ClockRate, SDPFmtpLine: info.SDPFmtpLine}
				for i, c := range codecs {
					if rtc.SameCodec(c.RTPCodecCapability, want) {
						codecs[0], codecs[i] = codecs[i], codecs[0]
						break
					}
				}
			}
			_ = t.SetCodecPreferences(codecs)
		}
	}
}

func (s *session) ETag() string        { return s.etag }
func (s *session) RemoteUfrag() string { return s.ufrag }

// AddCandidates adds trickled candidates.
func (s *session) AddCandidates(f signal.Fragment) error { return signal.AddCandidates(s.pc, f) }

// Stream names the stream the session plays.
func (s *session) Stream() string { return s.router.Name() }

// run binds the downtracks to the stream's tracks and follows the stream's
// changes until the session ends: the viewer leaves or fails, the server
// closes, or no publisher shows up for wait.
func (s *session) run(stop <-chan struct{}, wait time.Duration) {
	removeViewer := s.router.AddViewer()
	defer removeViewer()

	// Subscribe once ICE and DTLS are up: packets sent before are lost, and
	// with them the keyframe we ask for on subscribe.
	select {
	case <-s.connected:
	case <-s.failed:
		return
	case <-s.closing:
		return
	case <-stop:
		return
	case <-time.After(wait):
		s.log.Info("viewer never connected")
		return
	}
	s.log.Debug("viewer connected; subscribing")

	subs := map[*downTrack]*subscriptionState{}
	defer func() {
		for _, st := range subs {
			st.unsubscribe()
		}
	}()
	idle := time.NewTimer(wait)
	defer idle.Stop()
	for {
		tracks, changed := s.router.Tracks()
		live := false
		for _, dt := range s.tracks {
			src := pick(tracks, dt.kind)
			if src != nil {
				live = true
			}
			cur := subs[dt]
			if cur != nil && cur.track == src {
				continue
			}
			if cur != nil {
				cur.unsubscribe()
				delete(subs, dt)
			}
			if src == nil {
				continue
			}
			dt.setSource(src)
			unsub, err := src.Subscribe(dt)
			if err != nil {
				continue // the track closed under us: the next change says so
			}
			subs[dt] = &subscriptionState{track: src, unsubscribe: unsub}
		}
		if live {
			idle.Stop()
		} else {
			idle.Reset(wait)
		}
		select {
		case <-changed:
		case <-idle.C:
			s.log.Info("no publisher; ending the viewer session", "waited", wait)
			return
		case <-s.failed:
			return
		case <-s.closing:
			return
		case <-stop:
			return
		}
	}
}

type subscriptionState struct {
	track       *sfu.Track
	unsubscribe func()
}

// pick chooses the track a downtrack of this kind follows: the first one.
// (Simulcast layer choice replaces this.)
func pick(tracks []*sfu.Track, kind webrtc.RTPCodecType) *sfu.Track {
	want := sfu.KindAudio
	if kind == webrtc.RTPCodecTypeVideo {
		want = sfu.KindVideo
	}
	for _, t := range tracks {
		if t.Info().Kind == want {
			return t
		}
	}
	return nil
}

func (s *session) readRTCP(sender *webrtc.RTPSender, dt *downTrack) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		dt.handleRTCP(pkts)
	}
}

// Close ends the session and waits for its goroutines. It is safe to call
// more than once and from any goroutine but run's own.
func (s *session) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closing)
		err = s.pc.Close()
		s.wg.Wait()
	})
	return err
}
