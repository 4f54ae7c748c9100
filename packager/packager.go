package packager

import (
	"cmp"
	"context"
	"log/slog"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/hybridcast/hybridcast/packager/internal/dash"
	"github.com/hybridcast/hybridcast/sfu"
)

// Config configures a Packager. Zero values take the documented defaults.
type Config struct {
	// PartDuration is the LL-HLS part target (the CMAF chunk length).
	// Default 200 ms.
	PartDuration time.Duration
	// SegmentDuration is the segment length and the spacing of the
	// boundary grid. Default 1 s.
	SegmentDuration time.Duration
	// Window is how much media a playlist keeps. Default 30 s.
	Window time.Duration
	// SenderReportWait is how long a track waits for its first RTCP sender
	// report before it is timed by arrival instead. Default 1 s.
	SenderReportWait time.Duration
	// QueueSize is each track subscription's queue length. Default 512.
	QueueSize int
	Logger    *slog.Logger
	// OnPart, when set, is called after each part is published with how
	// long after the end of its media (on the stream's clock) that was.
	// It runs on the packaging goroutine: keep it quick.
	OnPart func(video bool, lag time.Duration)
	// Now is the clock; default time.Now. Tests inject their own.
	Now func() time.Time
}

// PartHoldBack is the playlists' PART-HOLD-BACK: three part durations
// (rfc8216bis §4.4.3.8 asks for at least three times the Part Target).
func (c Config) PartHoldBack() time.Duration { return 3 * c.PartDuration }

func (c *Config) defaults() {
	if c.PartDuration <= 0 {
		c.PartDuration = 200 * time.Millisecond
	}
	if c.SegmentDuration <= 0 {
		c.SegmentDuration = time.Second
	}
	if c.Window <= 0 {
		c.Window = 30 * time.Second
	}
	if c.SenderReportWait <= 0 {
		c.SenderReportWait = time.Second
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 512
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Packager packages every stream of an sfu.Registry.
type Packager struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	streams map[string]*Stream
}

// New makes a Packager; Run starts it.
func New(cfg Config) *Packager {
	cfg.defaults()
	return &Packager{cfg: cfg, log: cfg.Logger.With("component", "packager"), streams: map[string]*Stream{}}
}

// Config returns the configuration in effect, defaults filled in.
func (p *Packager) Config() Config { return p.cfg }

// Run packages each stream of reg from its first publication on, until ctx
// ends; then it ends every subscription, flushes what was written, and
// returns.
func (p *Packager) Run(ctx context.Context, reg *sfu.Registry) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	seen := map[*sfu.Router]bool{}
	for {
		routers, changed := reg.Routers()
		for _, r := range routers {
			if seen[r] {
				continue
			}
			seen[r] = true
			s := p.stream(r.Name())
			wg.Go(func() { s.follow(ctx, r) })
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		}
	}
}

func (p *Packager) stream(name string) *Stream {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.streams[name]
	if s == nil {
		s = &Stream{name: name, cfg: p.cfg, log: p.log.With("stream", name),
			renditions: map[string]*Rendition{}, changed: make(chan struct{})}
		p.streams[name] = s
	}
	return s
}

// Stream returns the named stream, or nil when it was never published.
func (p *Packager) Stream(name string) *Stream {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.streams[name]
}

// Stream is one stream's renditions, kept across publisher restarts.
type Stream struct {
	name string
	cfg  Config
	log  *slog.Logger

	mu         sync.Mutex
	renditions map[string]*Rendition
	live       []*Rendition // the current publication's, video first
	changed    chan struct{}
	cur        *publication // the current publication, nil between them

	lastMPD  *dash.Manifest // the last MPD rendered, without its publishTime
	mpdBytes []byte         // and its bytes, publishTime being when it changed
}

// Name returns the stream name.
func (s *Stream) Name() string { return s.name }

// Config returns the packager's configuration.
func (s *Stream) Config() Config { return s.cfg }

// Renditions returns the current publication's renditions (none when the
// stream is not live), video first by picture height (highest first),
// audio last, and a channel closed when that set changes. The
// order is taken at the call: a layer's size is known only once its SPS
// has arrived, so that layer names (h/m/l, q/h/f, SSRCs) never decide it.
func (s *Stream) Renditions() ([]*Rendition, <-chan struct{}) {
	s.mu.Lock()
	live, changed := slices.Clone(s.live), s.changed
	s.mu.Unlock()
	slices.SortFunc(live, func(a, b *Rendition) int {
		va, vb := a.View(), b.View()
		if va.Video != vb.Video {
			if va.Video {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(vb.Height, va.Height), cmp.Compare(a.name, b.name))
	})
	return live, changed
}

// Rendition returns the named rendition of the current publication.
func (s *Stream) Rendition(name string) *Rendition {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.live {
		if r.name == name {
			return r
		}
	}
	return nil
}

func (s *Stream) setLive(live []*Rendition) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.live = live
	close(s.changed)
	s.changed = make(chan struct{})
}

