package rtc

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// MaxSDPSize is the largest SDP body we read (64 KiB).
const MaxSDPSize = 64 << 10

// Errors of ParseOffer. Callers map them to 400 Bad Request (or 406 for
// ErrNoCommonCodec) with the error text as the reason.
var (
	ErrEmptySDP      = errors.New("empty SDP body")
	ErrBadSDP        = errors.New("malformed SDP")
	ErrNoMedia       = errors.New("SDP offer has no audio or video section")
	ErrNoCommonCodec = errors.New("no codec in common")
	ErrNoICE         = errors.New("SDP offer lacks ICE credentials (a=ice-ufrag, a=ice-pwd)")
	ErrNoFingerprint = errors.New("SDP offer lacks a DTLS fingerprint (a=fingerprint)")
)

// Offer is what we learned from a remote SDP offer.
type Offer struct {
	// Media lists the audio and video sections in order.
	Media []MediaSection
	// Ufrag is the offerer's ICE username fragment.
	Ufrag string
}

// MediaSection is one m= section of an offer.
type MediaSection struct {
	Mid       string
	Kind      webrtc.RTPCodecType
	Direction string // sendonly, recvonly, sendrecv, inactive
	// Codecs are the offered codecs we support, most preferred first.
	Codecs []webrtc.RTPCodecParameters
	// RTX lists the offered RTX formats (RFC 4588) of those codecs.
	RTX []webrtc.RTPCodecParameters
	// RIDs lists the simulcast layers offered (a=rid), if any.
	RIDs []string
}

// Best returns the most preferred codec of the section.
func (m MediaSection) Best() (webrtc.RTPCodecParameters, bool) {
	if len(m.Codecs) == 0 {
		return webrtc.RTPCodecParameters{}, false
	}
	return m.Codecs[0], true
}

// ParseOffer parses and checks a remote offer. The errors name what is wrong,
// fit for a 4xx reason. It never panics on any input.
func ParseOffer(raw string) (*Offer, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, ErrEmptySDP
	}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(raw); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	ufrag, sessUfrag := sd.Attribute("ice-ufrag")
	_, sessPwd := sd.Attribute("ice-pwd")
	_, sessFP := sd.Attribute("fingerprint")
	offer := &Offer{Ufrag: ufrag}
	var unsupported []string
	for _, md := range sd.MediaDescriptions {
		kind := webrtc.NewRTPCodecType(md.MediaName.Media)
		if kind == 0 {
			continue // application (data channels) and others are not media
		}
		if md.MediaName.Port.Value == 0 {
			continue // rejected / bundled-only sections with port 0 carry nothing new
		}
		mUfrag, hasUfrag := md.Attribute("ice-ufrag")
		_, pwd := md.Attribute("ice-pwd")
		if (!hasUfrag && !sessUfrag) || (!pwd && !sessPwd) {
			return nil, ErrNoICE
		}
		if hasUfrag && offer.Ufrag == "" {
			offer.Ufrag = mUfrag
		}
		if _, fp := md.Attribute("fingerprint"); !fp && !sessFP {
			return nil, ErrNoFingerprint
		}
		ms := MediaSection{Kind: kind, Direction: "sendrecv"}
		ms.Mid, _ = md.Attribute("mid")
		for _, dir := range []string{"sendonly", "recvonly", "sendrecv", "inactive"} {
			if _, ok := md.Attribute(dir); ok {
				ms.Direction = dir
			}
		}
		for _, a := range md.Attributes {
			if a.Key == "rid" {
				if id, _, _ := strings.Cut(a.Value, " "); id != "" {
					ms.RIDs = append(ms.RIDs, id)
				}
			}
		}
		codecs := offeredCodecs(md)
		type ranked struct {
			c    webrtc.RTPCodecParameters
			rank int
		}
		var ok []ranked
		for _, c := range codecs {
			if r := codecRank(c); r >= 0 {
				ok = append(ok, ranked{c, r})
			}
		}
		slices.SortStableFunc(ok, func(a, b ranked) int { return a.rank - b.rank })
		for _, r := range ok {
			ms.Codecs = append(ms.Codecs, r.c)
		}
		for _, c := range codecs {
			if !strings.EqualFold(c.MimeType, webrtc.MimeTypeRTX) {
				continue
			}
			apt, err := strconv.ParseUint(fmtpParams(c.SDPFmtpLine)["apt"], 10, 7)
			if err == nil && slices.ContainsFunc(ms.Codecs, func(m webrtc.RTPCodecParameters) bool { return uint64(m.PayloadType) == apt }) {
				ms.RTX = append(ms.RTX, c)
			}
		}
		if len(ms.Codecs) == 0 {
			names := make([]string, 0, len(codecs))
			for _, c := range codecs {
				names = append(names, c.MimeType)
			}
			unsupported = append(unsupported, fmt.Sprintf("%s section offers %s", kind, strings.Join(slices.Compact(names), ", ")))
		}
		offer.Media = append(offer.Media, ms)
	}
	if len(offer.Media) == 0 {
		return nil, ErrNoMedia
	}
	if slices.IndexFunc(offer.Media, func(m MediaSection) bool { return len(m.Codecs) > 0 }) < 0 {
		return nil, fmt.Errorf("%w: %s; we take H264, VP8, VP9, AV1, H265 and Opus", ErrNoCommonCodec, strings.Join(unsupported, "; "))
	}
	return offer, nil
}

// offeredCodecs reads the rtpmap and fmtp lines of a section.
func offeredCodecs(md *sdp.MediaDescription) []webrtc.RTPCodecParameters {
	byPT := map[uint64]*webrtc.RTPCodecParameters{}
	var order []uint64
	for _, f := range md.MediaName.Formats {
		pt, err := strconv.ParseUint(f, 10, 7)
		if err != nil {
			continue
		}
		if _, dup := byPT[pt]; dup {
			continue
		}
		byPT[pt] = &webrtc.RTPCodecParameters{PayloadType: webrtc.PayloadType(pt)}
		order = append(order, pt)
	}
	for _, a := range md.Attributes {
		ptStr, rest, _ := strings.Cut(a.Value, " ")
		pt, err := strconv.ParseUint(ptStr, 10, 7)
		if err != nil {
			continue
		}
		c := byPT[pt]
		if c == nil {
			continue
		}
		switch a.Key {
		case "rtpmap":
			// a=rtpmap:<pt> <name>/<clock>[/<channels>]
			parts := strings.Split(rest, "/")
			if len(parts) < 2 {
				continue
			}
			clock, err := strconv.ParseUint(parts[1], 10, 32)
			if err != nil {
				continue
			}
			c.MimeType = md.MediaName.Media + "/" + parts[0]
			c.ClockRate = uint32(clock)
			if len(parts) > 2 {
				if ch, err := strconv.ParseUint(parts[2], 10, 16); err == nil {
					c.Channels = uint16(ch)
				}
			}
		case "fmtp":
			c.SDPFmtpLine = rest
		case "rtcp-fb":
			typ, param, _ := strings.Cut(rest, " ")
			c.RTCPFeedback = append(c.RTCPFeedback, webrtc.RTCPFeedback{Type: typ, Parameter: param})
		}
	}
	out := make([]webrtc.RTPCodecParameters, 0, len(order))
	for _, pt := range order {
		if c := byPT[pt]; c.MimeType != "" {
			out = append(out, *c)
		}
	}
	return out
}
