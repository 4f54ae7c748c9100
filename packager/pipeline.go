package packager

import (
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/vp9"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"

	"github.com/hybridcast/hybridcast/packager/internal/cmaf"
	"github.com/hybridcast/hybridcast/packager/internal/depack"
	"github.com/hybridcast/hybridcast/sfu"
)

// pipeline packages one track of a publication into its rendition. It is
// an sfu.Subscriber: WriteRTP runs on the subscription's goroutine, and
// flush runs after the subscription has ended, so its state needs no lock.
type pipeline struct {
	pub    *publication
	rend   *Rendition
	track  *sfu.Track
	log    *slog.Logger
	video  bool
	vcodec vcodec // which video codec, for video
	rate   int64  // RTP clock rate
	now    func() time.Time

	reorder depack.Reorder
	h264    depack.H264
	vp9     depack.VP9
	av1     depack.AV1
	opus    depack.Opus
	emit    func(*depack.Frame) // p.frame, made once

	started  time.Time // when the pipeline began waiting for a sender report
	mapped   bool
	base     int64 // decode time (ticks since the epoch) of the first frame
	t0       int64 // extended RTP timestamp of the first frame
	settled  bool  // video: its timeline is aligned with the other layers' (frameAligner)
	alignRef bool  // video: the frameAligner's reference layer
	waitKey  bool
	lastDTS  int64
	haveLast bool

	sps, pps []byte
	vp9Conf  *codecs.VP9 // VP9: the configuration of the last keyframe
	av1Seq   []byte      // AV1: the sequence header OBU of the last keyframe
	initName string
	initData []byte
	newInit  bool // parameter sets changed: cut at this keyframe

	pending    *sample
	lastDur    int64
	seg        *Segment // open segment, nil between segments
	segIdx     int64    // index on the boundary grid of the last segment opened
	msn        uint64   // number of the last segment opened
	opened     bool     // a segment was opened in this publication
	startIdx   int64    // its first segment starts at a boundary after this grid index
	beganIdx   int64    // grid index where the track began
	partStart  int64
	partDur    int64
	partKey    bool
	partFrames []cmaf.Sample

	errs int
}

// vcodec is a video pipeline's codec.
type vcodec int

const (
	vcodecH264 vcodec = iota
	vcodecVP9
	vcodecAV1
)

type sample struct {
	dts   int64
	key   bool
	nalus [][]byte
}

func newPipeline(pub *publication, rend *Rendition, t *sfu.Track, video bool) *pipeline {
	p := &pipeline{
		pub: pub, rend: rend, track: t, video: video,
		rate: int64(t.Info().ClockRate), now: pub.s.cfg.Now,
		log: pub.s.log.With("rendition", rend.Name()),
	}
	if p.rate <= 0 {
		p.rate = 90000
		if !video {
			p.rate = 48000
		}
	}
	switch mime := t.Info().MimeType; {
	case strings.EqualFold(mime, sfu.MimeTypeVP9):
		p.vcodec = vcodecVP9
	case strings.EqualFold(mime, sfu.MimeTypeAV1):
		p.vcodec = vcodecAV1
	}
	p.h264.WaitKeyframe()
	p.vp9.WaitKeyframe()
	p.av1.WaitKeyframe()
	p.emit = p.frame
	p.started = p.now()
	return p
}

// WriteRTP implements sfu.Subscriber.
func (p *pipeline) WriteRTP(pkt *sfu.Packet) error {
	if len(pkt.Payload) == 0 {
		return nil
	}
	p.reorder.Push(depack.Packet{
		Seq: pkt.Seq, Timestamp: pkt.Timestamp, Marker: pkt.Marker, Payload: pkt.Payload, Arrival: pkt.Arrival,
	}, p.depacketize)
	return nil
}

func (p *pipeline) depacketize(pkt depack.Packet, lost bool) {
	var err error
	if p.video {
		switch p.vcodec {
		case vcodecVP9:
			err = p.vp9.Push(pkt, lost, p.emit)
		case vcodecAV1:
			err = p.av1.Push(pkt, lost, p.emit)
		default:
			err = p.h264.Push(pkt, lost, p.emit)
		}
		if lost {
			p.track.RequestKeyframe()
		}
	} else {
		err = p.opus.Push(pkt, lost, p.emit)
	}
	if err != nil {
		p.errs++
		if p.errs == 1 || p.errs%1000 == 0 {
			p.log.Warn("malformed RTP payload dropped", "error", err, "count", p.errs)
		}
		if p.video {
			p.track.RequestKeyframe()
		}
	}
}

