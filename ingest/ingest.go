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
	cfg      Config
	log      *slog.Logger
	mux      *http.ServeMux
	sessions *signal.Sessions[*session]

	stop   chan struct{} // closed by Close
	mu     sync.Mutex    // guards closed and wg.Go against Close
	closed bool
	wg     sync.WaitGroup
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
	h := &Handler{
		cfg: cfg, log: cfg.Logger.With("component", "whip"), mux: http.NewServeMux(),
		sessions: signal.NewSessions[*session](), stop: make(chan struct{}),
	}
	h.mux.HandleFunc("OPTIONS /whip/{stream}", h.options)
	h.mux.HandleFunc("POST /whip/{stream}", h.post)
	h.mux.HandleFunc("OPTIONS /whip/{stream}/{id}", h.optionsResource)
	h.mux.HandleFunc("PATCH /whip/{stream}/{id}", h.patch)
	h.mux.HandleFunc("DELETE /whip/{stream}/{id}", h.delete)
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Sessions returns how many publishers are connected.
func (h *Handler) Sessions() int { return h.sessions.Len() }

// Close ends every session and waits for their goroutines.
func (h *Handler) Close() error {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.stop)
	}
	h.mu.Unlock()
	h.wg.Wait()
	return nil
}

// own starts f on a goroutine the handler waits for, unless the handler is
// closing.
func (h *Handler) own(f func()) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.wg.Go(f)
	return true
}

