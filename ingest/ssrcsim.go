package ingest

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// SSRC-announced simulcast.
//
// A publisher may announce simulcast the way Chrome's SDP munging and older
// SFU clients do: one video section with
//
//	a=ssrc-group:SIM 111 222 333
//	a=ssrc:111 cname:x
//	...
//
// and packets that carry no RID header extension (RFC 8852). pion sees three
// SSRCs in one section and rejects the offer as Plan B. So before pion sees
// the offer, rewriteSSRCSimulcast puts such a section into RID form
// (RFC 8853): one a=rid per SSRC named by the SSRC in decimal, a=simulcast,
// and the mid and rtp-stream-id header extensions; the ridTagger
// interceptor then writes those extensions into each packet of the layers'
// SSRCs before pion demultiplexes them, so pion makes one TrackRemote per
// layer as it does for a browser. restoreAnswer takes out of pion's answer
// what the publisher did not offer.

// Simulcast limits: RFC 5576 section 4.2 defines no bound, but every
// sender uses two to four layers and each costs a track and a packager
// pipeline.
const (
	minSIMLayers = 2
	maxSIMLayers = 4
)

// errBadSSRCSimulcast is the error of every offer rewriteSSRCSimulcast
// refuses; the text after it says why.
var errBadSSRCSimulcast = errors.New("bad SSRC simulcast (a=ssrc-group:SIM)")

// simLayers is what rewriteSSRCSimulcast did to an offer: enough to tag the
// layers' packets and to undo the rewrite in the answer.
type simLayers struct {
	sections []simSection
}

// simSection is one rewritten media section.
type simSection struct {
	mid      string
	ssrcs    []uint32 // in a=ssrc-group:SIM order
	midExtID uint8    // the mid header extension's id (offered or added)
	ridExtID uint8    // the rtp-stream-id header extension's id (offered or added)
	added    []int    // extmap ids we added to the offer
}

// rid names a simulcast SSRC as a layer: its decimal value.
func rid(ssrc uint32) string { return strconv.FormatUint(uint64(ssrc), 10) }

func badSIM(mid, format string, a ...any) error {
	return fmt.Errorf("%w in section %q: %s", errBadSSRCSimulcast, mid, fmt.Sprintf(format, a...))
}

// rewriteSSRCSimulcast rewrites an offer with SSRC-announced simulcast into
// RID form. An offer without a=ssrc-group:SIM comes back as it is, with nil
// layers. Errors (wrapping errBadSSRCSimulcast) name what is wrong with the
// offer's simulcast, fit for a 400 reason. It never panics on any input.
func rewriteSSRCSimulcast(raw string) (string, *simLayers, error) {
	if !strings.Contains(raw, "ssrc-group:SIM") {
		return raw, nil, nil
	}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(raw); err != nil {
		return "", nil, fmt.Errorf("%w: %w", errBadSSRCSimulcast, err)
	}
	var layers simLayers
	seen := map[uint32]string{} // simulcast SSRC → mid, across sections
	for _, md := range sd.MediaDescriptions {
		sec, ok, err := rewriteSection(&sd, md, seen)
		if err != nil {
			return "", nil, err
		}
		if ok {
			layers.sections = append(layers.sections, sec)
		}
	}
	if len(layers.sections) == 0 {
		return raw, nil, nil
	}
	b, err := sd.Marshal()
	if err != nil {
		return "", nil, fmt.Errorf("%w: %w", errBadSSRCSimulcast, err)
	}
	return string(b), &layers, nil
}

// ssrcGroup is one a=ssrc-group line.
type ssrcGroup struct {
	semantics string
	ssrcs     []uint32
}

func parseSSRCGroup(mid, v string) (ssrcGroup, error) {
	f := strings.Fields(v)
	if len(f) == 0 {
		return ssrcGroup{}, badSIM(mid, "empty a=ssrc-group")
	}
	g := ssrcGroup{semantics: f[0]}
	for _, s := range f[1:] {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return ssrcGroup{}, badSIM(mid, "a=ssrc-group:%s has SSRC %q, not a 32-bit number", g.semantics, s)
		}
		g.ssrcs = append(g.ssrcs, uint32(n))
	}
	return g, nil
}

