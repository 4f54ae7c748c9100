package main

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/internal/client"
	"github.com/hybridcast/hybridcast/sfu"
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
	return mungeVideo(t, offer, func(md *sdp.MediaDescription) {
		md.Attributes = slices.DeleteFunc(md.Attributes, func(a sdp.Attribute) bool { return a.Key == "ssrc" || a.Key == "ssrc-group" })
		group := "SIM"
		for _, l := range order {
			group += " " + strconv.FormatUint(uint64(ssrcLayers[l]), 10)
		}
		md.Attributes = append(md.Attributes, sdp.NewAttribute("ssrc-group", group))
		for _, l := range order {
			s := strconv.FormatUint(uint64(ssrcLayers[l]), 10)
			md.Attributes = append(md.Attributes, sdp.NewAttribute("ssrc", s+" cname:sim"), sdp.NewAttribute("ssrc", s+" msid:sim video"))
		}
	})
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
	m := h264MediaEngine(t)
	if withMid {
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.SDESMidURI}, webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatal(err)
		}
	}
	// An empty interceptor registry: pion's defaults would offer the RID
	// header extension, which such a publisher does not.
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(&interceptor.Registry{}),
		webrtc.WithSettingEngine(publisherSettings(func(ip net.IP) bool { return ip.IsLoopback() }))).
		NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	track := &ssrcSimTrack{}
	if _, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	body := ssrcSimOffer(t, gatheredOffer(t, pc), order)
	if strings.Contains(body, sdp.SDESRTPStreamIDURI) || strings.Contains(body, "a=rid") || strings.Contains(body, "transport-wide-cc") {
		t.Fatalf("the SSRC simulcast offer has RID or TWCC header extensions:\n%s", body)
	}
	answer, _ := postWHIP(ctx, t, url, body)
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
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
	return answer
}

// streamVideo lists the video layers of one stream in /api/streams.
func streamVideo(t testing.TB, base, stream string) []sfu.TrackEntry {
	t.Helper()
	var out []sfu.TrackEntry
	for _, s := range getStreams(t, base) {
		if s.Name == stream {
			out = append(out, videoLayers([]sfu.StreamStats{s})...)
		}
	}
	return out
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
			for _, l := range streamVideo(t, srv.URL(), stream) {
				if l.Bitrate > 0 && l.Width > 0 {
					n++
				}
			}
			return n == 3
		})
		for _, l := range streamVideo(t, srv.URL(), stream) {
			t.Logf("order %v: layer %s %dx%d %d bit/s", order, l.ID, l.Width, l.Height, l.Bitrate)
		}
		for layer, size := range sizes {
			checkPinned(ctx, t, srv.URL(), stream, ridOf(layer), size, fmt.Sprintf("order %v, layer %s", order, layer))
		}
		// An automatic viewer's ladder has the 1280x720 layer on top.
		v, err := client.Play(ctx, client.PlayConfig{ReceiveBuffer: testRcvBuf, URL: srv.URL() + "/whep/" + stream, Loopback: true})
		if err != nil {
			t.Fatal(err)
		}
		if listing := layerList(t, layerURL(srv.URL(), v)); !strings.Contains(listing, `"active":[{"id":"`+ridOf("f")+`"`) {
			t.Errorf("order %v: layer listing does not rank %s (1280x720) first: %s", order, ridOf("f"), listing)
		}
		waitForCtx(ctx, t, func() bool { return v.Stats().Video.Frames >= 10 })
		if err := v.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
