// Package dash renders the low-latency MPEG-DASH manifest (ISO/IEC
// 23009-1, DASH-IF IOP low-latency guidelines) of a live stream whose
// segments are the very CMAF files the LL-HLS playlists list. It knows
// nothing of RTP or HTTP.
//
// Segments are addressed with SegmentTemplate and $Number$: the manifest
// then changes only when the stream's renditions change, so a CDN may cache
// it for its update period, and the segment numbers are the HLS media
// sequence numbers.
package dash

import (
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Representation is one video layer or the audio.
type Representation struct {
	ID        string // also the path element of its URLs
	Bandwidth int
	Codecs    string
	Width     int
	Height    int
	FrameRate float64
	Channels  int
	Init      string // init segment file name, relative to ID/
	Timescale int
}

// Manifest describes one publication of a stream.
type Manifest struct {
	// AvailabilityStart is the wall-clock time of media time 0.
	AvailabilityStart time.Time
	// PublishTime is when this manifest's content last changed.
	PublishTime time.Time
	// StartNumber is the number of the segment that would start at media
	// time 0; segment N starts at (N-StartNumber)·SegmentDuration.
	StartNumber     uint64
	SegmentDuration time.Duration
	PartDuration    time.Duration
	Window          time.Duration
	// TargetLatency is the ServiceDescription's latency target.
	TargetLatency time.Duration
	// UpdatePeriod is minimumUpdatePeriod.
	UpdatePeriod time.Duration
	// TimeURL answers the current time (UTCTiming, http-iso).
	TimeURL string
	// PeriodID changes when the publisher restarts.
	PeriodID string
	Video    []Representation
	Audio    *Representation
}

// duration writes an xs:duration with millisecond precision.
func duration(d time.Duration) string {
	return "PT" + strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "S"
}

type mpd struct {
	XMLName                    xml.Name            `xml:"urn:mpeg:dash:schema:mpd:2011 MPD"`
	Profiles                   string              `xml:"profiles,attr"`
	Type                       string              `xml:"type,attr"`
	AvailabilityStartTime      string              `xml:"availabilityStartTime,attr"`
	PublishTime                string              `xml:"publishTime,attr"`
	MinimumUpdatePeriod        string              `xml:"minimumUpdatePeriod,attr"`
	TimeShiftBufferDepth       string              `xml:"timeShiftBufferDepth,attr"`
	SuggestedPresentationDelay string              `xml:"suggestedPresentationDelay,attr"`
	MaxSegmentDuration         string              `xml:"maxSegmentDuration,attr"`
	MinBufferTime              string              `xml:"minBufferTime,attr"`
	ServiceDescription         *serviceDescription `xml:"ServiceDescription"`
	Period                     period              `xml:"Period"`
	UTCTiming                  utcTiming           `xml:"UTCTiming"`
}

type serviceDescription struct {
	ID           string       `xml:"id,attr"`
	Latency      latency      `xml:"Latency"`
	PlaybackRate playbackRate `xml:"PlaybackRate"`
}

type latency struct {
	Target int `xml:"target,attr"`
	Min    int `xml:"min,attr"`
	Max    int `xml:"max,attr"`
}

type playbackRate struct {
	Min string `xml:"min,attr"`
	Max string `xml:"max,attr"`
}

type period struct {
	ID             string          `xml:"id,attr"`
	Start          string          `xml:"start,attr"`
	AdaptationSets []adaptationSet `xml:"AdaptationSet"`
}

type adaptationSet struct {
	ID               int              `xml:"id,attr"`
	ContentType      string           `xml:"contentType,attr"`
	MimeType         string           `xml:"mimeType,attr"`
	Lang             string           `xml:"lang,attr,omitempty"`
	SegmentAlignment bool             `xml:"segmentAlignment,attr"`
	StartWithSAP     int              `xml:"startWithSAP,attr"`
	MaxWidth         int              `xml:"maxWidth,attr,omitempty"`
	MaxHeight        int              `xml:"maxHeight,attr,omitempty"`
	Representations  []representation `xml:"Representation"`
}

type representation struct {
	ID                string       `xml:"id,attr"`
	Bandwidth         int          `xml:"bandwidth,attr"`
	Codecs            string       `xml:"codecs,attr"`
	Width             int          `xml:"width,attr,omitempty"`
	Height            int          `xml:"height,attr,omitempty"`
	FrameRate         string       `xml:"frameRate,attr,omitempty"`
	AudioSamplingRate int          `xml:"audioSamplingRate,attr,omitempty"`
	Channels          *descriptor  `xml:"AudioChannelConfiguration"`
	SegmentTemplate   segmentTempl `xml:"SegmentTemplate"`
}

type descriptor struct {
	SchemeIDURI string `xml:"schemeIdUri,attr"`
	Value       string `xml:"value,attr"`
}

type segmentTempl struct {
	Timescale                int    `xml:"timescale,attr"`
	Duration                 int64  `xml:"duration,attr"`
	StartNumber              uint64 `xml:"startNumber,attr"`
	Initialization           string `xml:"initialization,attr"`
	Media                    string `xml:"media,attr"`
	AvailabilityTimeOffset   string `xml:"availabilityTimeOffset,attr"`
	AvailabilityTimeComplete bool   `xml:"availabilityTimeComplete,attr"`
}

type utcTiming struct {
	SchemeIDURI string `xml:"schemeIdUri,attr"`
	Value       string `xml:"value,attr"`
}

// frameRate writes a frame rate as DASH wants it: an integer or a ratio.
func frameRate(f float64) string {
	if f <= 0 {
		return ""
	}
	if r := float64(int(f + 0.5)); f-r < 0.01 && r-f < 0.01 {
		return strconv.Itoa(int(r))
	}
	return fmt.Sprintf("%d/1000", int(f*1000+0.5))
}

func (m *Manifest) template(r Representation) segmentTempl {
	ts := r.Timescale
	return segmentTempl{
		Timescale:      ts,
		Duration:       int64(m.SegmentDuration) * int64(ts) / int64(time.Second),
		StartNumber:    m.StartNumber,
		Initialization: r.ID + "/" + r.Init,
		Media:          r.ID + "/$Number$.m4s",
		// A segment can be fetched once its first chunk exists; the origin
		// sends the rest as it is written ("availabilityTimeOffset ...
		// availabilityTimeComplete=false", DASH-IF IOP low latency).
		AvailabilityTimeOffset:   strconv.FormatFloat((m.SegmentDuration - m.PartDuration).Seconds(), 'f', -1, 64),
		AvailabilityTimeComplete: false,
	}
}

// Render writes the MPD.
func (m *Manifest) Render() []byte {
	x := mpd{
		Profiles:                   "urn:mpeg:dash:profile:isoff-live:2011,urn:mpeg:dash:profile:cmaf:2019",
		Type:                       "dynamic",
		AvailabilityStartTime:      m.AvailabilityStart.UTC().Format("2006-01-02T15:04:05.000Z"),
		PublishTime:                m.PublishTime.UTC().Format("2006-01-02T15:04:05.000Z"),
		MinimumUpdatePeriod:        duration(m.UpdatePeriod),
		TimeShiftBufferDepth:       duration(m.Window),
		SuggestedPresentationDelay: duration(m.TargetLatency),
		MaxSegmentDuration:         duration(2 * m.SegmentDuration),
		MinBufferTime:              duration(m.SegmentDuration),
		ServiceDescription: &serviceDescription{ID: "0",
			Latency:      latency{Target: int(m.TargetLatency.Milliseconds()), Min: int(m.TargetLatency.Milliseconds() / 2), Max: int(3 * m.TargetLatency.Milliseconds())},
			PlaybackRate: playbackRate{Min: "0.9", Max: "1.1"}},
		Period:    period{ID: m.PeriodID, Start: "PT0S"},
		UTCTiming: utcTiming{SchemeIDURI: "urn:mpeg:dash:utc:http-iso:2014", Value: m.TimeURL},
	}
	if len(m.Video) > 0 {
		as := adaptationSet{ID: 0, ContentType: "video", MimeType: "video/mp4", SegmentAlignment: true, StartWithSAP: 1}
		for _, r := range m.Video {
			as.MaxWidth, as.MaxHeight = max(as.MaxWidth, r.Width), max(as.MaxHeight, r.Height)
			as.Representations = append(as.Representations, representation{
				ID: r.ID, Bandwidth: r.Bandwidth, Codecs: r.Codecs, Width: r.Width, Height: r.Height,
				FrameRate: frameRate(r.FrameRate), SegmentTemplate: m.template(r),
			})
		}
		x.Period.AdaptationSets = append(x.Period.AdaptationSets, as)
	}
	if a := m.Audio; a != nil {
		x.Period.AdaptationSets = append(x.Period.AdaptationSets, adaptationSet{
			ID: 1, ContentType: "audio", MimeType: "audio/mp4", Lang: "und", SegmentAlignment: true, StartWithSAP: 1,
			Representations: []representation{{
				ID: a.ID, Bandwidth: a.Bandwidth, Codecs: a.Codecs, AudioSamplingRate: 48000,
				Channels:        &descriptor{SchemeIDURI: "urn:mpeg:mpegB:cicp:ChannelConfiguration", Value: strconv.Itoa(a.Channels)},
				SegmentTemplate: m.template(*a),
			}},
		})
	}
	var b strings.Builder
	b.WriteString(xml.Header)
	enc := xml.NewEncoder(&b)
	enc.Indent("", "  ")
	if err := enc.Encode(x); err != nil {
		// Encoding these plain structs cannot fail; say so loudly in tests.
		return []byte(xml.Header + "<!-- " + err.Error() + " -->\n")
	}
	b.WriteByte('\n')
	return []byte(b.String())
}
