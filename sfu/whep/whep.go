package whep

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hybridcast/hybridcast/internal/signal"
	"github.com/hybridcast/hybridcast/sfu"
	"github.com/hybridcast/hybridcast/sfu/rtc"
	"github.com/pion/rtcp"
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
	// MaxViewers caps the WebRTC viewers of one stream; 0 means no cap.
	// An offer past the cap is answered 503 with Retry-After and the
	// Alternates links.
	MaxViewers int
	// ServerLimit, if set, caps the viewers of every stream together; it
	// may be shared with other Handlers. nil means no server-wide cap.
	ServerLimit *Limit
	// Alternates, if set, returns the Link header values of a 503 at a
	// cap: where else the stream can be played (HLS, DASH).
	Alternates func(stream string) []string
	Logger     *slog.Logger
}

// Handler serves the WHEP endpoint under /whep/.
type Handler struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux
	*signal.Endpoint
	slots viewerSlots

	// Forwarding measures each packet sent to a viewer from its arrival at
	// the track to its hand-off to the viewer's SRTP stream (subscription
	// queue, rewriting, encryption, and the send queue's admission).
	Forwarding sfu.LatencyHistogram
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
	h := &Handler{cfg: cfg, log: cfg.Logger.With("component", "whep"),
		slots: viewerSlots{max: max(cfg.MaxViewers, 0), server: cfg.ServerLimit, byStream: map[string]int{}}}
	h.Endpoint = signal.NewEndpoint(signal.EndpointConfig{
		Name:       "whep",
		Create:     h.play,
		Run:        func(s signal.Resource, stop <-chan struct{}) { s.(*session).run(stop, cfg.PublisherWait) },
		Links:      layerLinks,
		ICEServers: cfg.ICEServers,
		Logger:     h.log,
	})
	h.mux = http.NewServeMux()
	h.mux.Handle("/whep/", h.Endpoint)
	h.mux.HandleFunc("/whep/{stream}/{id}/layer", h.serveLayer)
	return h
}

// ServeHTTP serves the endpoint and its layer selection extension.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Sessions returns how many viewers are connected.
func (h *Handler) Sessions() int { return h.Len() }

