package ingest

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"
)

// simOffer is a publisher's offer with one video section (mid 0, H.264 and
// RTX, the mid header extension as id 1) followed by the lines given.
func simOffer(lines ...string) string {
	return "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 102 103\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\n" +
		"a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
		"a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n" +
		"a=setup:actpass\r\na=rtpmap:102 H264/90000\r\na=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n" +
		strings.Join(lines, "\r\n") + "\r\n"
}

const midExt = "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid"

// ssrcLines declares an SSRC as Chrome does.
func ssrcLines(ssrc string) string {
	return "a=ssrc:" + ssrc + " cname:c\r\na=ssrc:" + ssrc + " msid:stream video"
}

// rewriteCases drive TestRewriteSSRCSimulcast and seed FuzzRewriteSSRCSimulcast.
var rewriteCases = []struct {
	name  string
	offer string
	// For an accepted offer: the RIDs, the extension ids, the ids added.
	rids             []string
	midID, ridID     uint8
	added            []int
	err              string // for a refused one: part of the reason
	unchangedNoLayer bool   // no SIM group: the offer comes back as it is
}{
	{name: "no simulcast", offer: simOffer(midExt, ssrcLines("5")), unchangedNoLayer: true},
	{name: "RID simulcast", offer: simOffer(midExt, "a=rid:h send", "a=rid:l send", "a=simulcast:send h;l"), unchangedNoLayer: true},
	{
		name:  "low to high with RTX, as Chrome",
		offer: simOffer(midExt, "a=ssrc-group:SIM 1 2 3", "a=ssrc-group:FID 1 11", "a=ssrc-group:FID 2 22", "a=ssrc-group:FID 3 33", ssrcLines("1"), ssrcLines("11"), ssrcLines("2"), ssrcLines("22"), ssrcLines("3"), ssrcLines("33")),
		rids:  []string{"1", "2", "3"}, midID: 1, ridID: 2, added: []int{2},
	},
	{
		name:  "high to low, no header extensions",
		offer: simOffer("a=ssrc-group:SIM 4294967295 7", ssrcLines("4294967295"), ssrcLines("7")),
		rids:  []string{"4294967295", "7"}, midID: 1, ridID: 2, added: []int{1, 2},
	},
	{
		name:  "extension ids taken",
		offer: simOffer("a=extmap:1 urn:x:a", "a=extmap:2/sendonly urn:x:b", "a=extmap:4 urn:x:c", "a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "a=ssrc-group:SIM 1 2"),
		rids:  []string{"1", "2"}, midID: 5, ridID: 3, added: []int{5},
	},
	{
		name:  "four layers and an unrelated SSRC",
		offer: simOffer(midExt, "a=ssrc-group:SIM 1 2 3 4", "a=ssrc-group:FID 9 10", ssrcLines("9"), ssrcLines("10")),
		rids:  []string{"1", "2", "3", "4"}, midID: 1, ridID: 2, added: []int{2},
	},
	{name: "one SSRC", offer: simOffer("a=ssrc-group:SIM 1"), err: "lists 1 SSRCs; simulcast takes 2 to 4"},
	{name: "five SSRCs", offer: simOffer("a=ssrc-group:SIM 1 2 3 4 5"), err: "lists 5 SSRCs"},
	{name: "duplicate SSRC", offer: simOffer("a=ssrc-group:SIM 1 2 1"), err: "lists SSRC 1 twice"},
	{name: "not a number", offer: simOffer("a=ssrc-group:SIM 1 x"), err: `SSRC "x"`},
	{name: "SSRC over 32 bits", offer: simOffer("a=ssrc-group:SIM 1 4294967296"), err: "not a 32-bit number"},
	{name: "with a=rid", offer: simOffer("a=ssrc-group:SIM 1 2", "a=rid:h send"), err: "together with a=rid"},
	{name: "with a=simulcast", offer: simOffer("a=ssrc-group:SIM 1 2", "a=simulcast:send 1;2"), err: "together with a=simulcast"},
	{name: "two SIM groups", offer: simOffer("a=ssrc-group:SIM 1 2", "a=ssrc-group:SIM 3 4"), err: "more than one"},
	{name: "RTX SSRC is a layer", offer: simOffer("a=ssrc-group:SIM 1 2", "a=ssrc-group:FID 9 2"), err: "uses simulcast SSRC 2 as an RTX SSRC"},
	{name: "FID pairs two layers", offer: simOffer("a=ssrc-group:SIM 1 2", "a=ssrc-group:FID 1 2"), err: "pairs two simulcast SSRCs"},
	{name: "two RTX for a layer", offer: simOffer("a=ssrc-group:SIM 1 2", "a=ssrc-group:FID 1 11", "a=ssrc-group:FID 1 12"), err: "more than one a=ssrc-group:FID"},
	{name: "RTX for two layers", offer: simOffer("a=ssrc-group:SIM 1 2", "a=ssrc-group:FID 1 11", "a=ssrc-group:FID 2 11"), err: "repairs more than one"},
	{name: "FID of three", offer: simOffer("a=ssrc-group:SIM 1 2", "a=ssrc-group:FID 1 11 12"), err: "FID lists 3 SSRCs"},
	{name: "FEC group on a layer", offer: simOffer("a=ssrc-group:SIM 1 2", "a=ssrc-group:FEC-FR 1 11"), err: "FEC-FR names a simulcast SSRC"},
	{name: "empty group", offer: simOffer("a=ssrc-group:SIM 1 2", "a=ssrc-group:"), err: "empty a=ssrc-group"},
	{name: "no free extension id", offer: simOffer("a=extmap:1 urn:x:1", "a=extmap:2 urn:x:2", "a=extmap:3 urn:x:3", "a=extmap:4 urn:x:4", "a=extmap:5 urn:x:5", "a=extmap:6 urn:x:6", "a=extmap:7 urn:x:7", "a=extmap:8 urn:x:8", "a=extmap:9 urn:x:9", "a=extmap:10 urn:x:10", "a=extmap:11 urn:x:11", "a=extmap:12 urn:x:12", "a=extmap:13 urn:x:13", "a=extmap:14 urn:x:14", "a=ssrc-group:SIM 1 2"), err: "no free header extension id"},
	{name: "mid extension as a two-byte id", offer: simOffer("a=extmap:20 urn:ietf:params:rtp-hdrext:sdes:mid", "a=ssrc-group:SIM 1 2"), err: "ids 1 to 14"},
	{name: "bad extmap", offer: simOffer("a=extmap:0 urn:x", "a=ssrc-group:SIM 1 2"), err: "a=extmap:0"},
	{name: "long mid", offer: strings.Replace(simOffer("a=ssrc-group:SIM 1 2"), "a=mid:0", "a=mid:"+strings.Repeat("m", 17), 1), err: "longer than 16 bytes"},
	{name: "no mid", offer: strings.Replace(simOffer("a=ssrc-group:SIM 1 2"), "a=mid:0\r\n", "", 1), err: "no a=mid"},
	{name: "in an audio section", offer: strings.Replace(simOffer("a=ssrc-group:SIM 1 2"), "m=video", "m=audio", 1), err: "audio section"},
	{
		name:  "SSRC in two SIM groups",
		offer: simOffer("a=ssrc-group:SIM 1 2") + "m=video" + strings.Replace(strings.SplitN(simOffer("a=ssrc-group:SIM 2 3"), "m=video", 2)[1], "a=mid:0", "a=mid:1", 1),
		err:   `SSRC 2 is also a simulcast SSRC of section "0"`,
	},
}

func TestRewriteSSRCSimulcast(t *testing.T) {
	for _, c := range rewriteCases {
		t.Run(c.name, func(t *testing.T) {
			out, layers, err := rewriteSSRCSimulcast(c.offer)
			if c.err != "" {
				if !errors.Is(err, errBadSSRCSimulcast) || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want errBadSSRCSimulcast with %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.unchangedNoLayer {
				if layers != nil || out != c.offer {
					t.Fatalf("changed an offer without SSRC simulcast: %v\n%s", layers, out)
				}
				return
			}
			if layers == nil || len(layers.sections) != 1 {
				t.Fatalf("layers = %+v", layers)
			}
			s := layers.sections[0]
			if s.mid != "0" || s.midExtID != c.midID || s.ridExtID != c.ridID || !slices.Equal(s.added, c.added) {
				t.Errorf("section %+v, want mid ext %d, rid ext %d, added %v", s, c.midID, c.ridID, c.added)
			}
			var sd sdp.SessionDescription
			if err := sd.UnmarshalString(out); err != nil {
				t.Fatal(err)
			}
			md := sd.MediaDescriptions[0]
			var rids []string
			for _, a := range md.Attributes {
				switch a.Key {
				case "rid":
					id, dir, _ := strings.Cut(a.Value, " ")
					if dir != "send" {
						t.Errorf("a=rid:%s", a.Value)
					}
					rids = append(rids, id)
				case "ssrc", "ssrc-group":
					for _, r := range c.rids {
						if strings.HasPrefix(a.Value, r+" ") || strings.HasPrefix(a.Value, "SIM") || strings.HasPrefix(a.Value, "FID "+r+" ") {
							t.Errorf("a=%s:%s left in the rewritten offer", a.Key, a.Value)
						}
					}
				}
			}
			if !slices.Equal(rids, c.rids) {
				t.Errorf("rids %v, want %v", rids, c.rids)
			}
			if sim, _ := md.Attribute("simulcast"); sim != "send "+strings.Join(c.rids, ";") {
				t.Errorf("a=simulcast:%s", sim)
			}
			if msid, ok := md.Attribute("msid"); !ok || msid == "" {
				t.Error("no a=msid: pion would not take the section as a simulcast track")
			}
			// The rewritten offer has nothing left to rewrite.
			if again, l2, err := rewriteSSRCSimulcast(out); err != nil || l2 != nil || again != out {
				t.Errorf("second rewrite: %v %+v", err, l2)
			}

			// An answer to the rewritten offer, as pion writes one, loses
			// what only the rewrite asked for.
			answer := "v=0\r\no=- 3 4 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\n" +
				"a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=extmap:2 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\na=extmap:3/recvonly urn:x:b\r\na=extmap:5 urn:x:c\r\n" +
				"a=rid:1 recv\r\na=rid:2 recv\r\na=simulcast:recv 1;2\r\n"
			restored, err := layers.restoreAnswer(answer)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(restored, "a=rid") || strings.Contains(restored, "a=simulcast") {
				t.Errorf("restored answer keeps RIDs:\n%s", restored)
			}
			for _, id := range []string{"1", "2", "3", "5"} {
				want := !slices.Contains(s.added, int(id[0]-'0'))
				if got := strings.Contains(restored, "a=extmap:"+id); got != want {
					t.Errorf("restored answer has a=extmap:%s: %v, want %v\n%s", id, got, want, restored)
				}
			}
		})
	}
}

// FuzzRewriteSSRCSimulcast: the rewrite never panics; what it accepts is a
// parseable offer with nothing left to rewrite, and an answer to it can be
// restored.
func FuzzRewriteSSRCSimulcast(f *testing.F) {
	for _, c := range rewriteCases {
		f.Add(c.offer)
	}
	f.Fuzz(func(t *testing.T, offer string) {
		if len(offer) > 1<<16 {
			return
		}
		out, layers, err := rewriteSSRCSimulcast(offer)
		if err != nil || layers == nil {
			return
		}
		again, l2, err := rewriteSSRCSimulcast(out)
		if err != nil || l2 != nil || again != out {
			t.Fatalf("rewritten offer rewritten again: %v %+v\n%q", err, l2, out)
		}
		for _, s := range layers.sections {
			if s.midExtID < 1 || s.midExtID > 14 || s.ridExtID < 1 || s.ridExtID > 14 || s.midExtID == s.ridExtID || len(s.mid) > 16 {
				t.Fatalf("section %+v", s)
			}
		}
		if _, err := layers.restoreAnswer(out); err != nil {
			t.Fatalf("restore: %v", err)
		}
		_ = newRIDTagger(layers)
	})
}
