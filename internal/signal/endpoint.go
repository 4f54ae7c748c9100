package signal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// Resource is a session as an Endpoint manages it.
type Resource interface {
	Session
	// Stream names the stream the session belongs to.
	Stream() string
}

// EndpointConfig configures an Endpoint.
type EndpointConfig struct {
	// Name is the path prefix and protocol: "whip" or "whep".
	Name string
	// Create handles a POST: it checks the request, makes the session and
	// returns it with the answer SDP. Errors are *Error for 4xx.
	Create func(r *http.Request) (id string, s Resource, answer string, err error)
	// Run, if set, runs for the life of a session on a goroutine the
	// Endpoint owns; the session is removed and closed when it returns.
	// stop is closed when the Endpoint closes.
	Run func(s Resource, stop <-chan struct{})
	// Authorize checks PATCH and DELETE requests on a session (nil: anyone
	// holding the resource URL).
	Authorize func(r *http.Request) error
	// Links, if set, adds Link header values to the 201 response (protocol
	// extensions); location is the session's resource path.
	Links      func(location string) []string
	ICEServers []webrtc.ICEServer
	Logger     *slog.Logger
}

// Endpoint is the HTTP side of a WHIP or WHEP endpoint (RFC 9725 §4):
//
//	POST    /{name}/{stream}       offer → 201 Created, Location, ETag, answer
//	OPTIONS /{name}/{stream}       CORS preflight, Accept-Post
//	PATCH   /{name}/{stream}/{id}  trickle ICE → 204
//	DELETE  /{name}/{stream}/{id}  end the session → 200
//	OPTIONS /{name}/{stream}/{id}  CORS preflight, Accept-Patch
type Endpoint struct {
	cfg      EndpointConfig
	log      *slog.Logger
	mux      *http.ServeMux
	sessions *Sessions[Resource]

	mu     sync.Mutex // guards closed and wg.Go against Close
	closed bool
	stop   chan struct{} // closed by Close
	wg     sync.WaitGroup
}

var _ http.Handler = (*Endpoint)(nil)

// NewEndpoint makes an Endpoint.
func NewEndpoint(cfg EndpointConfig) *Endpoint {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Endpoint{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), sessions: NewSessions[Resource](), stop: make(chan struct{})}
	p := "/" + cfg.Name + "/{stream}"
	e.mux.HandleFunc("OPTIONS "+p, func(w http.ResponseWriter, r *http.Request) {
		CORS(w, "POST, OPTIONS")
		w.Header().Set("Accept-Post", "application/sdp")
		w.WriteHeader(http.StatusNoContent)
	})
	e.mux.HandleFunc("POST "+p, e.post)
	e.mux.HandleFunc("OPTIONS "+p+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		CORS(w, "PATCH, DELETE, OPTIONS")
		w.Header().Set("Accept-Patch", "application/trickle-ice-sdpfrag")
		w.WriteHeader(http.StatusNoContent)
	})
	e.mux.HandleFunc("PATCH "+p+"/{id}", e.patch)
	e.mux.HandleFunc("DELETE "+p+"/{id}", e.delete)
	return e
}

// ServeHTTP implements http.Handler.
func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) { e.mux.ServeHTTP(w, r) }

// Session returns the live session with that ID on that stream.
func (e *Endpoint) Session(stream, id string) (Resource, bool) {
	s, ok := e.sessions.Get(id)
	if !ok || s.Stream() != stream {
		return nil, false
	}
	return s, true
}

// Len returns how many sessions are live.
func (e *Endpoint) Len() int { return e.sessions.Len() }

// Close ends every session and waits for their goroutines.
func (e *Endpoint) Close() error {
	e.mu.Lock()
	if !e.closed {
		e.closed = true
		close(e.stop)
	}
	e.mu.Unlock()
	e.wg.Wait()
	return nil
}

