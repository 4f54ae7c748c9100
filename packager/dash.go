package packager

import (
	"fmt"
	"math"
	"reflect"
	"time"

	"github.com/hybridcast/hybridcast/packager/internal/dash"
)

// timeline returns the current publication's epoch and the number of the
// segment at grid index 0 (DASH's startNumber); ok is false until the
// publication has a segment.
func (s *Stream) timeline() (epoch time.Time, startNumber uint64, ok bool) {
	s.mu.Lock()
	p := s.cur
	s.mu.Unlock()
	if p == nil {
		return time.Time{}, 0, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.firstIdx < 0 {
		return time.Time{}, 0, false
	}
	return p.epoch, p.startNumber(), true
}

// roundBandwidth keeps two significant digits, so that the MPD does not
// change with every segment's measurement.
func roundBandwidth(b int) int {
	if b <= 0 {
		return 0
	}
	scale := math.Pow(10, math.Floor(math.Log10(float64(b)))-1)
	return int(math.Ceil(float64(b)/scale) * scale)
}

// MPD renders the low-latency DASH manifest of the current publication:
// one video AdaptationSet with a Representation per active layer, one
// audio AdaptationSet, SegmentTemplate with $Number$ over the same CMAF
// segments the HLS playlists list. timeURL is the origin's clock for
// UTCTiming. ok is false when the stream is not live or has no complete
// segment on every rendition yet.
func (s *Stream) MPD(timeURL string) (mpd []byte, ok bool) {
	epoch, start, ok := s.timeline()
	if !ok {
		return nil, false
	}
	rends, _ := s.Renditions()
	now := s.cfg.Now()
	m := dash.Manifest{
		AvailabilityStart: epoch, StartNumber: start,
		SegmentDuration: s.cfg.SegmentDuration, PartDuration: s.cfg.PartDuration, Window: s.cfg.Window,
		TargetLatency: s.DASHTargetLatency(), UpdatePeriod: 2 * s.cfg.SegmentDuration,
		TimeURL: timeURL, PeriodID: fmt.Sprintf("p%d", start),
	}
	for _, r := range rends {
		v := r.View()
		if _, done := v.LastComplete(); !done || len(v.Segments) == 0 {
			return nil, false
		}
		peak, _, rate := v.Bandwidth()
		rep := dash.Representation{ID: v.Name, Bandwidth: roundBandwidth(peak), Codecs: v.Codecs,
			Init: v.Segments[len(v.Segments)-1].Init, Timescale: 48000, Channels: v.Channels}
		if !v.Video {
			a := rep
			m.Audio = &a
			continue
		}
		if now.Sub(v.Updated) > 3*s.cfg.SegmentDuration {
			continue // an inactive layer, as in the multivariant playlist
		}
		rep.Timescale, rep.Width, rep.Height, rep.FrameRate = 90000, v.Width, v.Height, math.Round(rate)
		m.Video = append(m.Video, rep)
	}
	if len(m.Video) == 0 && m.Audio == nil {
		return nil, false
	}
	// publishTime is when the content last changed, so that an unchanged
	// manifest is byte for byte the same (and a cache's copy stays valid).
	s.mu.Lock()
	defer s.mu.Unlock()
	cmp := m
	cmp.PublishTime = time.Time{}
	if s.lastMPD != nil && reflect.DeepEqual(*s.lastMPD, cmp) {
		return s.mpdBytes, true // unchanged: the same bytes as last time
	}
	m.PublishTime = now
	s.lastMPD, s.mpdBytes = &cmp, m.Render()
	return s.mpdBytes, true
}

// DASHTargetLatency is the latency target the MPD's ServiceDescription
// gives players: a part, plus two, of playback buffer.
func (s *Stream) DASHTargetLatency() time.Duration {
	return max(3*s.cfg.PartDuration, 500*time.Millisecond) + 200*time.Millisecond
}
