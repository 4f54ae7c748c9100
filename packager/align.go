package packager

import (
	"sync"
	"time"
)

// alignMinTolerance is how far apart two layers' times for one captured
// frame may always be and still be taken as the same frame, before the
// reference layer's frame interval is known, and the least tolerance after.
const alignMinTolerance = 3 * time.Millisecond

// alignRing is the number of recent frame times kept per publication.
const alignRing = 64

// frameAligner gives the video layers of one publication the very same
// decode times for frames captured at the same moment. Without it, each
// layer's times carry their own error from its sender report, so that a
// player switching layers appends frames that overlap the ones it has by a
// fraction of a frame, which browsers' MSE handles by evicting frames
// (hls.js issue #6777). Times are in nanoseconds since the publication's
// epoch, so tracks of any clock rate compare.
//
// How far apart the layers' times for one frame may be depends on the
// sender: libwebrtc derives each layer's sender report from the capture
// time in milliseconds (about a millisecond of error), but a sender that
// extrapolates its report from the time it last wrote a packet (pion's
// interceptor) is off by however late that write was, several
// milliseconds on a busy machine. So two times are the same frame when
// they are closer than two fifths of the reference layer's shortest frame
// interval (13 ms at 30 frames a second), and never less than
// alignMinTolerance: the nearest frame within less than half an interval
// can only be the same captured frame.
//
// The first layer to ask settles at once and is the reference. Each other
// layer moves its whole timeline once, by the difference between its frame
// and the settled layers' nearest recent frame, while it has not yet
// opened a segment (so no written time moves); a layer that finds no match
// before its first segment keeps its own mapping.
type frameAligner struct {
	mu       sync.Mutex
	ref      bool // a reference layer has settled
	recent   [alignRing]time.Duration
	n        int           // frames recorded, ever
	lastRef  time.Duration // the reference layer's latest frame
	refSeen  bool          // lastRef is set
	interval time.Duration // the reference layer's shortest frame interval, 0 until known
}

// align returns by how much a layer that has not settled yet must move a
// frame at t, whether it has settled with it, and whether it is the
// reference layer (the first to ask).
func (a *frameAligner) align(t time.Duration) (adj time.Duration, settled, reference bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.ref {
		a.ref = true
		return 0, true, true
	}
	tol := a.toleranceLocked()
	best, found := time.Duration(0), false
	for i := range min(a.n, alignRing) {
		d := a.recent[i] - t
		if d.Abs() < tol && (!found || d.Abs() < best.Abs()) {
			best, found = d, true
		}
	}
	return best, found, false
}

// note records the time of a frame of a settled layer; reference says
// whether it is the reference layer's.
func (a *frameAligner) note(t time.Duration, reference bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recent[a.n%alignRing] = t
	a.n++
	if !reference {
		return
	}
	if d := t - a.lastRef; a.refSeen && d > 0 && (a.interval == 0 || d < a.interval) {
		a.interval = d
	}
	a.lastRef, a.refSeen = t, true
}

// tolerance is how far apart two layers' frames may now be and match.
func (a *frameAligner) tolerance() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.toleranceLocked()
}

func (a *frameAligner) toleranceLocked() time.Duration {
	return max(alignMinTolerance, a.interval*2/5)
}