func (h *Handler) play(r *http.Request) (_ string, _ signal.Resource, _ string, err error) {
	name := r.PathValue("stream")
	if err := signal.StreamName(name); err != nil {
		return "", nil, "", err
	}
	router := h.cfg.Registry.Router(name)
	if router == nil {
		return "", nil, "", signal.Errorf(http.StatusNotFound, "stream %q not found: nobody has published it", name)
	}
	// The slot is taken before anything costly (reading the offer, the
	// PeerConnection), and released on every failure below; a session
	// releases it when it closes.
	release, err := h.slots.reserve(name, h.cfg.Alternates)
	if err != nil {
		return "", nil, "", err
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	raw, offer, err := signal.ReadOffer(r)
	if err != nil {
		return "", nil, "", err
	}
	for _, m := range offer.Media {
		if m.Direction == "sendonly" || m.Direction == "inactive" {
			return "", nil, "", signal.Errorf(http.StatusBadRequest, "WHEP offer's %s section is %s: a viewer must receive (recvonly)", m.Kind, m.Direction)
		}
	}
	pin := r.URL.Query().Get("layer")
	if pin != "" && !validRID(pin) {
		return "", nil, "", signal.Errorf(http.StatusBadRequest, "invalid layer %q: a simulcast RID is 1 to 16 letters, digits, '-' or '_'", pin)
	}
	id := signal.NewID()
	s, answer, err := h.newSession(r.Context(), id, router, raw, offer, pin)
	if err != nil {
		return "", nil, "", err
	}
	s.release = release
	return id, s, answer, nil
}

// session is one viewer.
type session struct {
	id      string
	log     *slog.Logger
	router  *sfu.Router
	pc      *webrtc.PeerConnection
	etag    string
	ufrag   string
	tracks  []*downTrack
	mids    map[*downTrack]string
	policy  layerPolicy  // used by run only
	padding atomic.Int64 // probe padding being sent, bit/s

	mu       sync.Mutex    // guards pin
	pin      string        // RID the viewer asked for; "" for automatic
	switched chan struct{} // a downtrack switched source (cap 1)

	failed    chan struct{}
	failOnce  sync.Once
	connected chan struct{} // closed when ICE and DTLS are up
	connOnce  sync.Once
	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
	release   func() // gives back the viewer slot; set before the Endpoint sees the session

	direct     *rtc.DirectSend // captures the DTLS keys for the direct send path
	directPath atomic.Bool     // the viewer's RTP takes the direct send path
}

func (h *Handler) newSession(ctx context.Context, id string, router *sfu.Router, raw string, offer *rtc.Offer, pin string) (*session, string, error) {
	api, direct := h.cfg.Engine.NewViewer(raw)
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, "", fmt.Errorf("new peer connection: %w", err)
	}
	s := &session{
		id: id, log: h.log.With("stream", router.Name(), "session", id), router: router, pc: pc,
		etag: `"` + signal.NewID() + `"`, ufrag: offer.Ufrag,
		failed: make(chan struct{}), connected: make(chan struct{}), closing: make(chan struct{}),
		switched: make(chan struct{}, 1), pin: pin, mids: map[*downTrack]string{},
		policy: layerPolicy{start: time.Now()}, direct: direct,
	}
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		s.log.Debug("connection state", "state", st.String())
		switch st {
		case webrtc.PeerConnectionStateConnected:
			s.connOnce.Do(func() { close(s.connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			s.fail()
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
		dt := newDownTrack(m.Kind, router.Name(), s.switched, s.log)
		dt.latency = &h.Forwarding
		sender, err := pc.AddTrack(dt)
		if err != nil {
			return abort(fmt.Errorf("add %s track: %w", m.Kind, err))
		}
		s.tracks = append(s.tracks, dt)
		s.mids[dt] = m.Mid
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
			if err := t.SetCodecPreferences(append(codecs, m.RTX...)); err != nil {
				// Without RTX, then: probing needs it, playing does not.
				s.log.Debug("codec preferences with RTX refused", "error", err)
				_ = t.SetCodecPreferences(codecs)
			}
		}
	}
}

func (s *session) ETag() string        { return s.etag }
func (s *session) RemoteUfrag() string { return s.ufrag }

// AddCandidates adds trickled candidates.
func (s *session) AddCandidates(f signal.Fragment) error { return signal.AddCandidates(s.pc, f) }

// Stream names the stream the session plays.
func (s *session) Stream() string { return s.router.Name() }

// fail ends the session: its connection failed or can no longer carry it.
func (s *session) fail() { s.failOnce.Do(func() { close(s.failed) }) }

// sendDirect moves the viewer's RTP onto the media socket's direct send
// path (rtc.DirectSend) when the connection allows it; otherwise pion's
// write path carries it, as it did before the direct path existed.
func (s *session) sendDirect() {
	w, err := s.direct.Writer(s.pc, func() {
		// ICE moved the viewer off our UDP socket (to ICE-TCP): our SRTP
		// context cannot move with it. The viewer reconnects.
		s.log.Info("viewer's path left the UDP socket; closing the session")
		s.fail()
	})
	if err != nil {
		s.log.Debug("viewer stays on pion's write path", "reason", err)
		return
	}
	for _, dt := range s.tracks {
		dt.setDirect(w)
	}
	s.directPath.Store(true)
}

// run binds the downtracks to the stream's tracks and follows the stream's
// changes until the session ends: the viewer leaves or fails, the server
// closes, or no publisher shows up for wait.
func (s *session) run(stop <-chan struct{}, wait time.Duration) {
	removeViewer := s.router.AddViewer(s)
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
	s.sendDirect()

	// subs holds, per downtrack, its subscriptions: the source it forwards
	// and, during a switch, the target it waits on for a keyframe.
	subs := map[*downTrack]map[*sfu.Track]func(){}
	for _, dt := range s.tracks {
		subs[dt] = map[*sfu.Track]func(){}
	}
	defer func() {
		for _, m := range subs {
			for _, unsub := range m {
				unsub()
			}
		}
	}()
	idle := time.NewTimer(wait)
	defer idle.Stop()
	wasLive := false
	// Layers change activity and bitrate without a Router notification:
	// look again at this pace.
	rerank := time.NewTicker(layerCheckInterval)
	defer rerank.Stop()
	var pad prober
	defer pad.stop()
	reports := time.NewTicker(senderReportInterval)
	defer reports.Stop()
	for {
		tracks, changed := s.router.Tracks()
		live := false
		for _, dt := range s.tracks {
			want := s.choose(tracks, dt.kind)
			if want != nil {
				live = true
			}
			cur, target := dt.current()
			if want != nil && want != cur && want != target {
				// A viewer's first layer and every later change ask for a
				// keyframe by the switch rule (Track.RequestSwitchKeyframe):
				// wait for a requested keyframe still on its way, else ask
				// 300 ms after the last request at the latest. Held to the
				// 500 ms throttle of viewer PLIs, a join shortly after the
				// packager's boundary request waited out the rest of the
				// window (Chromium first frame p90 up to 520 ms).
				//
				// A viewer's first picture may come from the track's
				// history instead: see joinBackfillAge.
				if _, ok := subs[dt][want]; ok {
					dt.follow(want)
					want.RequestSwitchKeyframe()
				} else {
					src := dt.follow(want)
					opts := []sfu.SubscribeOption{sfu.ForSwitch()}
					if s.directPath.Load() {
						// The direct path only encrypts and queues: no
						// write waits on the viewer. One worker for all
						// of the viewer's subscriptions keeps its packets
						// in order across a layer switch.
						opts = append(opts, sfu.Shared(s))
					}
					if cur == nil {
						opts = append(opts, sfu.FromRecentKeyframe(joinBackfillAge, func(b sfu.Backfill) { src.backfill = b }))
					}
					if unsub, err := want.Subscribe(src, opts...); err == nil {
						subs[dt][want] = unsub
					}
				}
				// A subscribe error means the track closed under us: the
				// next change says so.
			}
			cur, target = dt.current()
			for t, unsub := range subs[dt] {
				if t != cur && t != target {
					unsub()
					delete(subs[dt], t)
				}
			}
		}
		switch {
		case live && !wasLive:
			idle.Stop()
		case !live && wasLive:
			idle.Reset(wait) // the publisher left: wait for another
		}
		wasLive = live
		pad.set(s.policy.padding)
		s.padding.Store(int64(s.policy.padding))
	wait:
		for {
			select {
			case now := <-pad.tick():
				pad.send(now, s.videoTrack())
				continue wait
			case now := <-reports.C:
				s.sendReports(now)
				continue wait
			case <-changed:
			case <-rerank.C:
			case <-s.switched:
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
			break
		}
	}
}

// senderReportInterval is how often a viewer gets RTCP sender reports for
// each of its streams (what pion's report interceptor sends, and what
// browsers send).
const senderReportInterval = time.Second

// sendReports sends the viewer a sender report for each stream that has
// carried media.
func (s *session) sendReports(now time.Time) {
	var pkts []rtcp.Packet
	for _, dt := range s.tracks {
		if sr, ok := dt.senderReport(now); ok {
			pkts = append(pkts, sr)
		}
	}
	if len(pkts) == 0 {
		return
	}
	if err := s.pc.WriteRTCP(pkts); err != nil {
		s.log.Debug("send sender reports", "error", err)
	}
}

// prober paces a viewer's probe padding (see layerPolicy) in small bursts
// from the session's run goroutine.
type prober struct {
	rate   int // bit/s; 0: not probing
	ticker *time.Ticker
	last   time.Time
	credit float64 // bytes that may go now
}

// probeTick is the pacing interval of probe padding: small bursts keep the
// viewer's delay-based estimator from seeing the probe as a queue.
const probeTick = 10 * time.Millisecond

func (p *prober) set(rate int) {
	p.rate = rate
	switch {
	case rate > 0 && p.ticker == nil:
		p.ticker, p.last, p.credit = time.NewTicker(probeTick), time.Now(), 0
	case rate <= 0 && p.ticker != nil:
		p.stop()
	}
}

func (p *prober) stop() {
	if p.ticker != nil {
		p.ticker.Stop()
		p.ticker = nil
	}
}

// tick returns the ticker's channel, nil (never ready) when not probing.
func (p *prober) tick() <-chan time.Time {
	if p.ticker == nil {
		return nil
	}
	return p.ticker.C
}

func (p *prober) send(now time.Time, dt *downTrack) {
	if dt == nil {
		return
	}
	// At most two ticks' worth at once: a late tick does not become a burst.
	p.credit = min(p.credit+float64(p.rate)/8*now.Sub(p.last).Seconds(), float64(p.rate)/8*2*probeTick.Seconds())
	p.last = now
	if p.credit > 0 {
		p.credit -= float64(dt.probe(int(p.credit)))
	}
}

// videoTrack returns the session's video downtrack, nil if it has none.
func (s *session) videoTrack() *downTrack {
	for _, dt := range s.tracks {
		if dt.kind == webrtc.RTPCodecTypeVideo {
			return dt
		}
	}
	return nil
}

// layerCheckInterval is how often a viewer's layer choice is reviewed.
const layerCheckInterval = 500 * time.Millisecond

// joinBackfillAge is how old a track's latest keyframe may be for a joining
// viewer to start from it, out of the track's history, instead of waiting
// for a new one. The packager asks every layer for a keyframe at each
// segment boundary, and a browser publisher ignores a request within 300 ms
// of the last one (sfu.SwitchKeyframeInterval): a viewer joining just after
// a boundary waited up to 300 ms more for its first picture. A keyframe
// older than this was asked for long enough ago that a new request goes at
// once. The history's frames are sent in a burst and caught up
// (sfu.Rewriter.CatchUp), so the viewer starts at the live picture.
const joinBackfillAge = 500 * time.Millisecond

// choose picks the track a downtrack of this kind should forward: for
// audio the stream's audio track; for video the pinned layer while it is
// active, else the best active layer (RankLayers).
func (s *session) choose(tracks []*sfu.Track, kind webrtc.RTPCodecType) *sfu.Track {
	if kind == webrtc.RTPCodecTypeAudio {
		for _, t := range tracks {
			if t.Info().Kind == sfu.KindAudio {
				return t
			}
		}
		return nil
	}
	ranked := sfu.RankLayers(tracks)
	if len(ranked) == 0 {
		return nil
	}
	s.policy.padding = 0
	if pin := s.pinned(); pin != "" {
		for _, t := range ranked {
			if t.Info().RID == pin && t.Layer().Active {
				return t
			}
		}
	}
	var cur *sfu.Track
	estimate := 0
	video := s.videoTrack()
	if video != nil {
		cur, _ = video.current()
		estimate = video.estimate()
	}
	s.policy.canPad = video != nil && video.canProbe()
	return s.policy.choose(time.Now(), ranked, cur, estimate)
}

var _ sfu.Viewer = (*session)(nil)

// Stats describes the viewer for the API.
func (s *session) Stats() sfu.ViewerStats {
	c := s.Counters()
	st := sfu.ViewerStats{
		ID: s.id, Pinned: s.pinned(), Packets: c.Packets, NACKs: c.NACKs, Retransmitted: c.Retransmitted, RetransmittedRTX: c.RetransmittedRTX,
		KeyframeRequests: c.KeyframeRequests, LayerSwitches: c.LayerSwitches, ProbePackets: c.ProbePackets,
		SendPath: "pion",
	}
	if s.directPath.Load() {
		st.SendPath = "direct"
	}
	if dt := s.videoTrack(); dt != nil {
		st.EstimatedBitrate = dt.estimate()
		st.ProbePadding = int(s.padding.Load())
		if cur, _ := dt.current(); cur != nil {
			st.Layer = cur.Info().RID
		}
	}
	return st
}

// Counters sums the downtracks' counters: atomic loads only, as
// sfu.Viewer asks.
func (s *session) Counters() sfu.ViewerCounters {
	var c sfu.ViewerCounters
	for _, dt := range s.tracks {
		c.Packets += dt.packets.Load()
		c.Bytes += dt.bytes.Load()
		c.NACKs += dt.nacks.Load()
		c.Retransmitted += dt.resent.Load()
		c.RetransmittedRTX += dt.resentRTX.Load()
		c.ProbePackets += dt.probed.Load()
		c.KeyframeRequests += dt.plis.Load()
		if dt.kind == webrtc.RTPCodecTypeVideo { // audio changes source only when the publisher does
			c.LayerSwitches += dt.switches.Load()
		}
	}
	return c
}

// videoMid returns the mid of the video section ("" without video).
func (s *session) videoMid() string {
	if dt := s.videoTrack(); dt != nil {
		return s.mids[dt]
	}
	return ""
}

func (s *session) pinned() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pin
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
		if s.release != nil {
			s.release()
		}
	})
	return err
}

// validRID checks a simulcast RID (RFC 8851 §10: rid-id = 1*(alpha-numeric
// / "-" / "_"); we also cap its length at 16).
func validRID(s string) bool {
	if len(s) == 0 || len(s) > 16 {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}