// follow packages each publication of r in turn until ctx ends.
func (s *Stream) follow(ctx context.Context, r *sfu.Router) {
	var pub *publication
	defer func() {
		if pub != nil {
			pub.close()
		}
	}()
	for {
		tracks, changed := r.Tracks()
		if pub != nil && pub.ended(tracks) {
			pub.close()
			pub = nil
			s.mu.Lock()
			s.cur = nil
			s.mu.Unlock()
		}
		if len(tracks) > 0 {
			if pub == nil {
				pub = s.newPublication()
				s.mu.Lock()
				s.cur = pub
				s.mu.Unlock()
			}
			for _, t := range tracks {
				pub.add(t)
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

var safeName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// rendition returns the stream's rendition for a track, made on first use.
// Names are the SFU's track IDs ("video", "video-h", "audio").
func (s *Stream) rendition(t *sfu.Track) *Rendition {
	name := t.Info().ID
	if !safeName.MatchString(name) {
		name = t.Info().Kind.String()
		if rid := t.Info().RID; safeName.MatchString(rid) {
			name += "-" + rid
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.renditions[name]
	if r == nil {
		r = newRendition(name, t.Info().Kind == sfu.KindVideo, s.cfg.Window)
		s.renditions[name] = r
	}
	return r
}

// publication is one publisher's run on the stream: one timeline (epoch),
// one boundary grid, one pipeline per packaged track.
type publication struct {
	s        *Stream
	epoch    time.Time
	gridBase uint64 // the grid index of the epoch, counted from the Unix epoch
	contBase uint64 // the stream's next segment number, when it had segments before
	segTick  time.Duration

	mu      sync.Mutex
	offset  time.Duration // our clock minus the publisher's NTP clock, from its first report
	haveOff bool
	pipes   map[*sfu.Track]*pipe
	closed  bool
	// firstIdx is the grid index of the publication's first segment, set
	// by the first rendition that opens one; -1 before.
	firstIdx int64
	// hasVideo is set once a video track is packaged; videoFirst is the
	// first grid index at which a video layer can open its first segment
	// (the boundary after its first keyframe), -1 until one has one.
	hasVideo   bool
	videoFirst int64

	// align gives the video layers one timeline, frame for frame.
	align frameAligner

	stop chan struct{}
	wg   sync.WaitGroup
}

type pipe struct {
	p           *pipeline
	unsubscribe func()
}

func (s *Stream) newPublication() *publication {
	now := s.cfg.Now()
	d := s.cfg.SegmentDuration
	// The grid starts at the last boundary before now, counted from the
	// Unix epoch; segment numbers follow it and so only ever grow.
	epoch := now.Truncate(d)
	var cont uint64
	s.mu.Lock()
	for _, r := range s.renditions {
		cont = max(cont, r.next())
	}
	s.mu.Unlock()
	p := &publication{s: s, epoch: epoch, gridBase: uint64(epoch.UnixNano() / int64(d)), contBase: cont, segTick: d,
		pipes: map[*sfu.Track]*pipe{}, stop: make(chan struct{}), firstIdx: -1, videoFirst: -1}
	p.wg.Go(p.requestKeyframes)
	return p
}

// audioWaitSegments is how many boundaries after its start the audio of a
// publication with video waits for the video's first segment before it
// starts alone (a video track with no keyframe yet).
const audioWaitSegments = 3

// firstMSN numbers a rendition's first segment of the publication, which
// starts at grid index idx; began is the grid index where the rendition's
// track began. The publication's first segment (whichever rendition opens
// it) takes the stream's next number, so a restarted publisher continues
// the window, or, on a new stream, its index on the grid counted from the
// Unix epoch, so numbers keep growing across server restarts. ok is false
// for a segment before the publication's first one: that rendition starts
// at the next boundary instead.
//
// Audio does not open the publication's first segment while the video
// could still begin later: it waits for the boundary where the first video
// layer can (up to audioWaitSegments). Audio starts before the video's
// first keyframe, and an audio playlist that began a segment before the
// video's put its first segment before time zero of hls.js's timeline
// (the main playlist's start). hls.js (1.7) keeps such a start at zero, so
// when a delta update skipped that segment and hls.js filled it back in
// from the old playlist, it shifted the whole audio timeline by a segment:
// players near the live edge then loaded the wrong audio parts and stalled
// at the holes.
func (p *publication) firstMSN(idx, began int64, video bool) (msn uint64, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.firstIdx < 0 {
		if !video && p.hasVideo && (p.videoFirst < 0 || idx < p.videoFirst) && idx <= began+audioWaitSegments {
			return 0, false
		}
		p.firstIdx = idx
		p.s.log.Info("packaging publication", "first_msn", p.startNumber()+uint64(idx))
	}
	if idx < p.firstIdx {
		return 0, false
	}
	return p.startNumber() + uint64(idx), true
}

// startNumber is the number of the segment at grid index 0 (DASH's
// startNumber): the grid's own index on a new stream, or the stream's next
// number less the first segment's index when it continues. p.mu is held
// and firstIdx is set.
func (p *publication) startNumber() uint64 {
	if p.contBase > 0 {
		return p.contBase - uint64(p.firstIdx)
	}
	return p.gridBase
}

// ended reports whether the publication's tracks are gone from tracks.
func (p *publication) ended(tracks []*sfu.Track) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for t := range p.pipes {
		if !slices.Contains(tracks, t) {
			return true
		}
		select {
		case <-t.Done():
			return true
		default:
		}
	}
	return false
}

// add starts packaging t unless it is already, or its codec has no CMAF
// mapping here.
func (p *publication) add(t *sfu.Track) {
	p.mu.Lock()
	if _, ok := p.pipes[t]; ok || p.closed {
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	info := t.Info()
	var video bool
	switch info.MimeType {
	case sfu.MimeTypeH264, sfu.MimeTypeVP9, sfu.MimeTypeAV1:
		video = true
	case "audio/opus":
	default:
		p.s.log.Warn("codec not packaged for HLS/DASH", "track", info.ID, "codec", info.MimeType)
		p.mu.Lock()
		p.pipes[t] = &pipe{}
		p.mu.Unlock()
		return
	}
	r := p.s.rendition(t)
	if !video {
		r.setInfo("opus", 0, 0, int(max(info.Channels, 2)))
	} else {
		p.mu.Lock()
		p.hasVideo = true
		p.mu.Unlock()
	}
	pl := newPipeline(p, r, t, video)
	// Without the SFU's keyframe start: that would ask this layer alone for
	// a keyframe now, off the grid the other layers are cut on. The
	// depacketizer waits for an IDR itself.
	unsub, err := t.Subscribe(pl, sfu.WithQueueSize(p.s.cfg.QueueSize), sfu.WithoutKeyframeStart())
	if err != nil {
		return // the track closed meanwhile; the router will tell
	}
	r.setLive(true)
	p.mu.Lock()
	p.pipes[t] = &pipe{p: pl, unsubscribe: unsub}
	live := p.liveRenditions()
	p.mu.Unlock()
	p.s.setLive(live)
}

// liveRenditions lists the packaged renditions (Stream.Renditions orders
// them). p.mu is held.
func (p *publication) liveRenditions() []*Rendition {
	var out []*Rendition
	for _, x := range p.pipes {
		if x.p != nil {
			out = append(out, x.p.rend)
		}
	}
	return out
}

// close ends every subscription, flushes the open segments, and marks the
// renditions as no longer live.
func (p *publication) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	pipes := p.pipes
	p.mu.Unlock()
	close(p.stop)
	p.wg.Wait()
	for _, x := range pipes {
		if x.p == nil {
			continue
		}
		x.unsubscribe()
		x.p.flush()
		x.p.rend.setLive(false)
	}
	p.s.setLive(nil)
}

// requestKeyframes asks every video layer for a keyframe at each boundary
// of the grid, so that each layer can cut its segment there.
func (p *publication) requestKeyframes() {
	next := p.epoch.Add(p.segTick)
	for {
		t := time.NewTimer(time.Until(next))
		select {
		case <-p.stop:
			t.Stop()
			return
		case <-t.C:
		}
		p.mu.Lock()
		for tr, x := range p.pipes {
			if x.p != nil && x.p.video {
				tr.RequestKeyframe()
			}
		}
		p.mu.Unlock()
		for !next.After(time.Now()) {
			next = next.Add(p.segTick)
		}
	}
}

// senderTime converts a sender report's NTP time to our clock. The offset
// between the publisher's clock and ours is taken once, from the first
// report of the publication, and used for every track, so that the tracks
// keep the relative timing their reports give them.
func (p *publication) senderTime(sr sfu.SenderReport) time.Time {
	ntp := sfu.NTPToTime(sr.NTPTime)
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.haveOff {
		p.offset, p.haveOff = sr.Arrival.Sub(ntp), true
	}
	return ntp.Add(p.offset)
}

func (p *publication) partTicks(rate int64) int64 {
	return int64(p.s.cfg.PartDuration) * rate / int64(time.Second)
}

func (p *publication) segTicks(rate int64) int64 {
	return max(int64(p.segTick)*rate/int64(time.Second), 1)
}

func (p *publication) boundaryTicks(k, rate int64) int64 { return k * p.segTicks(rate) }

func (p *publication) boundaryIndex(ticks, rate int64) int64 { return ticks / p.segTicks(rate) }

// ticksToDuration converts a count of clock ticks to a duration without
// overflowing for long-running streams.
func ticksToDuration(t, rate int64) time.Duration {
	return time.Duration(t/rate)*time.Second + time.Duration(t%rate*int64(time.Second)/rate)
}

// videoStarted records that a video layer's timeline began at grid index
// idx: its first segment can open at the next boundary.
func (p *publication) videoStarted(idx int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.videoFirst < 0 || idx+1 < p.videoFirst {
		p.videoFirst = idx + 1
	}
}

// partWritten reports a part that ends at end (on the stream's clock).
func (p *publication) partWritten(video bool, end time.Time) {
	if f := p.s.cfg.OnPart; f != nil {
		f(video, p.s.cfg.Now().Sub(end))
	}
}