// frame handles one depacketized frame: map its time, then cut.
func (p *pipeline) frame(f *depack.Frame) {
	if !p.mapped && !p.mapClock(f) {
		return
	}
	dts := p.base + (f.Timestamp - p.t0)
	if p.video {
		dts = p.alignFrame(dts)
	}
	if dts < 0 || (p.haveLast && dts <= p.lastDTS) {
		// Before the publication's epoch, or not after the last frame (a
		// publisher's timestamps went backwards): skip it, and for video
		// everything up to the next keyframe, which may depend on it.
		if p.video {
			p.waitKey = true
		}
		return
	}
	if p.video {
		if p.waitKey && !f.Keyframe {
			return
		}
		p.waitKey = false
		switch {
		case p.vcodec == vcodecVP9 && f.Keyframe:
			p.vp9Config(f.NALUs[0])
		case p.vcodec == vcodecAV1 && f.Keyframe:
			p.av1Config(depack.AV1SequenceHeader(f.NALUs))
		case p.vcodec == vcodecH264 && (f.SPS != nil || f.PPS != nil):
			p.parameterSets(f.SPS, f.PPS)
		}
		if !p.configured() {
			p.waitKey = true // the boundary's keyframe request brings them
			return
		}
	}
	if p.haveLast {
		p.lastDur = dts - p.lastDTS
	}
	p.lastDTS, p.haveLast = dts, true
	next := &sample{dts: dts, key: f.Keyframe, nalus: slices.Clone(f.NALUs)}
	if p.pending != nil {
		// A frame's duration is the time to the next frame's.
		p.add(p.pending, p.lastDur)
		p.pending = nil
	}
	partTicks := p.pub.partTicks(p.rate)
	switch {
	case p.startsSegment(next):
		p.closePart()
		p.closeSegment()
	case len(p.partFrames) > 0 && p.partDur+p.lastDur > partTicks:
		p.closePart() // the frame interval grew: the early close below did not see it coming
	}
	if p.lastDur > 0 && p.partDur+2*p.lastDur > partTicks {
		// This frame ends its part: one more would not fit. Publish the
		// part now, with the last frame interval as this frame's duration,
		// rather than when the next frame arrives. That is a frame
		// interval (33 ms at 30 fps, 20 ms for Opus) sooner for every
		// part, and the part's end is then a moment away, not a moment
		// ago, when players read it. If the next frame comes at another
		// interval, the next part starts at its own time: a gap or overlap
		// of the difference, which players bridge like any frame jitter.
		p.add(next, p.lastDur)
		p.closePart()
		return
	}
	p.pending = next
}

// alignFrame moves the layer's timeline onto its sibling layers' frame
// times before its first segment (see frameAligner), and records the times
// of a settled layer's frames for the others. It returns dts, moved.
func (p *pipeline) alignFrame(dts int64) int64 {
	if !p.settled && !p.opened {
		adj, ok, ref := p.pub.align.align(ticksToDuration(dts, p.rate))
		if ok {
			p.alignRef = ref
			shift := int64(math.Round(adj.Seconds() * float64(p.rate)))
			p.base += shift
			dts += shift
			p.settled = true
			if shift != 0 {
				p.log.Debug("timeline aligned with the other layers", "shift_ticks", shift)
			}
		}
	}
	if p.settled {
		p.pub.align.note(ticksToDuration(dts, p.rate), p.alignRef)
	}
	return dts
}

// mapClock fixes the track's mapping from RTP time to the publication's
// timeline at its first frame: through the latest sender report, or by
// arrival time once SenderReportWait has passed without one.
func (p *pipeline) mapClock(f *depack.Frame) bool {
	if p.video && !f.Keyframe {
		return false
	}
	var wall time.Time
	if sr, ok := p.track.SenderReport(); ok {
		off := int64(int32(uint32(f.Timestamp) - sr.RTPTime))
		wall = p.pub.senderTime(sr).Add(time.Duration(off * int64(time.Second) / p.rate))
	} else if p.now().Sub(p.started) < p.pub.s.cfg.SenderReportWait {
		// No keyframe request here: the first segment starts at the next
		// boundary, where every layer is asked for one at the same moment.
		return false
	} else {
		wall = f.Arrival
		p.log.Info("no RTCP sender report: timing this track by arrival")
	}
	p.mapped, p.t0 = true, f.Timestamp
	p.base = int64(wall.Sub(p.pub.epoch)) * p.rate / int64(time.Second)
	p.startIdx = p.pub.boundaryIndex(max(p.base, 0), p.rate)
	p.beganIdx = p.startIdx
	if p.video {
		p.pub.videoStarted(p.startIdx)
	}
	return true
}

func (p *pipeline) parameterSets(sps, pps []byte) {
	if sps == nil {
		sps = p.sps
	}
	if pps == nil {
		pps = p.pps
	}
	if slices.Equal(sps, p.sps) && slices.Equal(pps, p.pps) {
		return
	}
	var s h264.SPS
	if err := s.Unmarshal(sps); err != nil {
		p.log.Warn("bad SPS ignored", "error", err)
		return
	}
	if len(sps) < 4 {
		return
	}
	p.sps, p.pps = sps, pps
	p.newInit = true
	p.rend.setInfo(fmt.Sprintf("avc1.%02x%02x%02x", sps[1], sps[2], sps[3]), s.Width(), s.Height(), 0)
}

