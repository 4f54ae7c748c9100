// Package hls renders LL-HLS playlists (draft-pantos-hls-rfc8216bis) from a
// plain description of the renditions, and parses the _HLS_* query
// parameters of playlist requests. It knows nothing of RTP or HTTP.
package hls

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Version is the EXT-X-VERSION of every playlist: 9 is the lowest that
// allows EXT-X-SKIP (rfc8216bis §8, "Protocol Version Compatibility").
const Version = 9

// Part is one partial segment.
type Part struct {
	URI         string
	Duration    time.Duration
	Independent bool
}

// Segment is one media segment; the last segment of a playlist may be
// incomplete, listed only through its parts.
type Segment struct {
	MSN           uint64
	URI           string
	Duration      time.Duration
	Start         time.Time // EXT-X-PROGRAM-DATE-TIME
	Map           string    // URI of the init segment it needs
	Discontinuity bool
	Gap           bool // EXT-X-GAP: no media; clients do not load it
	Complete      bool
	Parts         []Part
}

// Report is one EXT-X-RENDITION-REPORT.
type Report struct {
	URI      string
	LastMSN  uint64
	LastPart int
}

// MediaPlaylist describes one rendition's live playlist.
type MediaPlaylist struct {
	TargetDuration   int // seconds
	PartTarget       time.Duration
	PartHoldBack     time.Duration
	CanSkipUntil     time.Duration
	DiscontinuitySeq uint64
	Segments         []Segment // oldest first; at least one
	PreloadHint      string    // URI of the next part
	Reports          []Report
}

// seconds formats d with millisecond precision, the way EXTINF and
// PART durations are written.
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
}