func (h *Handler) options(w http.ResponseWriter, r *http.Request) {
	signal.CORS(w, "POST, OPTIONS")
	w.Header().Set("Accept-Post", "application/sdp")
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) optionsResource(w http.ResponseWriter, r *http.Request) {
	signal.CORS(w, "PATCH, DELETE, OPTIONS")
	w.Header().Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) post(w http.ResponseWriter, r *http.Request) {
	signal.CORS(w, "POST, OPTIONS")
	if err := h.publish(w, r); err != nil {
		var he *signal.Error
		if errors.As(err, &he) && he.Status < 500 {
			h.log.Info("publish refused", "stream", r.PathValue("stream"), "status", he.Status, "reason", he.Reason, "remote", r.RemoteAddr)
		} else {
			h.log.Error("publish failed", "stream", r.PathValue("stream"), "err", err)
		}
		if errors.As(err, &he) && he.Status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="hybridcast"`)
		}
		signal.WriteError(w, err)
	}
}

func (h *Handler) publish(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("stream")
	if err := signal.StreamName(name); err != nil {
		return err
	}
	if err := signal.BearerToken(r, h.cfg.Token); err != nil {
		return err
	}
	raw, offer, err := signal.ReadOffer(r)
	if err != nil {
		return err
	}
	for _, m := range offer.Media {
		if m.Direction == "recvonly" || m.Direction == "inactive" {
			return signal.Errorf(http.StatusBadRequest, "WHIP offer's %s section is %s: a publisher must send (sendonly)", m.Kind, m.Direction)
		}
	}
	router := h.cfg.Registry.RouterFor(name)
	id := signal.NewID()
	pub, err := router.Publish(id)
	if errors.Is(err, sfu.ErrPublisherExists) {
		return signal.Errorf(http.StatusConflict, "stream %q already has a publisher", name)
	}
	if err != nil {
		return err
	}
	s, answer, err := h.newSession(r.Context(), id, name, pub, raw, offer)
	if err != nil {
		pub.Close()
		return err
	}
	h.sessions.Add(id, s)
	if !h.own(func() { h.supervise(s) }) {
		h.sessions.Remove(id)
		_ = s.Close()
		return signal.Errorf(http.StatusServiceUnavailable, "server is shutting down")
	}

	hdr := w.Header()
	hdr.Set("Content-Type", "application/sdp")
	hdr.Set("Location", "/whip/"+name+"/"+id)
	hdr.Set("ETag", s.ETag())
	hdr.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	for _, l := range signal.ICELinks(h.cfg.ICEServers) {
		hdr.Add("Link", l)
	}
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write([]byte(answer))
	h.log.Info("publisher connected", "stream", name, "session", id, "remote", r.RemoteAddr)
	return nil
}

// supervise ends a session when its peer goes away or the handler closes.
func (h *Handler) supervise(s *session) {
	select {
	case <-s.failed:
		h.log.Info("publisher gone", "stream", s.stream, "session", s.id)
	case <-s.deleted:
	case <-h.stop:
	}
	h.sessions.Remove(s.id)
	_ = s.Close()
}

func (h *Handler) resource(w http.ResponseWriter, r *http.Request) (*session, error) {
	s, ok := h.sessions.Get(r.PathValue("id"))
	if !ok || s.stream != r.PathValue("stream") {
		return nil, signal.Errorf(http.StatusNotFound, "no WHIP session %q on stream %q", r.PathValue("id"), r.PathValue("stream"))
	}
	if err := signal.BearerToken(r, h.cfg.Token); err != nil {
		return nil, err
	}
	return s, nil
}

func (h *Handler) patch(w http.ResponseWriter, r *http.Request) {
	signal.CORS(w, "PATCH, DELETE, OPTIONS")
	s, err := h.resource(w, r)
	if err == nil {
		err = signal.Patch(w, r, s)
	}
	if err != nil {
		signal.WriteError(w, err)
	}
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request) {
	signal.CORS(w, "PATCH, DELETE, OPTIONS")
	s, err := h.resource(w, r)
	if err != nil {
		signal.WriteError(w, err)
		return
	}
	h.sessions.Remove(s.id)
	s.markDeleted()
	_ = s.Close()
	h.log.Info("publisher stopped", "stream", s.stream, "session", s.id)
	w.WriteHeader(http.StatusOK)
}

// session is one publisher's PeerConnection.
type session struct {
	id, stream string
	log        *slog.Logger
	pc         *webrtc.PeerConnection
	pub        *sfu.Publication
	etag       string
	ufrag      string

	failed      chan struct{} // closed when ICE/DTLS fails or the peer closes
	failOnce    sync.Once
	deleted     chan struct{}
	deleteOnce  sync.Once
	mu          sync.Mutex // guards closed and wg.Go after Close started
	closed      bool
	wg          sync.WaitGroup
	closeOnce   sync.Once
	closeResult error
}

func (h *Handler) newSession(ctx context.Context, id, name string, pub *sfu.Publication, raw string, offer *rtc.Offer) (*session, string, error) {
	pc, err := h.cfg.Engine.PublisherAPI().NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, "", fmt.Errorf("new peer connection: %w", err)
	}
	s := &session{
		id: id, stream: name, log: h.log.With("stream", name, "session", id), pc: pc, pub: pub,
		etag: `"` + signal.NewID() + `"`, ufrag: offer.Ufrag,
		failed: make(chan struct{}), deleted: make(chan struct{}),
	}
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		s.log.Debug("connection state", "state", st.String())
		if st == webrtc.PeerConnectionStateFailed || st == webrtc.PeerConnectionStateClosed {
			s.failOnce.Do(func() { close(s.failed) })
		}
	})
	pc.OnTrack(s.onTrack)

	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: raw}); err != nil {
		_ = s.Close()
		return nil, "", signal.Errorf(http.StatusBadRequest, "SDP offer rejected: %w", err)
	}
	preferCodecs(pc, offer)
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		_ = s.Close()
		return nil, "", signal.Errorf(http.StatusBadRequest, "cannot answer the SDP offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		_ = s.Close()
		return nil, "", fmt.Errorf("set local description: %w", err)
	}
	select {
	case <-gathered:
	case <-time.After(h.cfg.GatherTimeout):
		s.log.Warn("ICE gathering timed out; answering with the candidates found so far")
	case <-ctx.Done():
		_ = s.Close()
		return nil, "", ctx.Err()
	}
	return s, pc.LocalDescription().SDP, nil
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
func (s *session) AddCandidates(f signal.Fragment) error {
	for _, c := range f.Candidates {
		mid := c.Mid
		init := webrtc.ICECandidateInit{Candidate: c.Candidate}
		if mid != "" {
			init.SDPMid = &mid
		}
		if err := s.pc.AddICECandidate(init); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) markDeleted() { s.deleteOnce.Do(func() { close(s.deleted) }) }

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
	id := kind.String()
	if remote.RID() != "" {
		id += "-" + remote.RID()
	}
	ssrc := uint32(remote.SSRC())
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
	})
	if err != nil {
		s.log.Warn("add track", "err", err)
		return
	}
	s.log.Info("track", "id", id, "codec", codec.MimeType, "ssrc", ssrc)
	s.wg.Go(func() { readRTP(remote, track, s.log) })
	s.wg.Go(func() { readRTCP(receiver, remote.RID(), track) })
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
func readRTCP(receiver *webrtc.RTPReceiver, rid string, track *sfu.Track) {
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
				track.SetSenderReport(sfu.SenderReport{NTPTime: sr.NTPTime, RTPTime: sr.RTPTime, Arrival: time.Now()})
			}
		}
	}
}