// configured reports whether the video codec's configuration for the init
// segment is known.
func (p *pipeline) configured() bool {
	switch p.vcodec {
	case vcodecVP9:
		return p.vp9Conf != nil
	case vcodecAV1:
		return p.av1Seq != nil
	default:
		return p.sps != nil && p.pps != nil
	}
}

// av1Config takes the sequence header of an AV1 keyframe: a new one starts
// a new init segment at this keyframe.
func (p *pipeline) av1Config(obu []byte) {
	if obu == nil || slices.Equal(obu, p.av1Seq) {
		return
	}
	var h av1.SequenceHeader
	if err := h.Unmarshal(obu); err != nil || len(h.SeqLevelIdx) == 0 || len(h.SeqTier) == 0 {
		p.log.Warn("bad AV1 sequence header ignored", "error", err)
		return
	}
	p.av1Seq = slices.Clone(obu)
	p.newInit = true
	p.rend.setInfo(av1CodecString(h), h.Width(), h.Height(), 0)
}

// av1CodecString is the RFC 6381 codecs string of an AV1 stream
// ("av01.P.LLT.DD", AV1 Codec ISO Media File Format Binding §5): profile,
// level index and tier of the first operating point, bit depth.
func av1CodecString(h av1.SequenceHeader) string {
	tier := "M"
	if h.SeqTier[0] {
		tier = "H"
	}
	depth := 8
	if h.ColorConfig.BitDepth > 0 {
		depth = h.ColorConfig.BitDepth
	}
	return fmt.Sprintf("av01.%d.%02d%s.%02d", h.SeqProfile, h.SeqLevelIdx[0], tier, depth)
}

// vp9Config takes the configuration of a VP9 keyframe: a new one (size,
// profile, bit depth) starts a new init segment at this keyframe.
func (p *pipeline) vp9Config(frame []byte) {
	var h vp9.Header
	if err := h.Unmarshal(frame); err != nil || h.ColorConfig == nil || h.FrameSize == nil {
		p.log.Warn("bad VP9 keyframe header ignored", "error", err)
		return
	}
	c := codecs.VP9{
		Width: h.Width(), Height: h.Height(), Profile: h.Profile, BitDepth: h.ColorConfig.BitDepth,
		ChromaSubsampling: h.ChromaSubsampling(), ColorRange: h.ColorConfig.ColorRange,
	}
	if p.vp9Conf != nil && *p.vp9Conf == c {
		return
	}
	p.vp9Conf = &c
	p.newInit = true
	p.rend.setInfo(vp9CodecString(c), c.Width, c.Height, 0)
}

// vp9CodecString is the RFC 6381 codecs string of a VP9 stream
// ("vp09.PP.LL.DD", VP Codec ISO Media File Format Binding §"Codecs
// Parameter String"): the level from the picture size (Annex A's
// MaxLumaPictureSize, at frame rates up to 30).
func vp9CodecString(c codecs.VP9) string {
	level := 60
	for _, l := range []struct{ max, level int }{
		{36864, 10}, {73728, 11}, {122880, 20}, {245760, 21}, {552960, 30}, {983040, 31}, {2228224, 40}, {8912896, 50},
	} {
		if c.Width*c.Height <= l.max {
			level = l.level
			break
		}
	}
	depth := max(c.BitDepth, 8)
	return fmt.Sprintf("vp09.%02d.%02d.%02d", c.Profile, level, depth)
}

// startsSegment reports whether next must begin a new segment: video at
// its first keyframe at or after the next boundary (or where the
// parameter sets change), audio at its first frame at or after it.
func (p *pipeline) startsSegment(next *sample) bool {
	if p.seg == nil {
		return false
	}
	if p.video && !next.key {
		return false
	}
	if p.video && p.newInit {
		return true
	}
	return next.dts >= p.pub.boundaryTicks(p.segIdx+1, p.rate)
}

// add appends a finished sample to the open part, opening the segment and
// the part as needed.
func (p *pipeline) add(s *sample, dur int64) {
	if p.seg == nil && !p.openSegment(s) {
		return
	}
	if len(p.partFrames) == 0 {
		p.partStart, p.partDur, p.partKey = s.dts, 0, s.key
	}
	p.partFrames = append(p.partFrames, cmaf.Sample{Duration: uint32(max(dur, 1)), NonSync: p.video && !s.key, NALUs: s.nalus})
	p.partDur += dur
}

