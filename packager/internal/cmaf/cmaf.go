// Package cmaf writes the CMAF boxes of one rendition: an initialization
// segment (ftyp+moov) and CMAF chunks (moof+mdat), one per HLS part. A
// segment is its chunks back to back, so LL-HLS parts, HLS segments and
// DASH segments all point at the same bytes.
//
// The boxes themselves come from mediacommon's fmp4 package; this package
// only chooses what goes in them.
package cmaf

import (
	"fmt"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"
)

// TrackID is the track ID of the single track in every rendition.
const TrackID = 1

// Format is how a sample's parts become the sample's bytes.
type Format int

// Sample formats.
const (
	FormatRaw  Format = iota // the one part as is: an Opus packet, a VP9 frame
	FormatH264               // NAL units, length-prefixed
	FormatAV1                // OBUs, each given its size field
)

// Sample is one coded frame.
type Sample struct {
	Duration uint32 // in the track's time scale
	NonSync  bool   // not a random access point
	// NALUs are the frame's H.264 NAL units or AV1 OBUs, or the one Opus
	// packet or VP9 frame.
	NALUs [][]byte
}

// InitH264 writes the initialization segment of an H.264 rendition.
func InitH264(sps, pps []byte, bitrate uint32) ([]byte, error) {
	return initSegment(&codecs.H264{SPS: sps, PPS: pps}, 90000, bitrate)
}

// InitVP9 writes the initialization segment of a VP9 rendition.
func InitVP9(c codecs.VP9, bitrate uint32) ([]byte, error) {
	return initSegment(&c, 90000, bitrate)
}

// InitAV1 writes the initialization segment of an AV1 rendition from its
// sequence header OBU.
func InitAV1(sequenceHeader []byte, bitrate uint32) ([]byte, error) {
	return initSegment(&codecs.AV1{SequenceHeader: sequenceHeader}, 90000, bitrate)
}

// InitOpus writes the initialization segment of an Opus rendition.
func InitOpus(channels int, bitrate uint32) ([]byte, error) {
	if channels <= 0 {
		channels = 2
	}
	return initSegment(&codecs.Opus{ChannelCount: channels}, 48000, bitrate)
}

func initSegment(c codecs.Codec, timescale, bitrate uint32) ([]byte, error) {
	init := fmp4.Init{Tracks: []*fmp4.InitTrack{{ID: TrackID, TimeScale: timescale, Codec: c, AvgBitrate: bitrate, MaxBitrate: bitrate}}}
	var buf seekablebuffer.Buffer
	if err := init.Marshal(&buf); err != nil {
		return nil, fmt.Errorf("cmaf: write init segment: %w", err)
	}
	return buf.Bytes(), nil
}

// Chunk writes one CMAF chunk (moof+mdat) holding samples, the first of
// which decodes at baseTime. sequence numbers the chunk (mfhd) within the
// rendition, in the sample format of format.
func Chunk(sequence uint32, baseTime uint64, format Format, samples []Sample) ([]byte, error) {
	out := make([]*fmp4.Sample, len(samples))
	for i, s := range samples {
		fs := &fmp4.Sample{Duration: s.Duration, IsNonSyncSample: s.NonSync}
		var err error
		switch {
		case format == FormatH264:
			err = fs.FillH264(0, s.NALUs)
		case format == FormatAV1:
			err = fs.FillAV1(s.NALUs)
		case len(s.NALUs) == 1:
			fs.Payload = s.NALUs[0]
		default:
			err = fmt.Errorf("%d parts, want 1", len(s.NALUs))
		}
		if err != nil {
			return nil, fmt.Errorf("cmaf: sample %d: %w", i, err)
		}
		out[i] = fs
	}
	part := fmp4.Part{SequenceNumber: sequence, Tracks: []*fmp4.PartTrack{{ID: TrackID, BaseTime: baseTime, Samples: out}}}
	var buf seekablebuffer.Buffer
	if err := part.Marshal(&buf); err != nil {
		return nil, fmt.Errorf("cmaf: write chunk %d: %w", sequence, err)
	}
	return buf.Bytes(), nil
}
