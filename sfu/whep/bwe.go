package whep

import (
	"time"

	"github.com/hybridcast/hybridcast/sfu"
)

// Automatic layer choice from the viewer's bandwidth estimate.
//
// The estimate is the viewer's REMB: the viewer API negotiates goog-remb and
// abs-send-time (no transport-cc), so a browser runs its receive-side
// delay-based estimator and reports it, about once a second after the
// first few seconds. A receive-side estimate grows only to about 1.5 times
// what actually arrives, so an estimate cannot show headroom for a layer
// that is not being sent: going up is a probe.
//
//   - A new viewer starts on a middle layer: its first frame is small and fast.
//   - Down at once when the current layer's bitrate no longer fits in the
//     estimate (congestion).
//   - Up one layer when the estimate has stayed at least upMargin above the
//     current layer's bitrate for upHold: the higher layer is the probe. For
//     probeWindow the estimate may lag the new rate; only an estimate that
//     falls below its value at the probe fails it. A failed probe steps
//     down at once. A layer left for congestion is not tried again for a
//     backoff that doubles each time (10 s, 20 s, … up to 2 min), so a link
//     at its limit does not flap between two layers.
//   - A viewer that sends no estimate at all (a plain pion client) steps up
//     to the best layer after noEstimateWait.
//   - Only active layers count; nobody stays on a layer that stopped.
const (
	upMargin       = 1.2
	upHold         = 3 * time.Second
	noEstimateWait = 8 * time.Second
	backoffMin     = 10 * time.Second
	backoffMax     = 2 * time.Minute
	probeWindow    = 5 * time.Second // a step down this soon after a step up is a failed probe
)

// layerPolicy holds one viewer's automatic-choice state. It is used by the
// session's run goroutine only.
type layerPolicy struct {
	start time.Time
	// healthySince is when the estimate last started to show headroom over
	// the current layer.
	healthySince time.Time
	healthyCur   *sfu.Track
	// lastUp is the layer last probed, when, and the estimate then.
	lastUp      *sfu.Track
	lastUpAt    time.Time
	lastUpEst   int
	backoff     map[*sfu.Track]time.Time // no probe of that layer before
	backoffSpan map[*sfu.Track]time.Duration
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
	if p.backoff == nil {
		p.backoff, p.backoffSpan = map[*sfu.Track]time.Time{}, map[*sfu.Track]time.Duration{}
	}
	var active []*sfu.Track
	for _, t := range ranked {
		if p.stats(t).Active {
			active = append(active, t)
		}
	}
	if len(active) == 0 {
		return ranked[0]
	}
	middle := active[len(active)/2]
	ci := index(active, cur)
	if ci < 0 { // start, or the current layer stopped
		if estimate <= 0 {
			return middle
		}
		return p.fitting(active, estimate, middle)
	}
	if estimate <= 0 {
		if now.Sub(p.start) >= noEstimateWait {
			return active[0]
		}
		return cur
	}
	bitrate := float64(p.stats(cur).Bitrate)
	probing := cur == p.lastUp && now.Sub(p.lastUpAt) < probeWindow
	// While probing, a receive-side estimate lags the new rate: only a
	// falling estimate (the delay-based detector saw overuse) means the
	// probe failed.
	congested := bitrate > float64(estimate)
	if probing {
		congested = estimate < p.lastUpEst
	}
	if congested && ci < len(active)-1 {
		// Congestion: the highest layer that fits, at once.
		down := p.fitting(active, estimate, active[len(active)-1])
		// Leaving a layer for congestion backs it off too, failed probe or
		// not: a link at its limit would otherwise flap between two layers.
		span := max(backoffMin, 2*p.backoffSpan[cur])
		span = min(span, backoffMax)
		p.backoffSpan[cur], p.backoff[cur] = span, now.Add(span)
		p.healthyCur = nil
		return down
	}
	if ci == 0 || probing {
		return cur
	}
	if float64(estimate) < upMargin*bitrate {
		p.healthyCur = nil
		return cur
	}
	if p.healthyCur != cur {
		p.healthyCur, p.healthySince = cur, now
		return cur
	}
	next := active[ci-1]
	if now.Sub(p.healthySince) < upHold || now.Before(p.backoff[next]) {
		return cur
	}
	p.lastUp, p.lastUpAt, p.lastUpEst, p.healthyCur = next, now, estimate, nil
	return next
}

// fitting returns the best layer whose bitrate fits in the estimate, or
// fallback when none does.
func (p *layerPolicy) fitting(active []*sfu.Track, estimate int, fallback *sfu.Track) *sfu.Track {
	for _, t := range active {
		if p.stats(t).Bitrate <= estimate {
			return t
		}
	}
	return fallback
}

func index(ts []*sfu.Track, t *sfu.Track) int {
	for i, x := range ts {
		if x == t {
			return i
		}
	}
	return -1
}
