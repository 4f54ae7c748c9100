package rtc

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
)

// chromeOffer is the video section Chromium 156 offers (TESTING.md §3),
// trimmed to the codecs that matter here.
const chromeOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n" +
	"a=fingerprint:sha-256 00:11\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=sendonly\r\n" +
	"a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96 102 104 106 45 98\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=sendonly\r\n" +
	"a=rtpmap:96 VP8/90000\r\n" +
	"a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n" +
	"a=rtpmap:104 H264/90000\r\na=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f\r\n" +
	"a=rtpmap:106 H264/90000\r\na=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n" +
	"a=rtpmap:45 AV1/90000\r\na=rtpmap:98 VP9/90000\r\na=fmtp:98 profile-id=0\r\n" +
	"a=rid:h send\r\na=rid:l send\r\na=simulcast:send h;l\r\n"

func TestParseOfferPrefersH264(t *testing.T) {
	o, err := ParseOffer(chromeOffer)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Media) != 2 || o.Ufrag != "abcd" {
		t.Fatalf("offer = %+v", o)
	}
	audio, video := o.Media[0], o.Media[1]
	if best, _ := audio.Best(); best.MimeType != "audio/opus" || best.PayloadType != 111 || audio.Direction != "sendonly" {
		t.Fatalf("audio = %+v", audio)
	}
	var got []string
	for _, c := range video.Codecs {
		got = append(got, fmt.Sprintf("%s/%d", c.MimeType, c.PayloadType))
	}
	// 42e01f mode 1 first, then 42001f mode 1 (mode 0 is refused), then VP8, VP9, AV1.
	want := []string{"video/H264/106", "video/H264/102", "video/VP8/96", "video/VP9/98", "video/AV1/45"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("video codecs = %v, want %v", got, want)
	}
	if strings.Join(video.RIDs, ",") != "h,l" {
		t.Fatalf("rids = %v", video.RIDs)
	}
}

func TestParseOfferErrors(t *testing.T) {
	for _, c := range []struct {
		name, sdp string
		want      error
	}{
		{"empty", "  \r\n", ErrEmptySDP},
		{"garbage", "hello", ErrBadSDP},
		{"no media", "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n", ErrNoMedia},
		{"no ice", strings.ReplaceAll(chromeOffer, "a=ice-ufrag:abcd\r\n", ""), ErrNoICE},
		{"no fingerprint", strings.ReplaceAll(chromeOffer, "a=fingerprint:sha-256 00:11\r\n", ""), ErrNoFingerprint},
		{"no common codec", strings.NewReplacer("opus", "x", "VP8", "x", "H264", "x", "VP9", "x", "AV1", "x").Replace(chromeOffer), ErrNoCommonCodec},
	} {
		if _, err := ParseOffer(c.sdp); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
}

func TestSameCodec(t *testing.T) {
	h := func(fmtp string) webrtc.RTPCodecCapability {
		return webrtc.RTPCodecCapability{MimeType: "video/H264", ClockRate: 90000, SDPFmtpLine: fmtp}
	}
	if !SameCodec(h("packetization-mode=1;profile-level-id=42e01f"), h("profile-level-id=42E034;packetization-mode=1")) {
		t.Error("same profile, other level: want same")
	}
	if SameCodec(h("packetization-mode=1;profile-level-id=42e01f"), h("packetization-mode=1;profile-level-id=640c1f")) {
		t.Error("other profile: want different")
	}
	if SameCodec(h("packetization-mode=1;profile-level-id=42e01f"), h("packetization-mode=0;profile-level-id=42e01f")) {
		t.Error("other packetization mode: want different")
	}
}

func FuzzParseOffer(f *testing.F) {
	f.Add(chromeOffer)
	f.Add("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 RTP/AVP 96\r\na=rtpmap:96 H264/90000/\r\na=fmtp:96 ;;=\r\n")
	f.Add("v=0\r\nm=audio 1 x 300 -1 a\r\na=rtpmap:300 opus/x\r\n")
	f.Fuzz(func(t *testing.T, sdp string) {
		o, err := ParseOffer(sdp)
		if err == nil && len(o.Media) == 0 {
			t.Fatal("no error and no media")
		}
	})
}

// TestParseOfferRTX: the RTX formats of codecs we take are kept, those of
// codecs we refuse (H.264 packetization-mode 0 here) or not offered are not.
func TestParseOfferRTX(t *testing.T) {
	offer := strings.Replace(chromeOffer, "96 102 104 106 45 98\r\n", "96 97 102 103 104 105 106 107 45 98 99\r\n", 1) +
		"a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n" +
		"a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n" +
		"a=rtpmap:105 rtx/90000\r\na=fmtp:105 apt=104\r\n" +
		"a=rtpmap:107 rtx/90000\r\na=fmtp:107 apt=106\r\n" +
		"a=rtpmap:99 rtx/90000\r\na=fmtp:99 apt=120\r\n"
	o, err := ParseOffer(offer)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range o.Media[1].RTX {
		got = append(got, fmt.Sprintf("%d %s", c.PayloadType, c.SDPFmtpLine))
	}
	if want := "97 apt=96,103 apt=102,107 apt=106"; strings.Join(got, ",") != want {
		t.Fatalf("RTX = %v, want %s", got, want)
	}
	for _, c := range o.Media[1].Codecs {
		if strings.EqualFold(c.MimeType, webrtc.MimeTypeRTX) {
			t.Fatalf("RTX among the codecs: %+v", c)
		}
	}
}
