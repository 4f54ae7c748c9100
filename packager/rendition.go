package packager

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Part is one CMAF chunk: an LL-HLS partial segment.
type Part struct {
	Data        []byte
	Duration    time.Duration
	Independent bool // starts with a keyframe
}

// Segment is one media segment. Until it is complete it holds the parts
// written so far; once complete, Data holds them back to back and each
// Part's Data is a slice of it.
type Segment struct {
	MSN           uint64
	Start         time.Time // wall-clock time of its first sample (PROGRAM-DATE-TIME)
	Duration      time.Duration
	Parts         []*Part
	Init          string // name of the init segment it needs
	Discontinuity bool   // first segment of a new publication
	// Gap marks a number this rendition has no media for (EXT-X-GAP): the
	// end of a publication that it did not reach while others did.
	Gap      bool
	Complete bool
	Data     []byte
	Samples  int
	// DecodeTime is the first sample's decode time in the track's time scale.
	DecodeTime uint64
}

// View is a rendition at one instant. It is immutable: a newer state is a
// new View, and Changed is closed when it exists.
type View struct {
	Name     string
	Video    bool
	Codecs   string // RFC 6381 codec string, e.g. "avc1.42e01f" or "opus"
	Width    int
	Height   int
	Channels int
	// Segments are the window, oldest first; the last may be incomplete.
	Segments         []*Segment
	DiscontinuitySeq uint64
	Inits            map[string][]byte
	// Live is true while a publisher feeds the rendition.
	Live bool
	// Updated is when the last part was added.
	Updated time.Time
	Changed <-chan struct{}

	// rendered caches this View's media playlist and delta update: every
	// client that waited for the same part gets the same bytes, rendered
	// once.
	rendered *[2]atomic.Pointer[[]byte]
}

// Segment returns the segment msn, if it is in the window.
func (v *View) Segment(msn uint64) (*Segment, bool) {
	if len(v.Segments) == 0 {
		return nil, false
	}
	first := v.Segments[0].MSN
	if msn < first || msn-first >= uint64(len(v.Segments)) {
		return nil, false
	}
	return v.Segments[msn-first], true
}

// Part returns part i of segment msn, if it exists.
func (v *View) Part(msn uint64, i int) (*Part, bool) {
	s, ok := v.Segment(msn)
	if !ok || i < 0 || i >= len(s.Parts) {
		return nil, false
	}
	return s.Parts[i], true
}

// Last returns the last segment that has a part, and that part's index;
// ok is false when there is none.
func (v *View) Last() (msn uint64, part int, ok bool) {
	for i := len(v.Segments) - 1; i >= 0; i-- {
		if s := v.Segments[i]; len(s.Parts) > 0 {
			return s.MSN, len(s.Parts) - 1, true
		}
	}
	return 0, 0, false
}

// LastComplete returns the newest complete segment's number.
func (v *View) LastComplete() (uint64, bool) {
	for i := len(v.Segments) - 1; i >= 0; i-- {
		if v.Segments[i].Complete {
			return v.Segments[i].MSN, true
		}
	}
	return 0, false
}

// Has reports whether the view holds part `part` of segment msn, or the
// whole segment when part < 0 ("the Playlist contains ... the Segment"
// or "the Partial Segment", rfc8216bis §6.2.5.2). A part index past the
// end of a complete segment means part 0 of the next one.
func (v *View) Has(msn uint64, part int64) bool {
	if part < 0 {
		c, ok := v.LastComplete()
		return ok && c >= msn
	}
	lm, lp, ok := v.Last()
	if !ok {
		return false
	}
	if lm > msn {
		return true
	}
	return lm == msn && int64(lp) >= part
}

// Bandwidth returns the peak and average bit rate over the complete
// segments of the window, and their frame rate (samples per second).
func (v *View) Bandwidth() (peak, avg int, rate float64) {
	var bits, samples float64
	var dur time.Duration
	for _, s := range v.Segments {
		if !s.Complete || s.Gap || s.Duration <= 0 {
			continue
		}
		b := float64(len(s.Data) * 8)
		peak = max(peak, int(b/s.Duration.Seconds()))
		bits += b
		samples += float64(s.Samples)
		dur += s.Duration
	}
	if dur > 0 {
		avg = int(bits / dur.Seconds())
		rate = samples / dur.Seconds()
	}
	return peak, avg, rate
}

// Rendition is one video layer or the audio of a stream, kept across
// publisher restarts. Its pipeline writes it; readers take Views.
type Rendition struct {
	name   string
	window time.Duration

	mu      sync.Mutex // serialises writers; readers use view
	view    atomic.Pointer[View]
	changed chan struct{}
	nextMSN uint64 // the number after the last segment ever written
	chunks  uint32 // mfhd sequence number of the last chunk
}

func newRendition(name string, video bool, window time.Duration) *Rendition {
	r := &Rendition{name: name, window: window, changed: make(chan struct{})}
	r.view.Store(&View{Name: name, Video: video, Inits: map[string][]byte{}, Changed: r.changed, rendered: new([2]atomic.Pointer[[]byte])})
	return r
}

// Name is the rendition's name, the path element of its URLs.
func (r *Rendition) Name() string { return r.name }

// View returns the rendition's current state.
func (r *Rendition) View() *View { return r.view.Load() }

