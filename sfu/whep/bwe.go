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
// what actually arrives (libwebrtc's AimdRateControl), so an estimate
// cannot show headroom for a layer that is not being sent: going up needs
// a probe.
//
//   - A new viewer starts on a middle layer: its first frame is small and fast.
//   - Down at once when the estimate falls below downMargin of the current
//     layer's bitrate (congestion). The margin absorbs a browser's first
//     estimate, which is just the rate that has arrived so far, and the
//     keyframes in a layer's measured bitrate.
//   - Up one layer when the estimate has reached the higher layer's
//     bitrate and the current layer has had room for upHold.
//   - While the estimate has room for the current layer (probeFrom) but
//     not for the next, probe with padding: RTX copies of recent packets,
//     each with a fresh abs-send-time, so that what arrives adds up to the
//     estimate itself. Sending at the estimate is what a sender's own
//     congestion control would do; it lets the estimate grow (by about 8 %
//     a second in libwebrtc) until the next layer fits. The probe fails when the
//     estimate falls below probeDrop of its value at the probe's start (the
//     delay-based detector saw overuse), or has not reached the next layer
//     after probeTimeout.
//     A viewer that cannot take padding (no RTX) steps up as soon as the
//     estimate has stayed upMargin above the current layer for upHold:
//     the higher layer itself is the probe.
//   - For probeWindow after a step up without padding the estimate may lag
//     the new rate; only an estimate that falls below its value at the
//     step fails it. A failed step or probe goes down at once, and a layer
//     left or probed in vain is not tried again for a backoff that doubles
//     each time (10 s, 20 s, … up to 2 min), so a link at its limit does
//     not flap between two layers.
//   - A viewer that sends no estimate at all (a plain pion client) steps up
//     to the best layer after noEstimateWait.
//   - Only active layers count; nobody stays on a layer that stopped.
const (
	upMargin       = 1.2 // headroom that steps up a viewer that cannot take padding
	probeFrom      = 1.0 // headroom that starts a padding probe
	downMargin     = 0.8
	upHold         = 3 * time.Second
	probeDrop      = 0.9
	probeTimeout   = 20 * time.Second
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
	// probe is the layer a padding probe is finding room for (nil: none),
	// since when, and the estimate then; padding is the padding wanted
	// now in bit/s, set by choose.
	probe      *sfu.Track
	probeStart time.Time
	probeEst   int
	padding    int
	// canPad says the viewer can take probe padding (it negotiated RTX);
	// set before each choose.
	canPad bool
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
// bit/s (0: none received yet). It also sets p.padding, the probe traffic
// to send meanwhile.
func (p *layerPolicy) choose(now time.Time, ranked []*sfu.Track, cur *sfu.Track, estimate int) *sfu.Track {
	if p.backoff == nil {
		p.backoff, p.backoffSpan = map[*sfu.Track]time.Time{}, map[*sfu.Track]time.Duration{}
	}
	p.padding = 0
	var active []*sfu.Track
	for _, t := range ranked {
		if p.stats(t).Active {
			active = append(active, t)
		}
	}
	if len(active) == 0 {
		p.probe = nil
		return ranked[0]
	}
	middle := active[len(active)/2]
	ci := index(active, cur)
	if ci < 0 { // start, or the current layer stopped
		p.probe = nil
		if estimate <= 0 {
			return middle
		}
		return p.fitting(active, estimate, middle)
	}
	if estimate <= 0 {
		p.probe = nil
		if now.Sub(p.start) >= noEstimateWait {
			return active[0]
		}
		return cur
	}
	bitrate := float64(p.stats(cur).Bitrate)
	stepping := cur == p.lastUp && now.Sub(p.lastUpAt) < probeWindow
	// Just after a step up, a receive-side estimate lags the new rate:
	// only a falling estimate (the delay-based detector saw overuse) means
	// the step failed.
	congested := float64(estimate) < downMargin*bitrate
	if stepping {
		congested = estimate < p.lastUpEst
	}
	if congested && ci < len(active)-1 {
		// Congestion: the highest layer that fits, at once. Leaving a layer
		// for congestion backs it off too, failed step or not: a link at
		// its limit would otherwise flap between two layers.
		p.backOff(now, cur)
		p.healthyCur, p.probe = nil, nil
		return p.fitting(active, estimate, active[len(active)-1])
	}
	if ci == 0 || stepping {
		p.probe = nil
		return cur
	}
	next := active[ci-1]
	nextRate := float64(p.stats(next).Bitrate)
	switch {
	case p.probe != next:
		p.probe = nil // the layers changed under the probe
	case float64(estimate) < probeDrop*float64(p.probeEst) || now.Sub(p.probeStart) >= probeTimeout:
		p.backOff(now, next)
		p.healthyCur, p.probe = nil, nil
		return cur
	}
	margin := upMargin
	if p.canPad {
		margin = probeFrom
	}
	if float64(estimate) < margin*bitrate {
		p.healthyCur = nil
	} else if p.healthyCur != cur {
		p.healthyCur, p.healthySince = cur, now
	}
	held := p.healthyCur == cur && now.Sub(p.healthySince) >= upHold
	if !held || now.Before(p.backoff[next]) {
		p.probe = nil
		return cur
	}
	if float64(estimate) >= nextRate || !p.canPad {
		// It fits, or without padding the layer itself is the probe. After a
		// padding probe the estimate has already grown to the new rate: no
		// grace period for it to catch up.
		p.healthyCur, p.probe = nil, nil
		if !p.canPad {
			p.lastUp, p.lastUpAt, p.lastUpEst = next, now, estimate
		}
		return next
	}
	if p.probe == nil {
		p.probe, p.probeStart, p.probeEst = next, now, estimate
	}
	p.padding = int(max(0, float64(estimate)-bitrate))
	return cur
}

// backOff keeps layer t from being tried again for a span that doubles
// each time, from backoffMin up to backoffMax.
func (p *layerPolicy) backOff(now time.Time, t *sfu.Track) {
	span := min(max(backoffMin, 2*p.backoffSpan[t]), backoffMax)
	p.backoffSpan[t], p.backoff[t] = span, now.Add(span)
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
