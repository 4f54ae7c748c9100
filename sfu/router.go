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
	// retired holds the final counters of the tracks of ended
	// publications and of viewers that left, so that Counters only grows.
	retired StreamCounters
}

type viewerEntry struct{ v Viewer }

// Viewer is what a Router knows of one WebRTC viewer.
type Viewer interface {
	// Stats describes the viewer for the API. The Router calls it without
	// its lock.
	Stats() ViewerStats
	// Counters returns the viewer's cumulative counters. The Router calls
	// it under its lock (so that a viewer leaving never makes the stream's
	// totals shrink): it must only load atomics, never block or call back
	// into the Router.
	Counters() ViewerCounters
}

// ViewerCounters are one viewer's cumulative counters, or their sum over
// viewers.
type ViewerCounters struct {
	// Packets and Bytes (RTP payload) sent to the viewer, not counting
	// retransmissions.
	Packets uint64
	Bytes   uint64
	// NACKs counts the packets the viewer asked for again (one per
	// sequence number in its RTCP NACKs); Retransmitted the ones resent,
	// RetransmittedRTX those of them sent on an RTX stream (RFC 4588),
	// which a viewer that negotiated RTX gets.
	NACKs            uint64
	Retransmitted    uint64
	RetransmittedRTX uint64
	// KeyframeRequests counts the viewer's PLIs and FIRs.
	KeyframeRequests uint64
	// LayerSwitches counts changes of the simulcast layer forwarded.
	LayerSwitches uint64
	// ProbePackets counts the packets sent again as probe padding.
	ProbePackets uint64
}

func (c *ViewerCounters) add(o ViewerCounters) {
	c.Packets += o.Packets
	c.Bytes += o.Bytes
	c.NACKs += o.NACKs
	c.Retransmitted += o.Retransmitted
	c.RetransmittedRTX += o.RetransmittedRTX
	c.KeyframeRequests += o.KeyframeRequests
	c.LayerSwitches += o.LayerSwitches
	c.ProbePackets += o.ProbePackets
}

// ViewerStats describes one viewer for the API.
type ViewerStats struct {
	ID string `json:"id"`
	// Layer is the RID of the video layer the viewer receives ("" without simulcast).
	Layer string `json:"layer"`
	// Pinned is the layer the viewer asked for; "" means automatic.
	Pinned string `json:"pinned,omitempty"`
	// EstimatedBitrate is the viewer's latest bandwidth estimate (REMB), bit/s.
	EstimatedBitrate int `json:"estimated_bitrate,omitempty"`
	// ProbePadding is the probe traffic sent on top of the layer to find
	// room for the next one up, bit/s (0: not probing).
	ProbePadding     int    `json:"probe_padding,omitempty"`
	Packets          uint64 `json:"packets"`
	NACKs            uint64 `json:"nacks"`
	Retransmitted    uint64 `json:"retransmitted"`
	RetransmittedRTX uint64 `json:"retransmitted_rtx,omitempty"`
	KeyframeRequests uint64 `json:"keyframe_requests"`
	LayerSwitches    uint64 `json:"layer_switches"`
	ProbePackets     uint64 `json:"probe_packets,omitempty"`
	// SendPath is how the viewer's RTP leaves: "direct" (encrypted by the
	// SFU and queued on the media socket, see sfu/rtc) or "pion" (through
	// pion's write path: ICE-TCP, or a connection the direct path does
	// not fit).
	SendPath string `json:"send_path,omitempty"`
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

// AddViewer counts a viewer in. The returned function counts it out and
// keeps its counters in the stream's totals.
func (r *Router) AddViewer(v Viewer) (remove func()) {
	e := &viewerEntry{v: v}
	r.mu.Lock()
	r.viewers[e] = struct{}{}
	r.mu.Unlock()
	return sync.OnceFunc(func() {
		r.mu.Lock()
		delete(r.viewers, e)
		r.retired.Viewer.add(v.Counters())
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
	p := &Publication{r: r, id: id, log: r.log.With("publisher", id), workers: &workerPool{}}
	r.pub = p
	r.published = time.Now()
	r.notify()
	return p, nil
}

// Publication is one publisher's claim on a Router.
type Publication struct {
	r       *Router
	id      string
	log     *slog.Logger
	workers *workerPool // the tracks' shared workers
	tracks  []*Track    // guarded by r.mu
	closed  bool        // guarded by r.mu
}

// ID returns the identifier given to Publish.
func (p *Publication) ID() string { return p.id }

// AddTrack creates a track on the stream and tells the viewers about it.
func (p *Publication) AddTrack(cfg TrackConfig) (*Track, error) {
	if cfg.Logger == nil {
		cfg.Logger = p.log
	}
	t := NewTrack(cfg)
	t.workers = p.workers // before anyone can subscribe
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
	for _, t := range tracks {
		// Packets a read loop forwards between here and the track's Close
		// are left out of the totals; counting them could make a total
		// seen by an earlier Counters call shrink.
		p.r.retired.addTrack(t.Stats())
	}
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
		s.ViewerList = append(s.ViewerList, v.v.Stats())
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

// StreamCounters are a stream's cumulative counters since the server
// started, for metrics: they include the tracks of past publishers and the
// viewers that left, and never decrease.
type StreamCounters struct {
	Name string
	// Live says whether the stream has a publisher now; Viewers counts its
	// WebRTC viewers now.
	Live    bool
	Viewers int
	// PacketsIn and BytesIn (RTP payload) count the media packets received
	// from publishers, without padding-only probes.
	PacketsIn uint64
	BytesIn   uint64
	// KeyframeRequestsSent counts the keyframe requests (PLIs) sent to
	// publishers, after throttling.
	KeyframeRequestsSent uint64
	// Dropped counts packets not delivered to a subscriber (a WebRTC viewer
	// or the packager) whose queue was full.
	Dropped uint64
	// Viewer sums the WebRTC viewers' counters.
	Viewer ViewerCounters
}

func (c *StreamCounters) addTrack(t TrackStats) {
	c.PacketsIn += t.Packets
	c.BytesIn += t.Bytes
	c.KeyframeRequestsSent += t.KeyframeRequests
	c.Dropped += t.Dropped
}

// Counters returns the stream's cumulative counters. It reads only
// atomics, under the Router's lock, so that a total never shrinks when a
// publisher or a viewer leaves.
func (r *Router) Counters() StreamCounters {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.retired
	c.Name, c.Live, c.Viewers = r.name, r.pub != nil, len(r.viewers)
	if r.pub != nil {
		for _, t := range r.pub.tracks {
			c.addTrack(t.Stats())
		}
	}
	for v := range r.viewers {
		c.Viewer.add(v.v.Counters())
	}
	return c
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

// sorted returns every Router, sorted by stream name.
func (g *Registry) sorted() []*Router {
	g.mu.Lock()
	routers := make([]*Router, 0, len(g.routers))
	for _, r := range g.routers {
		routers = append(routers, r)
	}
	g.mu.Unlock()
	slices.SortFunc(routers, func(a, b *Router) int { return strings.Compare(a.name, b.name) })
	return routers
}

// Streams returns a snapshot of every known stream, sorted by name.
func (g *Registry) Streams() []StreamStats {
	routers := g.sorted()
	out := make([]StreamStats, 0, len(routers))
	for _, r := range routers {
		out = append(out, r.Stats())
	}
	return out
}

// Counters returns every known stream's cumulative counters, sorted by
// name.
func (g *Registry) Counters() []StreamCounters {
	routers := g.sorted()
	out := make([]StreamCounters, 0, len(routers))
	for _, r := range routers {
		out = append(out, r.Counters())
	}
	return out
}
