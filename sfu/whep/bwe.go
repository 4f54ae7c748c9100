package whep

import (
	"time"

	"github.com/hybridcast/hybridcast/sfu"
)

// Automatic layer choice from the viewer's bandwidth estimate.
//
// The estimate is the viewer's REMB (RFC draft-alvestrand-rmcat-remb): we
// answer with goog-remb and without transport-cc, so a browser's receive
// side runs its delay-based estimator and reports it. The policy:
//
//   - a new viewer starts on a middle layer, so its first frame comes fast
//     and small, then steps up;
//   - the target is the best active layer whose measured bitrate fits in
//     headroom × estimate;
//   - down at once when the current layer no longer fits (congestion);
//   - up only after the higher layer has fitted for upHold, so a brief
//     optimistic estimate does not flap the picture;
//   - without any estimate (a client that sends no REMB) it steps up to the
//     best layer after noEstimateWait.
const (
	headroom       = 0.85
	upHold         = 3 * time.Second
	noEstimateWait = 2 * time.Second
)

// layerPolicy holds one viewer's automatic-choice state. It is used by the
// session's run goroutine only.
type layerPolicy struct {
	start    time.Time
	upTarget *sfu.Track
	upSince  time.Time
	// layer reads a track's measurements (tests replace it).
	layer func(*sfu.Track) sfu.LayerStats
}

func (p *layerPolicy) stats(t *sfu.Track) sfu.LayerStats {
	if p.layer != nil {
		return p.layer(t)
	}
	return t.Layer()
}

// choose returns the layer to forward among ranked (best first, as
// sfu.RankLayers orders them) given the current one and the estimate in
// bit/s (0: none received yet).
func (p *layerPolicy) choose(now time.Time, ranked []*sfu.Track, cur *sfu.Track, estimate int) *sfu.Track {
	active := ranked[:0:0]
	for _, t := range ranked {
		if p.stats(t).Active {
			active = append(active, t)
		}
	}
	if len(active) == 0 {
		return ranked[0]
	}
	middle := active[len(active)/2]
	if estimate <= 0 {
		if now.Sub(p.start) < noEstimateWait {
			if cur != nil && contains(active, cur) {
				return cur
			}
			return middle
		}
		return active[0]
	}
	fit := active[len(active)-1]
	for _, t := range active {
		if float64(p.stats(t).Bitrate) <= headroom*float64(estimate) {
			fit = t
			break
		}
	}
	curIdx := index(active, cur)
	fitIdx := index(active, fit)
	switch {
	case curIdx < 0: // no current layer (start, or it went inactive)
		if cur == nil && now.Sub(p.start) < noEstimateWait && fitIdx < index(active, middle) {
			return middle // start modestly even with an early high estimate
		}
		return fit
	case fitIdx > curIdx: // the current layer no longer fits: down now
		p.upTarget = nil
		return fit
	case fitIdx < curIdx: // a better layer fits: up after it held
		if p.upTarget != fit {
			p.upTarget, p.upSince = fit, now
			return cur
		}
		if now.Sub(p.upSince) >= upHold {
			p.upTarget = nil
			return fit
		}
		return cur
	}
	p.upTarget = nil
	return cur
}

func index(ts []*sfu.Track, t *sfu.Track) int {
	for i, x := range ts {
		if x == t {
			return i
		}
	}
	return -1
}

func contains(ts []*sfu.Track, t *sfu.Track) bool { return index(ts, t) >= 0 }