// rewriteSection rewrites md in place if it has a SIM group. seen collects
// the simulcast SSRCs of earlier sections.
func rewriteSection(sd *sdp.SessionDescription, md *sdp.MediaDescription, seen map[uint32]string) (simSection, bool, error) {
	mid, _ := md.Attribute("mid")
	var sim *ssrcGroup
	var others []ssrcGroup
	for _, a := range md.Attributes {
		if a.Key != "ssrc-group" {
			continue
		}
		g, err := parseSSRCGroup(mid, a.Value)
		if err != nil {
			return simSection{}, false, err
		}
		if g.semantics != "SIM" {
			others = append(others, g)
			continue
		}
		if sim != nil {
			return simSection{}, false, badSIM(mid, "more than one a=ssrc-group:SIM")
		}
		sim = &g
	}
	if sim == nil {
		return simSection{}, false, nil
	}
	if md.MediaName.Media != "video" {
		return simSection{}, false, badSIM(mid, "a=ssrc-group:SIM in a %s section; simulcast is for video", md.MediaName.Media)
	}
	if mid == "" {
		return simSection{}, false, badSIM(mid, "the section has no a=mid")
	}
	if len(mid) > 16 {
		// RFC 8285 section 4.2: a one-byte header element carries 1 to 16 bytes.
		return simSection{}, false, badSIM(mid, "a=mid longer than 16 bytes cannot be sent in a header extension")
	}
	if _, ok := md.Attribute("rid"); ok {
		return simSection{}, false, badSIM(mid, "a=ssrc-group:SIM together with a=rid; announce simulcast one way")
	}
	if _, ok := md.Attribute("simulcast"); ok {
		return simSection{}, false, badSIM(mid, "a=ssrc-group:SIM together with a=simulcast; announce simulcast one way")
	}
	if n := len(sim.ssrcs); n < minSIMLayers || n > maxSIMLayers {
		return simSection{}, false, badSIM(mid, "a=ssrc-group:SIM lists %d SSRCs; simulcast takes %d to %d", n, minSIMLayers, maxSIMLayers)
	}
	isSIM := map[uint32]bool{}
	for _, s := range sim.ssrcs {
		if isSIM[s] {
			return simSection{}, false, badSIM(mid, "a=ssrc-group:SIM lists SSRC %d twice", s)
		}
		if other, ok := seen[s]; ok {
			return simSection{}, false, badSIM(mid, "SSRC %d is also a simulcast SSRC of section %q", s, other)
		}
		isSIM[s] = true
	}
	// RFC 5576 section 4.2 / RFC 4588 section 8.7: a=ssrc-group:FID pairs a
	// layer with its retransmission SSRC. Each layer has at most one, a
	// repair SSRC repairs one layer and is not a layer itself.
	repair := map[uint32]bool{}
	repaired := map[uint32]bool{}
	for _, g := range others {
		named := slices.ContainsFunc(g.ssrcs, func(s uint32) bool { return isSIM[s] })
		if g.semantics != "FID" {
			if named {
				return simSection{}, false, badSIM(mid, "a=ssrc-group:%s names a simulcast SSRC; only FID (retransmission) may", g.semantics)
			}
			continue
		}
		if !named {
			continue // a FID group of another SSRC of the section
		}
		if len(g.ssrcs) != 2 {
			return simSection{}, false, badSIM(mid, "a=ssrc-group:FID lists %d SSRCs, want a layer and its RTX SSRC", len(g.ssrcs))
		}
		layer, rtx := g.ssrcs[0], g.ssrcs[1]
		switch {
		case !isSIM[layer]:
			return simSection{}, false, badSIM(mid, "a=ssrc-group:FID %d %d uses simulcast SSRC %d as an RTX SSRC", layer, rtx, rtx)
		case isSIM[rtx]:
			return simSection{}, false, badSIM(mid, "a=ssrc-group:FID %d %d pairs two simulcast SSRCs", layer, rtx)
		case repaired[layer]:
			return simSection{}, false, badSIM(mid, "simulcast SSRC %d has more than one a=ssrc-group:FID", layer)
		case repair[rtx]:
			return simSection{}, false, badSIM(mid, "RTX SSRC %d repairs more than one simulcast SSRC", rtx)
		}
		repaired[layer], repair[rtx] = true, true
	}

	sec := simSection{mid: mid, ssrcs: sim.ssrcs}
	for _, s := range sim.ssrcs {
		seen[s] = mid
	}
	used := map[int]bool{}
	for _, attrs := range [][]sdp.Attribute{sd.Attributes, md.Attributes} {
		for _, a := range attrs {
			if a.Key != "extmap" {
				continue
			}
			var e sdp.ExtMap
			if err := e.Unmarshal("extmap:" + a.Value); err != nil {
				return simSection{}, false, badSIM(mid, "a=extmap:%s: %v", a.Value, err)
			}
			used[e.Value] = true
			switch e.URI.String() {
			case sdp.SDESMidURI:
				sec.midExtID = uint8(min(e.Value, 255))
			case sdp.SDESRTPStreamIDURI:
				sec.ridExtID = uint8(min(e.Value, 255))
			}
		}
	}
	if sec.midExtID > 14 || sec.ridExtID > 14 {
		return simSection{}, false, badSIM(mid, "the mid and rtp-stream-id header extensions need ids 1 to 14 (one-byte headers, RFC 8285)")
	}

	// The streams' msid (a=ssrc:<layer> msid:...) moves to the section:
	// pion takes a RID section as a track only with one.
	msid, hasMsid := md.Attribute("msid")
	var attrs []sdp.Attribute
	for _, a := range md.Attributes {
		switch a.Key {
		case "ssrc-group":
			g, _ := parseSSRCGroup(mid, a.Value) // parsed above
			if g.semantics == "SIM" || slices.ContainsFunc(g.ssrcs, func(s uint32) bool { return isSIM[s] }) {
				continue
			}
		case "ssrc":
			id, rest, _ := strings.Cut(a.Value, " ")
			n, err := strconv.ParseUint(id, 10, 32)
			if err == nil && (isSIM[uint32(n)] || repair[uint32(n)]) {
				if v, ok := strings.CutPrefix(rest, "msid:"); ok && !hasMsid {
					msid, hasMsid = v, true
				}
				continue
			}
		}
		attrs = append(attrs, a)
	}
	if !hasMsid {
		msid = "- " + mid
	}
	if _, ok := md.Attribute("msid"); !ok {
		attrs = append(attrs, sdp.NewAttribute("msid", msid))
	}
	for _, ext := range []struct {
		id  *uint8
		uri string
	}{{&sec.midExtID, sdp.SDESMidURI}, {&sec.ridExtID, sdp.SDESRTPStreamIDURI}} {
		if *ext.id != 0 {
			continue
		}
		free := 1
		for used[free] {
			free++
		}
		if free > 14 {
			return simSection{}, false, badSIM(mid, "no free header extension id (1 to 14) for %s", ext.uri)
		}
		used[free] = true
		*ext.id = uint8(free)
		sec.added = append(sec.added, free)
		attrs = append(attrs, sdp.NewAttribute("extmap", strconv.Itoa(free)+" "+ext.uri))
	}
	rids := make([]string, len(sim.ssrcs))
	for i, s := range sim.ssrcs {
		rids[i] = rid(s)
		attrs = append(attrs, sdp.NewAttribute("rid", rids[i]+" send"))
	}
	attrs = append(attrs, sdp.NewAttribute("simulcast", "send "+strings.Join(rids, ";")))
	md.Attributes = attrs
	return sec, true, nil
}

// restoreAnswer takes out of pion's answer what answers the rewrite rather
// than the publisher's offer: a=rid, a=simulcast and the header extensions
// the rewrite added, in the rewritten sections.
func (l *simLayers) restoreAnswer(answer string) (string, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(answer); err != nil {
		return "", fmt.Errorf("parse our answer: %w", err)
	}
	for _, md := range sd.MediaDescriptions {
		mid, _ := md.Attribute("mid")
		i := slices.IndexFunc(l.sections, func(s simSection) bool { return s.mid == mid })
		if i < 0 {
			continue
		}
		added := l.sections[i].added
		md.Attributes = slices.DeleteFunc(md.Attributes, func(a sdp.Attribute) bool {
			switch a.Key {
			case "rid", "simulcast":
				return true
			case "extmap":
				idDir, _, _ := strings.Cut(a.Value, " ")
				idStr, _, _ := strings.Cut(idDir, "/")
				id, err := strconv.Atoi(idStr)
				return err == nil && slices.Contains(added, id)
			}
			return false
		})
	}
	b, err := sd.Marshal()
	if err != nil {
		return "", fmt.Errorf("marshal our answer: %w", err)
	}
	return string(b), nil
}
