package packager

import (
	"fmt"
	"math"
	"net/url"
	"time"

	"github.com/hybridcast/hybridcast/packager/internal/hls"
)

// TargetDuration is the EXT-X-TARGETDURATION of the stream's playlists, in
// seconds. "The EXTINF duration of each Media Segment in a Playlist file,
// when rounded to the nearest integer, MUST be less than or equal to the
// Target Duration" (rfc8216bis §4.4.3.1); a segment stretches past the
// configured length when a layer's keyframe comes late, so the target
// leaves half a segment of room.
func (s *Stream) TargetDuration() int {
	return max(1, int(math.Ceil(1.5*s.cfg.SegmentDuration.Seconds())))
}

// PartHoldBack is the PART-HOLD-BACK of the playlists: three part targets.
func (s *Stream) PartHoldBack() time.Duration { return s.cfg.PartHoldBack() }

// boundarySlack is how far before the grid boundary an open segment's parts
// may end and still count as reaching it: the last frame's duration is
// taken from the interval before it, which jitters by a few milliseconds.
const boundarySlack = 5 * time.Millisecond

// reachedBoundary reports whether an open segment's parts reach (within
// boundarySlack) the grid boundary where the segment should end. A part is
// published as its last frame arrives, and the segment completes only when
// the next frame, the boundary's keyframe, does: in between, the next part
// to come is the next segment's first, and a preload hint for another part
// of this one would name a resource that never exists (unless the keyframe
// is late and the segment goes on; a hint for the next segment's first part
// is still a resource that will).
func (s *Stream) reachedBoundary(seg *Segment) bool {
	end := seg.Start.Truncate(s.cfg.SegmentDuration).Add(s.cfg.SegmentDuration)
	return !seg.Start.Add(seg.Duration).Before(end.Add(-boundarySlack))
}

// Multivariant renders the multivariant playlist of the current
// publication: one variant per active video rendition, with the audio
// rendition as their shared group. ok is false until every rendition of
// the publication has a complete segment (so that BANDWIDTH is measured),
// and when the stream is not live.
func (s *Stream) Multivariant() (playlist []byte, ok bool) {
	rends, _ := s.Renditions()
	now := s.cfg.Now()
	var audio *hls.Audio
	var audioPeak, audioAvg int
	var variants []hls.Variant
	for _, r := range rends {
		v := r.View()
		if _, done := v.LastComplete(); !done {
			return nil, false
		}
		peak, avg, rate := v.Bandwidth()
		if !v.Video {
			audio = &hls.Audio{URI: v.Name + "/index.m3u8", Channels: v.Channels}
			audioPeak, audioAvg = peak, avg
			continue
		}
		// "one variant per active layer": a layer the publisher stopped
		// sending (a browser drops layers when its uplink shrinks) is left
		// out until it comes back.
		if now.Sub(v.Updated) > 3*s.cfg.SegmentDuration {
			continue
		}
		variants = append(variants, hls.Variant{
			URI: v.Name + "/index.m3u8", Bandwidth: peak, AverageBandwidth: avg,
			Codecs: v.Codecs, Width: v.Width, Height: v.Height, FrameRate: math.Round(rate*1000) / 1000,
		})
	}
	if len(variants) == 0 {
		return nil, false
	}
	for i := range variants {
		// "BANDWIDTH ... MUST include all ... Renditions that would be
		// played together" (§4.4.6.2): the audio rides along.
		variants[i].Bandwidth += audioPeak
		if variants[i].AverageBandwidth > 0 {
			variants[i].AverageBandwidth += audioAvg
		}
		if audio != nil {
			variants[i].Codecs += ",opus"
		}
	}
	return hls.Multivariant(variants, audio), true
}

// MediaPlaylist renders v, a View of one of the stream's renditions, with
// rendition reports for its siblings. With skip it is a Playlist Delta
// Update. The result is rendered once per View and shared: do not modify
// it. (The rendition reports are those of the first request for this View;
// they trail the siblings by at most the time until v's next part.)
func (s *Stream) MediaPlaylist(v *View, skip bool) []byte {
	i := 0
	if skip {
		i = 1
	}
	if v.rendered != nil {
		if b := v.rendered[i].Load(); b != nil {
			return *b
		}
	}
	b := s.renderMedia(v, skip)
	if v.rendered != nil {
		v.rendered[i].Store(&b)
	}
	return b
}

func (s *Stream) renderMedia(v *View, skip bool) []byte {
	target := s.TargetDuration()
	m := hls.MediaPlaylist{
		TargetDuration:   target,
		PartTarget:       s.cfg.PartDuration,
		PartHoldBack:     s.PartHoldBack(),
		CanSkipUntil:     6 * time.Duration(target) * time.Second, // "at least six times the Target Duration" (§4.4.3.8)
		DiscontinuitySeq: v.DiscontinuitySeq,
		Segments:         make([]hls.Segment, len(v.Segments)),
	}
	for i, seg := range v.Segments {
		hs := hls.Segment{
			MSN: seg.MSN, URI: fmt.Sprintf("%d.m4s", seg.MSN), Duration: seg.Duration, Start: seg.Start,
			Map: seg.Init, Discontinuity: seg.Discontinuity, Gap: seg.Gap, Complete: seg.Complete,
			Parts: make([]hls.Part, len(seg.Parts)),
		}
		for j, p := range seg.Parts {
			hs.Parts[j] = hls.Part{URI: fmt.Sprintf("%d.%d.m4s", seg.MSN, j), Duration: p.Duration, Independent: p.Independent}
		}
		m.Segments[i] = hs
	}
	if v.Live && len(v.Segments) > 0 {
		last := v.Segments[len(v.Segments)-1]
		if last.Complete || s.reachedBoundary(last) {
			m.PreloadHint = fmt.Sprintf("%d.0.m4s", last.MSN+1)
		} else {
			m.PreloadHint = fmt.Sprintf("%d.%d.m4s", last.MSN, len(last.Parts))
		}
	}
	rends, _ := s.Renditions()
	for _, r := range rends {
		if r.name == v.Name {
			continue
		}
		if msn, part, ok := r.View().Last(); ok {
			m.Reports = append(m.Reports, hls.Report{URI: "../" + r.name + "/index.m3u8", LastMSN: msn, LastPart: part})
		}
	}
	return m.Render(skip)
}

// NextPart returns the segment number and part index that the preload
// hint of v names: the part being written now.
func (v *View) NextPart() (msn uint64, part int, ok bool) {
	if !v.Live || len(v.Segments) == 0 {
		return 0, 0, false
	}
	last := v.Segments[len(v.Segments)-1]
	if last.Complete {
		return last.MSN + 1, 0, true
	}
	return last.MSN, len(last.Parts), true
}

// PlaylistRequest is what a media playlist request asks for through its
// _HLS_msn, _HLS_part and _HLS_skip parameters.
type PlaylistRequest = hls.Request

// ParsePlaylistQuery reads a media playlist request's _HLS_* parameters;
// an error is a 400 for the client, with the reason.
func ParsePlaylistQuery(q url.Values) (PlaylistRequest, error) { return hls.ParseQuery(q) }
