package main

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// offerSDP makes a real offer with pion: sendonly (publisher) or recvonly
// (viewer) audio and video.
func offerSDP(t *testing.T, dir webrtc.RTPTransceiverDirection) string {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: dir}); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return offer.SDP
}

// withVideoAttrs returns offer with attribute lines ("key:value") added to
// its video section.
func withVideoAttrs(t *testing.T, offer string, attrs ...string) string {
	t.Helper()
	return mungeVideo(t, offer, func(md *sdp.MediaDescription) {
		for _, a := range attrs {
			k, v, _ := strings.Cut(a, ":")
			md.Attributes = append(md.Attributes, sdp.NewAttribute(k, v))
		}
	})
}

// mungeVideo returns offer with change applied to its video sections.
func mungeVideo(t testing.TB, offer string, change func(*sdp.MediaDescription)) string {
	t.Helper()
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		t.Fatal(err)
	}
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media == "video" {
			change(md)
		}
	}
	b, err := sd.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const sdpNoMedia = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"

func TestBadRequests(t *testing.T) {
	srv := startServer(t)
	pubOffer := offerSDP(t, webrtc.RTPTransceiverDirectionSendonly)
	viewOffer := offerSDP(t, webrtc.RTPTransceiverDirectionRecvonly)
	sim := func(attrs ...string) string { return withVideoAttrs(t, pubOffer, attrs...) }
	noCommon := strings.NewReplacer("H264", "XH264", "opus", "xopus", "VP8", "XVP8", "VP9", "XVP9", "AV1", "XAV1", "H265", "XH265").Replace(pubOffer)
	auth := "Bearer " + testToken

	cases := []struct {
		name, method, path, ctype, auth, body string
		status                                int
		reason                                string
	}{
		{"wrong content type", "POST", "/whip/a", "text/plain", auth, pubOffer, 415, "Content-Type"},
		{"missing content type", "POST", "/whip/a", "", auth, pubOffer, 415, "missing Content-Type"},
		{"empty SDP", "POST", "/whip/a", "application/sdp", auth, "", 400, "empty SDP"},
		{"garbage SDP", "POST", "/whip/a", "application/sdp", auth, "hello world\r\n", 400, "malformed SDP"},
		{"SDP without media", "POST", "/whip/a", "application/sdp", auth, sdpNoMedia, 400, "no audio or video"},
		{"no common codec", "POST", "/whip/a", "application/sdp", auth, noCommon, 406, "no codec in common"},
		{"oversized body", "POST", "/whip/a", "application/sdp", auth, strings.Repeat("a=x\r\n", 20000), 413, "larger than"},
		{"bad stream name", "POST", "/whip/bad.name", "application/sdp", auth, pubOffer, 400, "invalid stream name"},
		{"long stream name", "POST", "/whip/" + strings.Repeat("x", 65), "application/sdp", auth, pubOffer, 400, "invalid stream name"},
		{"missing token", "POST", "/whip/a", "application/sdp", "", pubOffer, 401, "missing Authorization"},
		{"not a bearer token", "POST", "/whip/a", "application/sdp", "Basic Zm9vOmJhcg==", pubOffer, 401, "Bearer"},
		{"wrong token", "POST", "/whip/a", "application/sdp", "Bearer nope", pubOffer, 403, "wrong token"},
		{"viewer offer to WHIP", "POST", "/whip/a", "application/sdp", auth, viewOffer, 400, "must send"},
		{"SSRC simulcast of one layer", "POST", "/whip/a", "application/sdp", auth, sim("ssrc-group:SIM 1"), 400, "a=ssrc-group:SIM lists 1 SSRCs; simulcast takes 2 to 4"},
		{"SSRC simulcast of five layers", "POST", "/whip/a", "application/sdp", auth, sim("ssrc-group:SIM 1 2 3 4 5"), 400, "lists 5 SSRCs"},
		{"SSRC simulcast with a duplicate", "POST", "/whip/a", "application/sdp", auth, sim("ssrc-group:SIM 1 2 1"), 400, "lists SSRC 1 twice"},
		{"SSRC simulcast and RIDs", "POST", "/whip/a", "application/sdp", auth, sim("ssrc-group:SIM 1 2", "rid:h send"), 400, "together with a=rid"},
		{"SSRC simulcast layer as RTX", "POST", "/whip/a", "application/sdp", auth, sim("ssrc-group:SIM 1 2", "ssrc-group:FID 9 2"), 400, "uses simulcast SSRC 2 as an RTX SSRC"},
		{"SSRC simulcast layer with two RTX", "POST", "/whip/a", "application/sdp", auth, sim("ssrc-group:SIM 1 2", "ssrc-group:FID 1 8", "ssrc-group:FID 1 9"), 400, "more than one a=ssrc-group:FID"},
		{"DELETE unknown WHIP resource", "DELETE", "/whip/a/0123", "", auth, "", 404, "no WHIP session"},
		{"PATCH unknown WHIP resource", "PATCH", "/whip/a/0123", "application/trickle-ice-sdpfrag", auth, "", 404, "no WHIP session"},
		{"WHEP unknown stream", "POST", "/whep/never", "application/sdp", "", viewOffer, 404, "not found"},
		{"WHEP bad stream name", "POST", "/whep/a%20b", "application/sdp", "", viewOffer, 400, "invalid stream name"},
		{"DELETE unknown WHEP resource", "DELETE", "/whep/a/0123", "", "", "", 404, "no WHEP session"},
		{"GET on WHIP", "GET", "/whip/a", "", "", "", 405, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, srv.URL()+c.path, strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			if c.ctype != "" {
				req.Header.Set("Content-Type", c.ctype)
			}
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != c.status || !strings.Contains(string(body), c.reason) {
				t.Fatalf("%s %s: got %d %q, want %d containing %q", c.method, c.path, res.StatusCode, body, c.status, c.reason)
			}
			if c.status == 401 && res.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}

	// The server still serves: a good publish is accepted, a second one on
	// the same stream is refused with 409, and the WHEP side answers.
	post := func(path, body, auth string) *http.Response {
		req, _ := http.NewRequest("POST", srv.URL()+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/sdp")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	res := post("/whip/good", pubOffer, auth)
	if res.StatusCode != 201 || res.Header.Get("Location") == "" || res.Header.Get("ETag") == "" {
		t.Fatalf("good publish: %d, Location %q, ETag %q", res.StatusCode, res.Header.Get("Location"), res.Header.Get("ETag"))
	}
	if res := post("/whip/good", offerSDP(t, webrtc.RTPTransceiverDirectionSendonly), auth); res.StatusCode != 409 {
		t.Fatalf("second publisher: %d, want 409", res.StatusCode)
	}
	if res := post("/whep/good", viewOffer, ""); res.StatusCode != 201 {
		t.Fatalf("viewer: %d, want 201", res.StatusCode)
	}
	loc := res.Header.Get("Location") // the publisher's resource

	// PATCH: If-Match is required and must match; an ICE restart is refused.
	patch := func(ifMatch, body string) int {
		req, _ := http.NewRequest("PATCH", srv.URL()+loc, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/trickle-ice-sdpfrag")
		req.Header.Set("Authorization", auth)
		if ifMatch != "" {
			req.Header.Set("If-Match", ifMatch)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	etag := res.Header.Get("ETag")
	cand := "a=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n"
	for _, c := range []struct {
		ifMatch, body string
		want          int
	}{
		{"", cand, 428},
		{`"other"`, cand, 412},
		{etag, "a=ice-ufrag:new\r\na=ice-pwd:newpasswordnewpassword\r\n" + cand, 422},
		{etag, "a=candidate:garbage\r\n", 400},
		{etag, cand, 204},
	} {
		if got := patch(c.ifMatch, c.body); got != c.want {
			t.Errorf("PATCH If-Match %q: %d, want %d", c.ifMatch, got, c.want)
		}
	}

	// DELETE needs the token, ends the session; a second DELETE finds nothing.
	for _, want := range []int{401, 200, 404} {
		req, _ := http.NewRequest("DELETE", srv.URL()+loc, nil)
		if want != 401 {
			req.Header.Set("Authorization", auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Fatalf("DELETE %s: %d, want %d", loc, res.StatusCode, want)
		}
	}

	// CORS preflight.
	req, _ := http.NewRequest("OPTIONS", srv.URL()+"/whip/good", nil)
	res2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res2.Body.Close()
	if res2.StatusCode != 204 || res2.Header.Get("Accept-Post") != "application/sdp" ||
		!strings.Contains(res2.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("OPTIONS: %d %v", res2.StatusCode, res2.Header)
	}
}