func (e *Endpoint) post(w http.ResponseWriter, r *http.Request) {
	CORS(w, "POST, OPTIONS")
	start := time.Now()
	id, s, answer, err := e.cfg.Create(r)
	if err == nil {
		e.sessions.Add(id, s)
		if !e.own(func() { e.supervise(id, s) }) {
			e.sessions.Remove(id)
			_ = s.Close()
			err = Errorf(http.StatusServiceUnavailable, "server is shutting down")
		}
	}
	if err != nil {
		var he *Error
		if errors.As(err, &he) && (he.Status < 500 || he.Status == http.StatusServiceUnavailable) {
			e.log.Info("request refused", "stream", r.PathValue("stream"), "status", he.Status, "reason", he.Reason, "remote", r.RemoteAddr)
		} else {
			e.log.Error("request failed", "stream", r.PathValue("stream"), "err", err)
		}
		if errors.As(err, &he) && he.Status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="hybridcast"`)
		}
		WriteError(w, err)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/sdp")
	location := "/" + e.cfg.Name + "/" + s.Stream() + "/" + id
	hdr.Set("Location", location)
	hdr.Set("ETag", s.ETag())
	hdr.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	for _, l := range ICELinks(e.cfg.ICEServers) {
		hdr.Add("Link", l)
	}
	if e.cfg.Links != nil {
		for _, l := range e.cfg.Links(location) {
			hdr.Add("Link", l)
		}
	}
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write([]byte(answer))
	e.log.Debug("session created", "stream", s.Stream(), "session", id, "remote", r.RemoteAddr, "took", time.Since(start))
}

// own starts f on a goroutine the Endpoint waits for, unless it is closing.
func (e *Endpoint) own(f func()) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.wg.Go(f)
	return true
}

// supervise runs the session's Run and then ends it.
func (e *Endpoint) supervise(id string, s Resource) {
	if e.cfg.Run != nil {
		e.cfg.Run(s, e.stop)
	} else {
		<-e.stop
	}
	e.sessions.Remove(id)
	_ = s.Close()
}

func (e *Endpoint) resource(r *http.Request) (Resource, error) {
	s, ok := e.sessions.Get(r.PathValue("id"))
	if !ok || s.Stream() != r.PathValue("stream") {
		return nil, Errorf(http.StatusNotFound, "no %s session %q on stream %q", strings.ToUpper(e.cfg.Name), r.PathValue("id"), r.PathValue("stream"))
	}
	if e.cfg.Authorize != nil {
		if err := e.cfg.Authorize(r); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (e *Endpoint) patch(w http.ResponseWriter, r *http.Request) {
	CORS(w, "PATCH, DELETE, OPTIONS")
	s, err := e.resource(r)
	if err == nil {
		err = Patch(w, r, s)
	}
	if err != nil {
		WriteError(w, err)
	}
}

func (e *Endpoint) delete(w http.ResponseWriter, r *http.Request) {
	CORS(w, "PATCH, DELETE, OPTIONS")
	s, err := e.resource(r)
	if err != nil {
		WriteError(w, err)
		return
	}
	e.sessions.Remove(r.PathValue("id"))
	_ = s.Close()
	e.log.Info("session deleted", "stream", s.Stream(), "session", r.PathValue("id"))
	w.WriteHeader(http.StatusOK)
}

// Answer completes an offer/answer exchange on pc: the remote offer,
// prefer (to order codecs, may be nil), our answer, and a wait of at most
// timeout for our ICE candidates so that the answer carries them.
func Answer(ctx context.Context, pc *webrtc.PeerConnection, offer string, prefer func(), timeout time.Duration, log *slog.Logger) (string, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", Errorf(http.StatusBadRequest, "SDP offer rejected: %w", err)
	}
	if prefer != nil {
		prefer()
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", Errorf(http.StatusBadRequest, "cannot answer the SDP offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("set local description: %w", err)
	}
	select {
	case <-gathered:
	case <-time.After(timeout):
		log.Warn("ICE gathering timed out; answering with the candidates found so far")
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return pc.LocalDescription().SDP, nil
}

// AddCandidates adds the trickled candidates of a fragment to pc.
func AddCandidates(pc *webrtc.PeerConnection, f Fragment) error {
	for _, c := range f.Candidates {
		init := webrtc.ICECandidateInit{Candidate: c.Candidate}
		if c.Mid != "" {
			mid := c.Mid
			init.SDPMid = &mid
		}
		if err := pc.AddICECandidate(init); err != nil {
			return err
		}
	}
	return nil
}
