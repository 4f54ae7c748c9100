package sfu

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// Router is one stream: at most one live publisher and its tracks, and the
// viewers that watch it. Viewers learn about tracks through Tracks, which
// hands back a channel closed at the next change, so no callback runs under
// the Router's lock.
type Router struct {
	name string
	log  *slog.Logger

	mu        sync.Mutex
	pub       *Publication
	changed   chan struct{}
	viewers   map[*viewerEntry]struct{}
	published time.Time
}

type viewerEntry struct{ stats func() ViewerStats }

// ViewerStats describes one viewer for the API.
type ViewerStats struct {
	ID string `json:"id"`
	// Layer is the RID of the video layer the viewer receives ("" without simulcast).
	Layer string `json:"layer"`
	// Pinned is the layer the viewer asked for; "" means automatic.
	Pinned string `json:"pinned,omitempty"`
	// EstimatedBitrate is the viewer's latest bandwidth estimate (REMB), bit/s.
	EstimatedBitrate int    `json:"estimated_bitrate,omitempty"`
	Packets          uint64 `json:"packets"`
	NACKs            uint64 `json:"nacks"`
	Retransmitted    uint64 `json:"retransmitted"`
	KeyframeRequests uint64 `json:"keyframe_requests"`
	LayerSwitches    uint64 `json:"layer_switches"`
}

func newRouter(name string, log *slog.Logger) *Router {
	return &Router{name: name, log: log.With("stream", name), changed: make(chan struct{}), viewers: map[*viewerEntry]struct{}{}}
}

// Name returns the stream name.
func (r *Router) Name() string { return r.name }

// notify wakes everybody waiting on the last change channel. r.mu is held.
func (r *Router) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// Tracks returns the live publisher's tracks (none when there is no
// publisher) and a channel that is closed at the next change.
func (r *Router) Tracks() ([]*Track, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var tracks []*Track
	if r.pub != nil {
		tracks = slices.Clone(r.pub.tracks)
	}
	return tracks, r.changed
}

// Live reports whether the stream has a publisher.
func (r *Router) Live() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pub != nil
}

// AddViewer counts a viewer in; stats describes it for the API (it is
// called without the Router's lock). The returned function counts it out.
func (r *Router) AddViewer(stats func() ViewerStats) (remove func()) {
	e := &viewerEntry{stats: stats}
	r.mu.Lock()
	r.viewers[e] = struct{}{}
	r.mu.Unlock()
	return sync.OnceFunc(func() {
		r.mu.Lock()
		delete(r.viewers, e)
		r.mu.Unlock()
	})
}

// Publish claims the stream for a publisher. It fails with
// ErrPublisherExists while another publication is live.
func (r *Router) Publish(id string) (*Publication, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pub != nil {
		return nil, fmt.Errorf("publish %q: %w", r.name, ErrPublisherExists)
	}
	p := &Publication{r: r, id: id, log: r.log.With("publisher", id)}
	r.pub = p
	r.published = time.Now()
	r.notify()
	return p, nil
}

// Publication is one publisher's claim on a Router.
type Publication struct {
	r      *Router
	id     string
	log    *slog.Logger
	tracks []*Track // guarded by r.mu
	closed bool     // guarded by r.mu
}

// ID returns the identifier given to Publish.
func (p *Publication) ID() string { return p.id }

// AddTrack creates a track on the stream and tells the viewers about it.
func (p *Publication) AddTrack(cfg TrackConfig) (*Track, error) {
	if cfg.Logger == nil {
		cfg.Logger = p.log
	}
	t := NewTrack(cfg)
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	if p.closed {
		t.Close()
		return nil, ErrPublicationClosed
	}
	p.tracks = append(p.tracks, t)
	p.r.notify()
	return t, nil
}

// Close ends the publication: its tracks close, their subscriptions end,
// and the stream is free for the next publisher.
func (p *Publication) Close() {
	p.r.mu.Lock()
	if p.closed {
		p.r.mu.Unlock()
		return
	}
	p.closed = true
	tracks := p.tracks
	p.tracks = nil
	if p.r.pub == p {
		p.r.pub = nil
	}
	p.r.notify()
	p.r.mu.Unlock()
	for _, t := range tracks {
		t.Close()
	}
}