// update makes a new View from a copy of the current one. r.mu is held.
func (r *Rendition) update(f func(v *View)) {
	old := r.view.Load()
	v := *old
	v.Segments = append([]*Segment(nil), old.Segments...)
	f(&v)
	v.rendered = new([2]atomic.Pointer[[]byte])
	ch := r.changed
	r.changed = make(chan struct{})
	v.Changed = r.changed
	r.view.Store(&v)
	close(ch)
}

// written reports whether the rendition has ever had a segment.
func (r *Rendition) written() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nextMSN > 0
}

// next returns the number the rendition's next segment must have at least.
func (r *Rendition) next() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nextMSN
}

// setInfo records what the rendition carries.
func (r *Rendition) setInfo(codecs string, width, height, channels int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.update(func(v *View) { v.Codecs, v.Width, v.Height, v.Channels = codecs, width, height, channels })
}

// setLive marks the rendition fed or not.
func (r *Rendition) setLive(live bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.update(func(v *View) { v.Live = live })
}

// maxGap is the most segments a new publication may find missing at the
// end of a rendition's window and fill with gaps (see openSegment).
const maxGap = 5

// openSegment starts segment msn. A publication's renditions stop at
// slightly different times, so a restarted publisher's first segment (one
// number for all renditions) may leave a few numbers unused at the end of
// a rendition that stopped early: those become gap segments of gapDur
// each, as "EXT-X-GAP ... indicates that the segment URI ... does not
// contain media data" (rfc8216bis §4.4.4.7). Otherwise, if msn does not
// follow the window's last segment, the window restarts (a playlist must
// number its segments consecutively).
func (r *Rendition) openSegment(s *Segment, init string, initData []byte, gapDur time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.MSN < r.nextMSN {
		return fmt.Errorf("rendition %s: segment %d after %d", r.name, s.MSN, r.nextMSN-1)
	}
	r.update(func(v *View) {
		if n := len(v.Segments); n > 0 && s.Discontinuity && v.Segments[n-1].Complete &&
			s.MSN > v.Segments[n-1].MSN+1 && s.MSN-v.Segments[n-1].MSN-1 <= maxGap && gapDur > 0 {
			// Gaps start on the boundary grid, where the other renditions'
			// segments of the same numbers start (players align variants by
			// PROGRAM-DATE-TIME), even when the last segment ended early.
			last := v.Segments[n-1]
			for msn := last.MSN + 1; msn < s.MSN; msn++ {
				start := last.Start.Add(time.Duration(msn-last.MSN) * gapDur)
				v.Segments = append(v.Segments, &Segment{MSN: msn, Start: start, Duration: gapDur, Init: last.Init, Gap: true, Complete: true})
			}
		}
		if n := len(v.Segments); n > 0 && v.Segments[n-1].MSN+1 != s.MSN {
			for _, old := range v.Segments {
				if old.Discontinuity {
					v.DiscontinuitySeq++
				}
			}
			v.Segments = nil
		}
		if _, ok := v.Inits[init]; !ok {
			inits := make(map[string][]byte, len(v.Inits)+1)
			for k, b := range v.Inits {
				inits[k] = b
			}
			inits[init] = initData
			v.Inits = inits
		}
		s.Init = init
		v.Segments = append(v.Segments, s)
	})
	r.nextMSN = s.MSN + 1
	return nil
}

// addPart appends a part to the open segment.
func (r *Rendition) addPart(p *Part, samples int, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.update(func(v *View) {
		n := len(v.Segments)
		if n == 0 || v.Segments[n-1].Complete {
			return
		}
		s := *v.Segments[n-1]
		s.Parts = append(s.Parts, p)
		s.Duration += p.Duration
		s.Samples += samples
		v.Segments[n-1] = &s
		v.Updated = now
	})
}

// closeSegment completes the open segment and slides the window.
func (r *Rendition) closeSegment() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.update(func(v *View) {
		n := len(v.Segments)
		if n == 0 || v.Segments[n-1].Complete {
			return
		}
		old := v.Segments[n-1]
		if len(old.Parts) == 0 { // nothing was written: forget it
			v.Segments = v.Segments[:n-1]
			return
		}
		s := *old
		s.Complete = true
		size := 0
		for _, p := range s.Parts {
			size += len(p.Data)
		}
		s.Data = make([]byte, 0, size)
		s.Parts = make([]*Part, len(old.Parts))
		for i, p := range old.Parts {
			off := len(s.Data)
			s.Data = append(s.Data, p.Data...)
			q := *p
			q.Data = s.Data[off:len(s.Data):len(s.Data)]
			s.Parts[i] = &q
		}
		v.Segments[n-1] = &s
		r.trim(v)
	})
}

// trim drops segments that end more than the window before the newest
// one's end, and init segments nothing refers to any more.
func (r *Rendition) trim(v *View) {
	var total time.Duration
	for _, s := range v.Segments {
		total += s.Duration
	}
	drop := 0
	for drop < len(v.Segments)-1 && total-v.Segments[drop].Duration >= r.window {
		total -= v.Segments[drop].Duration
		if v.Segments[drop].Discontinuity {
			v.DiscontinuitySeq++
		}
		drop++
	}
	if drop == 0 {
		return
	}
	v.Segments = v.Segments[drop:]
	used := map[string]bool{}
	for _, s := range v.Segments {
		used[s.Init] = true
	}
	if len(used) < len(v.Inits) {
		inits := make(map[string][]byte, len(used))
		for k := range used {
			inits[k] = v.Inits[k]
		}
		v.Inits = inits
	}
}
