package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/internal/client"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// ssrcLayers are the SSRCs the SSRC-simulcast test publisher sends each
// test layer with.
var ssrcLayers = map[string]uint32{"f": 3_000_000_001, "h": 2_000_000_002, "q": 1_000_000_003}

// ssrcSimTrack is one pion send track that carries several simulcast
// layers, each on an SSRC of its own and without any header extension: the
// packets of a publisher that announces simulcast with a=ssrc-group:SIM
// (Chrome's SDP-munged simulcast, older SFU clients).
type ssrcSimTrack struct {
	mu  sync.Mutex
	w   webrtc.TrackLocalWriter
	pzs map[string]rtp.Packetizer
}

func (s *ssrcSimTrack) ID() string                { return "video" }
func (s *ssrcSimTrack) RID() string               { return "" }
func (s *ssrcSimTrack) StreamID() string          { return "sim" }
func (s *ssrcSimTrack) Kind() webrtc.RTPCodecType { return webrtc.RTPCodecTypeVideo }

func (s *ssrcSimTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := ctx.CodecParameters()[0]
	s.w = ctx.WriteStream()
	s.pzs = map[string]rtp.Packetizer{}
	for layer, ssrc := range ssrcLayers {
		s.pzs[layer] = rtp.NewPacketizer(1200, uint8(c.PayloadType), ssrc, &codecs.H264Payloader{}, rtp.NewRandomSequencer(), 90000)
	}
	return c, nil
}

func (s *ssrcSimTrack) Unbind(webrtc.TrackLocalContext) error {
	s.mu.Lock()
	s.w = nil
	s.mu.Unlock()
	return nil
}

// writeFrame sends one access unit of a layer with timestamp ts.
func (s *ssrcSimTrack) writeFrame(layer string, au []byte, ts uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return
	}
	for _, p := range s.pzs[layer].Packetize(au, 0) {
		p.Timestamp = ts
		_, _ = s.w.WriteRTP(&p.Header, p.Payload)
	}
}

// ssrcSimOffer turns pion's offer for one send track into an SSRC-announced
// simulcast offer: the video section's own a=ssrc lines are replaced by
// a=ssrc-group:SIM over the layers' SSRCs (in the order given) and an
// a=ssrc cname/msid pair per SSRC, as Chrome's munged simulcast offers look.
func ssrcSimOffer(t testing.TB, offer string, order []string) string {
	t.Helper()
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		t.Fatal(err)
	}
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media != "video" {
			continue
		}
		var attrs []sdp.Attribute
		for _, a := range md.Attributes {
			if a.Key != "ssrc" && a.Key != "ssrc-group" {
				attrs = append(attrs, a)
			}
		}
		group := "SIM"
		for _, l := range order {
			group += " " + strconv.FormatUint(uint64(ssrcLayers[l]), 10)
		}
		attrs = append(attrs, sdp.NewAttribute("ssrc-group", group))
		for _, l := range order {
			s := strconv.FormatUint(uint64(ssrcLayers[l]), 10)
			attrs = append(attrs, sdp.NewAttribute("ssrc", s+" cname:sim"), sdp.NewAttribute("ssrc", s+" msid:sim video"))
		}
		md.Attributes = attrs
	}
	b, err := sd.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// publishSSRCSimulcast publishes the three H.264 test layers as one video
// announced by a=ssrc-group:SIM with the layers' SSRCs in the order given.
// withMid offers the mid header extension (as Chrome does); without it the
// offer has no header extension at all. It returns the answer the server sent.
func publishSSRCSimulcast(ctx context.Context, t testing.TB, url string, order []string, withMid bool) string {
	t.Helper()
	files := map[string]string{"f": "layer-f.h264", "h": "layer-h.h264", "q": "layer-q.h264"}
	clips := map[string]*client.Clip{}
	for _, l := range order {
		clips[l] = loadClip(t, files[l])
	}
	m := &webrtc.MediaEngine{}
	codec := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine:  "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
		RTCPFeedback: []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}}}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: codec, PayloadType: 102}, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	if withMid {
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.SDESMidURI}, webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatal(err)
		}
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// An empty interceptor registry: pion's defaults would offer the RID
	// header extension, which such a publisher does not.
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(&interceptor.Registry{}), webrtc.WithSettingEngine(se)).
		NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	track := &ssrcSimTrack{}
	if _, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	body := ssrcSimOffer(t, pc.LocalDescription().SDP, order)
	if strings.Contains(body, sdp.SDESRTPStreamIDURI) || strings.Contains(body, "a=rid") || strings.Contains(body, "transport-wide-cc") {
		t.Fatalf("the SSRC simulcast offer has RID or TWCC header extensions:\n%s", body)
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+testToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 201 {
		t.Fatalf("WHIP: %d %s", res.StatusCode, answer)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// One clock for all layers: frame i of every layer together. The server's
	// keyframe requests name SSRCs this PeerConnection does not read RTCP
	// for, so each layer's keyframes come once a GOP of its file.
	wg.Go(func() {
		tick := time.NewTicker(time.Second / 30)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for _, l := range order {
				f := clips[l].Frames[i%len(clips[l].Frames)]
				track.writeFrame(l, f.Data, uint32(i*3000))
			}
		}
	})
	t.Cleanup(func() {
		close(stop)
		_ = pc.Close()
		wg.Wait()
	})
	return string(answer)
}