func (p *pipeline) openSegment(s *sample) bool {
	if p.video && !s.key {
		return false
	}
	// The first segment of a publication is numbered by its place on the
	// boundary grid (publication.firstMSN), so that every rendition numbers
	// the same stretch of time alike; the ones after follow on by one, as
	// playlists require.
	idx := p.pub.boundaryIndex(s.dts, p.rate)
	if !p.opened && idx <= p.startIdx {
		// The first segment starts at a boundary like every other one, not
		// wherever this track happened to begin: otherwise the variants'
		// first segments would not line up.
		return false
	}
	var msn uint64
	if !p.opened {
		var ok bool
		if msn, ok = p.pub.firstMSN(idx, p.beganIdx, p.video); !ok {
			p.startIdx = idx // and so at a later boundary, not in this segment's middle
			return false
		}
	} else {
		msn = p.msn + 1
		if idx != p.segIdx+1 {
			p.log.Warn("segment boundary missed: no keyframe in time; this rendition's segment numbers no longer match the others' until the next publication",
				"msn", msn, "grid_index", idx)
		}
	}
	if p.video && !p.opened && !p.settled {
		p.log.Warn("no frame of the other layers matched this layer's before its first segment: its timeline keeps its own sender report mapping, and players switching to it may stall",
			"tolerance", p.pub.align.tolerance())
	}
	if p.newInit || p.initName == "" {
		if err := p.makeInit(msn); err != nil {
			p.log.Error("cannot write init segment", "error", err)
			return false
		}
	}
	seg := &Segment{
		MSN:           msn,
		Start:         p.pub.epoch.Add(ticksToDuration(s.dts, p.rate)),
		DecodeTime:    uint64(s.dts),
		Discontinuity: !p.opened && p.rend.written(),
	}
	if err := p.rend.openSegment(seg, p.initName, p.initData, p.pub.segTick); err != nil {
		p.log.Error("segment out of order", "error", err)
		return false
	}
	p.seg, p.segIdx, p.msn, p.opened = seg, idx, msn, true
	return true
}

func (p *pipeline) makeInit(msn uint64) error {
	var data []byte
	var err error
	bitrate := uint32(max(p.track.Layer().Bitrate, 0))
	switch {
	case p.vcodec == vcodecVP9:
		data, err = cmaf.InitVP9(*p.vp9Conf, bitrate)
	case p.vcodec == vcodecAV1:
		data, err = cmaf.InitAV1(p.av1Seq, bitrate)
	case p.video:
		data, err = cmaf.InitH264(p.sps, p.pps, bitrate)
	default:
		data, err = cmaf.InitOpus(int(p.track.Info().Channels), bitrate)
	}
	if err != nil {
		return err
	}
	p.initName, p.initData, p.newInit = fmt.Sprintf("init-%d.mp4", msn), data, false
	return nil
}

// closePart writes the open part out, if any; the next frame opens a new
// one (partFrames empty, partDur 0).
func (p *pipeline) closePart() {
	frames, dur := p.partFrames, p.partDur
	p.partFrames, p.partDur = p.partFrames[:0], 0
	if len(frames) == 0 || p.seg == nil {
		return
	}
	p.rend.chunks++
	data, err := cmaf.Chunk(p.rend.chunks, uint64(p.partStart), p.sampleFormat(), frames)
	if err != nil {
		p.log.Error("cannot write CMAF chunk", "error", err)
		return
	}
	p.rend.addPart(&Part{Data: data, Duration: ticksToDuration(dur, p.rate), Independent: p.partKey}, len(frames), p.now())
	p.pub.partWritten(p.video, p.pub.epoch.Add(ticksToDuration(p.partStart+dur, p.rate)))
}

// sampleFormat is how the rendition's samples are written.
func (p *pipeline) sampleFormat() cmaf.Format {
	switch {
	case !p.video, p.vcodec == vcodecVP9:
		return cmaf.FormatRaw
	case p.vcodec == vcodecAV1:
		return cmaf.FormatAV1
	default:
		return cmaf.FormatH264
	}
}

func (p *pipeline) closeSegment() {
	if p.seg == nil {
		return
	}
	p.rend.closeSegment()
	p.seg = nil
}

// flush writes out what is pending when the track has ended.
func (p *pipeline) flush() {
	if p.pending != nil {
		dur := p.lastDur
		if dur <= 0 {
			dur = p.rate / 30
			if !p.video {
				dur = opus.PacketDuration2(p.pending.nalus[0])
			}
		}
		if p.startsSegment(p.pending) {
			// The last frame opens the next segment, as it would have if
			// the stream had gone on: every layer whose keyframe for that
			// boundary came ends on the same segment number, so that the
			// next publication can continue all their windows.
			p.closePart()
			p.closeSegment()
		}
		p.add(p.pending, dur)
		p.pending = nil
	}
	p.closePart()
	p.closeSegment()
}