// Render writes the playlist. With skip set it writes a Playlist Delta
// Update: the segments older than CanSkipUntil from the end are replaced
// by one EXT-X-SKIP tag (rfc8216bis §4.4.5.2).
func (m *MediaPlaylist) Render(skip bool) []byte {
	var b strings.Builder
	b.Grow(256 + 200*len(m.Segments))
	fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-VERSION:%d\n#EXT-X-TARGETDURATION:%d\n", Version, m.TargetDuration)
	// "PART-HOLD-BACK ... MUST be at least twice the Part Target Duration"
	// (rfc8216bis §4.4.3.8); callers pass three times, as it RECOMMENDS.
	fmt.Fprintf(&b, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=%s", seconds(m.PartHoldBack))
	if m.CanSkipUntil > 0 {
		fmt.Fprintf(&b, ",CAN-SKIP-UNTIL=%s", seconds(m.CanSkipUntil))
	}
	fmt.Fprintf(&b, "\n#EXT-X-PART-INF:PART-TARGET=%s\n", seconds(m.PartTarget))
	if len(m.Segments) == 0 {
		return []byte(b.String())
	}
	fmt.Fprintf(&b, "#EXT-X-MEDIA-SEQUENCE:%d\n", m.Segments[0].MSN)
	if m.DiscontinuitySeq > 0 {
		fmt.Fprintf(&b, "#EXT-X-DISCONTINUITY-SEQUENCE:%d\n", m.DiscontinuitySeq)
	}

	first := 0
	if skip && m.CanSkipUntil > 0 {
		// "the Server MUST NOT skip ... Segments ... less than the
		// CAN-SKIP-UNTIL ... from the end of the Playlist" (§6.2.5.1).
		var fromEnd time.Duration
		for i := len(m.Segments) - 1; i >= 0; i-- {
			fromEnd += m.Segments[i].Duration
			if fromEnd > m.CanSkipUntil {
				first = i + 1
				break
			}
		}
		// A skipped discontinuity would be lost to the client: skip only up
		// to the first one.
		for i := 0; i < first; i++ {
			if m.Segments[i].Discontinuity {
				first = i
				break
			}
		}
		if first > 0 {
			fmt.Fprintf(&b, "#EXT-X-SKIP:SKIPPED-SEGMENTS=%d\n", first)
		}
	}

	// Parts are listed for the segments within three target durations of
	// the end: "EXT-X-PART tags SHOULD be removed from the Playlist after
	// they are greater than three Target Durations from the end of the
	// Playlist" (§4.4.4.9).
	partsFrom := len(m.Segments)
	var tail time.Duration
	for i := len(m.Segments) - 1; i >= 0; i-- {
		partsFrom = i
		tail += m.Segments[i].Duration
		if tail > 3*time.Duration(m.TargetDuration)*time.Second {
			break
		}
	}

	mapURI := ""
	for i := first; i < len(m.Segments); i++ {
		s := &m.Segments[i]
		if !s.Complete && len(s.Parts) == 0 {
			continue // opened, nothing written yet: only the preload hint names it
		}
		if s.Discontinuity {
			b.WriteString("#EXT-X-DISCONTINUITY\n")
		}
		if s.Map != mapURI {
			fmt.Fprintf(&b, "#EXT-X-MAP:URI=%q\n", s.Map)
			mapURI = s.Map
		}
		fmt.Fprintf(&b, "#EXT-X-PROGRAM-DATE-TIME:%s\n", s.Start.UTC().Format("2006-01-02T15:04:05.000Z"))
		if i >= partsFrom {
			for _, p := range s.Parts {
				fmt.Fprintf(&b, "#EXT-X-PART:DURATION=%s,URI=%q", seconds(p.Duration), p.URI)
				if p.Independent {
					b.WriteString(",INDEPENDENT=YES")
				}
				b.WriteByte('\n')
			}
		}
		if s.Gap {
			b.WriteString("#EXT-X-GAP\n")
		}
		if s.Complete {
			fmt.Fprintf(&b, "#EXTINF:%s,\n%s\n", seconds(s.Duration), s.URI)
		}
	}
	if m.PreloadHint != "" {
		fmt.Fprintf(&b, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=%q\n", m.PreloadHint)
	}
	for _, r := range m.Reports {
		fmt.Fprintf(&b, "#EXT-X-RENDITION-REPORT:URI=%q,LAST-MSN=%d,LAST-PART=%d\n", r.URI, r.LastMSN, r.LastPart)
	}
	return []byte(b.String())
}

// Variant is one EXT-X-STREAM-INF of a multivariant playlist.
type Variant struct {
	URI              string
	Bandwidth        int // peak bit/s, audio included
	AverageBandwidth int
	Codecs           string
	Width, Height    int
	FrameRate        float64
}

// Audio is the audio rendition group of a multivariant playlist.
type Audio struct {
	URI      string
	Channels int
}

// Multivariant renders the multivariant playlist: one variant per video
// rendition, all sharing one audio group when audio is given.
func Multivariant(variants []Variant, audio *Audio) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-VERSION:%d\n#EXT-X-INDEPENDENT-SEGMENTS\n", Version)
	if audio != nil {
		fmt.Fprintf(&b, "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"%d\",URI=%q\n",
			audio.Channels, audio.URI)
	}
	for _, v := range variants {
		fmt.Fprintf(&b, "#EXT-X-STREAM-INF:BANDWIDTH=%d", v.Bandwidth)
		if v.AverageBandwidth > 0 {
			fmt.Fprintf(&b, ",AVERAGE-BANDWIDTH=%d", v.AverageBandwidth)
		}
		fmt.Fprintf(&b, ",CODECS=%q", v.Codecs)
		if v.Width > 0 && v.Height > 0 {
			fmt.Fprintf(&b, ",RESOLUTION=%dx%d", v.Width, v.Height)
		}
		if v.FrameRate > 0 {
			fmt.Fprintf(&b, ",FRAME-RATE=%.3f", v.FrameRate)
		}
		if audio != nil {
			b.WriteString(`,AUDIO="audio"`)
		}
		fmt.Fprintf(&b, "\n%s\n", v.URI)
	}
	return []byte(b.String())
}

// Request is what a playlist request asks for through its query.
type Request struct {
	// MSN and Part name the segment and part to wait for; MSN < 0 means a
	// plain request, Part < 0 means the whole segment.
	MSN  int64
	Part int64
	// Skip asks for a Playlist Delta Update (_HLS_skip=YES or v2).
	Skip bool
}

// Errors of ParseQuery; each is a 400 for the client.
var (
	ErrPartWithoutMSN = errors.New("_HLS_part without _HLS_msn")
	ErrBadNumber      = errors.New("_HLS_msn and _HLS_part must be decimal integers")
	ErrBadSkip        = errors.New("_HLS_skip must be YES or v2")
	ErrRepeated       = errors.New("an _HLS_ parameter is given twice")
)

// ParseQuery reads the _HLS_msn, _HLS_part and _HLS_skip parameters of a
// playlist request. Other parameters are ignored.
func ParseQuery(q url.Values) (Request, error) {
	r := Request{MSN: -1, Part: -1}
	for _, k := range []string{"_HLS_msn", "_HLS_part", "_HLS_skip"} {
		if len(q[k]) > 1 {
			return r, fmt.Errorf("%s: %w", k, ErrRepeated)
		}
	}
	num := func(k string) (int64, bool, error) {
		v, ok := q[k]
		if !ok {
			return -1, false, nil
		}
		n, err := strconv.ParseUint(v[0], 10, 63)
		if err != nil || n > math.MaxInt64 {
			return -1, true, fmt.Errorf("%s=%q: %w", k, v[0], ErrBadNumber)
		}
		return int64(n), true, nil
	}
	var hasMSN, hasPart bool
	var err error
	if r.MSN, hasMSN, err = num("_HLS_msn"); err != nil {
		return r, err
	}
	if r.Part, hasPart, err = num("_HLS_part"); err != nil {
		return r, err
	}
	// "_HLS_part ... MUST be accompanied by an _HLS_msn" (§6.2.5.2): the
	// server answers such a request with 400.
	if hasPart && !hasMSN {
		return r, ErrPartWithoutMSN
	}
	if v, ok := q["_HLS_skip"]; ok {
		switch v[0] {
		case "YES", "v2":
			r.Skip = true
		default:
			return r, fmt.Errorf("_HLS_skip=%q: %w", v[0], ErrBadSkip)
		}
	}
	return r, nil
}