// TestPionSSRCSimulcastLayers: three H.264 layers from a pion publisher that
// announces simulcast by a=ssrc-group:SIM (no a=rid, no RID header
// extension), low-to-high with the mid extension and high-to-low without
// any: the server makes one layer per SSRC, lists three, ranks 1280x720
// first, and a viewer pinned to each layer gets that layer's resolution.
// The answer names nothing the offer did not (no a=rid, a=simulcast, or
// header extensions the publisher did not offer).
func TestPionSSRCSimulcastLayers(t *testing.T) {
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	sizes := map[string][2]int{"f": {1280, 720}, "h": {640, 360}, "q": {320, 180}}
	ridOf := func(l string) string { return strconv.FormatUint(uint64(ssrcLayers[l]), 10) }
	extmap := regexp.MustCompile(`a=extmap:\d+ (\S+)`)

	for i, order := range [][]string{{"q", "h", "f"}, {"f", "h", "q"}} {
		stream := fmt.Sprintf("ssrc%d", i)
		withMid := i == 0
		answer := publishSSRCSimulcast(ctx, t, srv.URL()+"/whip/"+stream, order, withMid)
		for _, bad := range []string{"a=rid:", "a=simulcast:", sdp.SDESRTPStreamIDURI} {
			if strings.Contains(answer, bad) {
				t.Errorf("order %v: answer has %q, which the offer did not:\n%s", order, bad, answer)
			}
		}
		if got := extmap.FindAllStringSubmatch(answer, -1); (len(got) == 1 && got[0][1] == sdp.SDESMidURI) != withMid || (!withMid && len(got) != 0) {
			t.Errorf("order %v (mid offered: %v): answer's extmaps %v", order, withMid, got)
		}
		// Measurements need a second of media; no event tells when (polled).
		waitForCtx(ctx, t, func() bool {
			n := 0
			for _, s := range getStreams(t, srv.URL()) {
				if s.Name != stream {
					continue
				}
				for _, l := range s.Tracks {
					if l.Kind == "video" && l.Bitrate > 0 && l.Width > 0 {
						n++
					}
				}
			}
			return n == 3
		})
		for _, s := range getStreams(t, srv.URL()) {
			if s.Name != stream {
				continue
			}
			for _, l := range s.Tracks {
				t.Logf("order %v: layer %s %dx%d %d bit/s", order, l.ID, l.Width, l.Height, l.Bitrate)
			}
		}
		for layer, size := range sizes {
			v, err := client.Play(ctx, client.PlayConfig{ReceiveBuffer: testRcvBuf, URL: srv.URL() + "/whep/" + stream + "?layer=" + ridOf(layer), Loopback: true})
			if err != nil {
				t.Fatal(err)
			}
			waitForCtx(ctx, t, func() bool { return v.Stats().Video.Frames >= 10 })
			st := v.Stats().Video
			if st.Width != size[0] || st.Height != size[1] || !st.FirstPacketKeyframe {
				t.Errorf("order %v, pinned %s (rid %s): %dx%d first-packet-keyframe=%v, want %dx%d", order, layer, ridOf(layer), st.Width, st.Height, st.FirstPacketKeyframe, size[0], size[1])
			}
			if err := v.Close(); err != nil {
				t.Fatal(err)
			}
		}
		// An automatic viewer's ladder has the 1280x720 layer on top.
		v, err := client.Play(ctx, client.PlayConfig{ReceiveBuffer: testRcvBuf, URL: srv.URL() + "/whep/" + stream, Loopback: true})
		if err != nil {
			t.Fatal(err)
		}
		layerURL := srv.URL() + v.Location() + "/layer"
		if strings.HasPrefix(v.Location(), "http") {
			layerURL = v.Location() + "/layer"
		}
		if listing := layerList(t, layerURL); !strings.Contains(listing, `"active":[{"id":"`+ridOf("f")+`"`) {
			t.Errorf("order %v: layer listing does not rank %s (1280x720) first: %s", order, ridOf("f"), listing)
		}
		waitForCtx(ctx, t, func() bool { return v.Stats().Video.Frames >= 10 })
		if err := v.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