// StreamStats describes one stream for the API and the dashboard.
type StreamStats struct {
	Name    string       `json:"name"`
	Live    bool         `json:"live"`
	Since   time.Time    `json:"since,omitzero"`
	Viewers int          `json:"webrtc_viewers"`
	Tracks  []TrackEntry `json:"tracks"`
	// ViewerList has one entry per WebRTC viewer.
	ViewerList []ViewerStats `json:"viewers"`
	Publisher  string        `json:"publisher,omitempty"`
}

// TrackEntry is one track in StreamStats.
type TrackEntry struct {
	ID          string `json:"id"`
	Kind        string `json:"kind"`
	Codec       string `json:"codec"`
	RID         string `json:"rid,omitempty"`
	Packets     uint64 `json:"packets"`
	Bytes       uint64 `json:"bytes"`
	Keyframes   uint64 `json:"keyframes"`
	Subscribers int    `json:"subscribers"`
	// Measured: picture size (video), bitrate, frame rate, activity.
	Width   int     `json:"width,omitempty"`
	Height  int     `json:"height,omitempty"`
	Bitrate int     `json:"bitrate"`
	FPS     float64 `json:"fps,omitempty"`
	Active  bool    `json:"active"`
}

// Stats returns a snapshot of the stream.
func (r *Router) Stats() StreamStats {
	r.mu.Lock()
	s := StreamStats{Name: r.name, Viewers: len(r.viewers)}
	viewers := make([]*viewerEntry, 0, len(r.viewers))
	for v := range r.viewers {
		viewers = append(viewers, v)
	}
	var tracks []*Track
	if r.pub != nil {
		s.Live, s.Since, s.Publisher = true, r.published, r.pub.id
		tracks = slices.Clone(r.pub.tracks)
	}
	r.mu.Unlock()
	s.ViewerList = make([]ViewerStats, 0, len(viewers))
	for _, v := range viewers {
		s.ViewerList = append(s.ViewerList, v.stats())
	}
	slices.SortFunc(s.ViewerList, func(a, b ViewerStats) int { return strings.Compare(a.ID, b.ID) })
	s.Tracks = make([]TrackEntry, 0, len(tracks))
	for _, t := range tracks {
		st, l := t.Stats(), t.Layer()
		s.Tracks = append(s.Tracks, TrackEntry{
			ID: t.info.ID, Kind: t.info.Kind.String(), Codec: t.info.MimeType, RID: t.info.RID,
			Packets: st.Packets, Bytes: st.Bytes, Keyframes: st.Keyframes, Subscribers: st.Subscribers,
			Width: l.Width, Height: l.Height, Bitrate: l.Bitrate, FPS: l.FPS, Active: l.Active,
		})
	}
	return s
}

// Registry holds the Routers of a server, one per stream name. A Router is
// made when a stream is first published and kept while the server runs, so
// that viewers of a known stream can wait for its publisher to come back.
type Registry struct {
	log     *slog.Logger
	mu      sync.Mutex
	routers map[string]*Router
	added   chan struct{} // closed and replaced when a Router is made
}

// NewRegistry makes an empty Registry. log may be nil.
func NewRegistry(log *slog.Logger) *Registry {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registry{log: log.With("component", "sfu"), routers: map[string]*Router{}, added: make(chan struct{})}
}

// Router returns the stream's Router, or nil when the stream was never published.
func (g *Registry) Router(name string) *Router {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.routers[name]
}

// RouterFor returns the stream's Router, making it if needed (for a publisher).
func (g *Registry) RouterFor(name string) *Router {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.routers[name]
	if r == nil {
		r = newRouter(name, g.log)
		g.routers[name] = r
		close(g.added)
		g.added = make(chan struct{})
	}
	return r
}

// Routers returns every Router made so far and a channel that is closed
// when the next one is made, so that a consumer such as the packager can
// follow new streams without a callback.
func (g *Registry) Routers() ([]*Router, <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*Router, 0, len(g.routers))
	for _, r := range g.routers {
		out = append(out, r)
	}
	return out, g.added
}

// Streams returns a snapshot of every known stream, sorted by name.
func (g *Registry) Streams() []StreamStats {
	g.mu.Lock()
	routers := make([]*Router, 0, len(g.routers))
	for _, r := range g.routers {
		routers = append(routers, r)
	}
	g.mu.Unlock()
	out := make([]StreamStats, 0, len(routers))
	for _, r := range routers {
		out = append(out, r.Stats())
	}
	slices.SortFunc(out, func(a, b StreamStats) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}
