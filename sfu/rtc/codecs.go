package rtc

import (
	"fmt"
	"strings"

	"github.com/pion/webrtc/v4"
)

// videoFeedback is what we ask of a video sender: NACKs (answered from the
// SFU's history), PLI and FIR (keyframes), transport-wide congestion control.
var videoFeedback = []webrtc.RTCPFeedback{
	{Type: "goog-remb"}, {Type: "transport-cc"}, {Type: "ccm", Parameter: "fir"},
	{Type: "nack"}, {Type: "nack", Parameter: "pli"},
}

// videoCodecs lists the video codecs we accept, most preferred first:
// H.264 first in every answer (constrained baseline 42e01f with
// packetization-mode 1 first: every browser decodes it), then VP8, VP9, AV1
// and H.265. The payload types are defaults for offers we make; answers use
// the offerer's.
var videoCodecs = []webrtc.RTPCodecParameters{
	h264(102, "42e01f"),
	h264(104, "42001f"),
	h264(106, "4d001f"),
	h264(108, "640c1f"),
	h264(110, "64001f"),
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: videoFeedback}, PayloadType: 96},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0", RTCPFeedback: videoFeedback}, PayloadType: 98},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeAV1, ClockRate: 90000, RTCPFeedback: videoFeedback}, PayloadType: 45},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH265, ClockRate: 90000, RTCPFeedback: videoFeedback}, PayloadType: 116},
}

func h264(pt webrtc.PayloadType, profile string) webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeH264, ClockRate: 90000, RTCPFeedback: videoFeedback,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + profile,
	}, PayloadType: pt}
}

// rtxPayloadTypes gives each video codec's RTX payload type in offers we
// make (answers use the offerer's), free in both the video and the audio
// list.
var rtxPayloadTypes = map[webrtc.PayloadType]webrtc.PayloadType{
	102: 103, 104: 105, 106: 107, 108: 109, 110: 112, 96: 97, 98: 99, 45: 46, 116: 117,
}

// registerRTX adds an RTX format for every video codec.
func registerRTX(m *webrtc.MediaEngine) error {
	for _, c := range videoCodecs {
		pt, ok := rtxPayloadTypes[c.PayloadType]
		if !ok {
			return fmt.Errorf("no RTX payload type for %s/%d", c.MimeType, c.PayloadType)
		}
		rtx := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: fmt.Sprintf("apt=%d", c.PayloadType),
		}, PayloadType: pt}
		if err := m.RegisterCodec(rtx, webrtc.RTPCodecTypeVideo); err != nil {
			return fmt.Errorf("register RTX for %s: %w", c.MimeType, err)
		}
	}
	return nil
}

var audioCodecs = []webrtc.RTPCodecParameters{
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
		SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111},
}

// fmtpParams parses an fmtp line into lower-cased keys.
func fmtpParams(line string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(line, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if k != "" {
			m[strings.ToLower(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

// codecRank returns where an offered codec stands in our preference list
// (lower is better) or -1 when we do not take it.
func codecRank(c webrtc.RTPCodecParameters) int {
	for i, ours := range append(videoCodecs[:len(videoCodecs):len(videoCodecs)], audioCodecs...) {
		if !strings.EqualFold(c.MimeType, ours.MimeType) || c.ClockRate != ours.ClockRate {
			continue
		}
		switch strings.ToLower(c.MimeType) {
		case strings.ToLower(webrtc.MimeTypeH264):
			theirs, mine := fmtpParams(c.SDPFmtpLine), fmtpParams(ours.SDPFmtpLine)
			if theirs["packetization-mode"] != "1" {
				continue // mode 0 (single NAL) cannot carry our frames reliably
			}
			if !sameH264Profile(theirs["profile-level-id"], mine["profile-level-id"]) {
				continue
			}
		case strings.ToLower(webrtc.MimeTypeVP9):
			if p := fmtpParams(c.SDPFmtpLine)["profile-id"]; p != "" && p != "0" {
				continue
			}
		}
		return i
	}
	return -1
}

// SameCodec reports whether two codec descriptions name the same stream
// format (MIME type, clock rate and, for H.264, profile and packetization).
func SameCodec(a, b webrtc.RTPCodecCapability) bool {
	if !strings.EqualFold(a.MimeType, b.MimeType) || a.ClockRate != b.ClockRate {
		return false
	}
	if strings.EqualFold(a.MimeType, webrtc.MimeTypeH264) {
		fa, fb := fmtpParams(a.SDPFmtpLine), fmtpParams(b.SDPFmtpLine)
		return fa["packetization-mode"] == fb["packetization-mode"] &&
			sameH264Profile(fa["profile-level-id"], fb["profile-level-id"])
	}
	return true
}

// sameH264Profile compares the profile_idc and constraint flags of two
// profile-level-id values (RFC 6184 §8.1), ignoring the level: a decoder
// for a profile decodes every level we forward at these sizes.
func sameH264Profile(a, b string) bool {
	if len(a) != 6 || len(b) != 6 {
		return strings.EqualFold(a, b)
	}
	return strings.EqualFold(a[:4], b[:4])
}
