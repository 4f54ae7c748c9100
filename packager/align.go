package packager

import (
	"sync"
	"time"
)

// alignTolerance is how far apart two layers' times for one captured frame
// may be and still be taken as the same frame. Simulcast layers encode the
// same captured frames, and the sender reports that map each layer's RTP
// time are exact only to about a millisecond (libwebrtc extrapolates their
// RTP time from the capture time in milliseconds): a few milliseconds is
// far more than that error, and far less than a frame interval.
const alignTolerance = 3 * time.Millisecond

// alignRing is the number of recent frame times kept per publication.
const alignRing = 64

// frameAligner gives the video layers of one publication the very same
// decode times for frames captured at the same moment. Without it, each
// layer's times carry its own sub-millisecond error from its sender
// report, so that a player switching layers appends frames that overlap
// the ones it has by a fraction of a millisecond, which browsers' MSE
// handles by evicting frames (hls.js issue #6777). Times are in
// nanoseconds since the publication's epoch, so tracks of any clock rate
// compare.
//
// The first layer to ask settles at once and is the reference. Each other
// layer moves its whole timeline once, by the difference between its frame
// and the settled layers' nearest recent frame, while it has not yet
// opened a segment (so no written time moves); a layer that finds no match
// before its first segment keeps its own mapping.
type frameAligner struct {
	mu     sync.Mutex
	ref    bool // a reference layer has settled
	recent [alignRing]time.Duration
	n      int // frames recorded, ever
}

// align returns by how much a layer that has not settled yet must move a
// frame at t, and whether it has settled with it.
func (a *frameAligner) align(t time.Duration) (adj time.Duration, settled bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.ref {
		a.ref = true
		return 0, true
	}
	best, found := time.Duration(0), false
	for i := range min(a.n, alignRing) {
		d := a.recent[i] - t
		if d.Abs() <= alignTolerance && (!found || d.Abs() < best.Abs()) {
			best, found = d, true
		}
	}
	return best, found
}

// note records the time of a frame of a settled layer.
func (a *frameAligner) note(t time.Duration) {
	a.mu.Lock()
	a.recent[a.n%alignRing] = t
	a.n++
	a.mu.Unlock()
}
