package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/internal/client"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// simulcastPublisher publishes the three H.264 test layers as one
// simulcast video (RID header extension), in the RID order given, with
// pion: the way OBS or a pion program sends simulcast.
type simulcastPublisher struct {
	pc     *webrtc.PeerConnection
	stop   chan struct{}
	wg     sync.WaitGroup
	loc    string
	silent map[string]*atomic.Bool // layers that stopped sending (silence)
}

// silence stops one layer's video, as a browser stops a layer when its
// uplink shrinks; the others go on.
func (p *simulcastPublisher) silence(rid string) { p.silent[rid].Store(true) }

func publishSimulcast(ctx context.Context, t testing.TB, url string, order []string) *simulcastPublisher {
	t.Helper()
	return publishSimulcastFrom(ctx, t, url, order, func(ip net.IP) bool { return ip.IsLoopback() })
}

// publishSimulcastFrom is publishSimulcast with ICE restricted to the
// addresses keep accepts.
func publishSimulcastFrom(ctx context.Context, t testing.TB, url string, order []string, keep func(net.IP) bool) *simulcastPublisher {
	t.Helper()
	return publishSimulcastOpts(ctx, t, url, order, keep, false)
}

// publishSimulcastAV publishes the three layers and the Opus test clip.
func publishSimulcastAV(ctx context.Context, t testing.TB, url string) *simulcastPublisher {
	t.Helper()
	return publishSimulcastOpts(ctx, t, url, []string{"f", "h", "q"}, func(ip net.IP) bool { return ip.IsLoopback() }, true)
}

// publishLadder publishes the simulcast ladder with audio to srv as stream
// and waits until its multivariant playlist lists the three variants.
func publishLadder(ctx context.Context, t testing.TB, srv *server, stream string) *simulcastPublisher {
	t.Helper()
	pub := publishSimulcastAV(ctx, t, srv.URL()+"/whip/"+stream)
	waitVariants(t, srv.URL()+"/hls/"+stream+"/index.m3u8", 3)
	return pub
}

func publishSimulcastOpts(ctx context.Context, t testing.TB, url string, order []string, keep func(net.IP) bool, withAudio bool) *simulcastPublisher {
	t.Helper()
	files := map[string]string{"f": "layer-f.h264", "h": "layer-h.h264", "q": "layer-q.h264"}
	clips := map[string]*client.Clip{}
	for _, rid := range order {
		clips[rid] = loadClip(t, files[rid])
	}
	m := h264MediaEngine(t)
	codec := testH264
	var audioClip *client.Clip
	if withAudio {
		audioClip = loadClip(t, "audio.ogg")
		if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111},
			webrtc.RTPCodecTypeAudio); err != nil {
			t.Fatal(err)
		}
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil { // includes the simulcast header extensions
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(publisherSettings(keep))).
		NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	tracks := map[string]*ridTrack{}
	var sender *webrtc.RTPSender
	for i, rid := range order {
		tr := newRIDTrack(codec, rid)
		tracks[rid] = tr
		if i == 0 {
			if sender, err = pc.AddTrack(tr); err != nil {
				t.Fatal(err)
			}
		} else if err := sender.AddEncoding(tr); err != nil {
			t.Fatal(err)
		}
	}
	var audio *webrtc.TrackLocalStaticSample
	if withAudio {
		if audio, err = webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2},
			"audio", "sim"); err != nil {
			t.Fatal(err)
		}
		if _, err = pc.AddTrack(audio); err != nil {
			t.Fatal(err)
		}
	}
	offer := gatheredOffer(t, pc)
	if !strings.Contains(offer, "a=simulcast:send "+strings.Join(order, ";")) {
		t.Fatalf("offer lacks simulcast in order %v:\n%s", order, offer)
	}
	answer, loc := postWHIP(ctx, t, url, offer)
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	p := &simulcastPublisher{pc: pc, stop: make(chan struct{}), loc: loc, silent: map[string]*atomic.Bool{}}
	for _, rid := range order {
		p.silent[rid] = new(atomic.Bool)
	}
	// Answer keyframe requests at once, per layer, as a browser does: the
	// layer asked for jumps to the next IDR of its file.
	for _, rid := range order {
		p.wg.Go(func() {
			for {
				pkts, _, err := sender.ReadSimulcastRTCP(rid)
				if err != nil {
					return
				}
				for _, pkt := range pkts {
					switch pkt.(type) {
					case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
						tracks[rid].keyframeWanted.Store(true)
					}
				}
			}
		})
	}
	if audio != nil {
		p.wg.Go(func() { // Opus at its own pace, 20 ms a packet
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-p.stop:
					return
				case <-tick.C:
				}
				f := audioClip.Frames[i%len(audioClip.Frames)]
				_ = audio.WriteSample(media.Sample{Data: f.Data, Duration: time.Duration(f.Duration) * time.Second / 48000})
			}
		})
	}
	p.wg.Go(func() { // one clock for all layers: frame i of every layer together
		tick := time.NewTicker(time.Second / 30)
		defer tick.Stop()
		pos := map[string]int{}
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			for _, rid := range order {
				frames := clips[rid].Frames
				if tracks[rid].keyframeWanted.Swap(false) {
					for !frames[pos[rid]%len(frames)].Keyframe {
						pos[rid]++
					}
				}
				f := frames[pos[rid]%len(frames)]
				pos[rid]++
				if !p.silent[rid].Load() {
					tracks[rid].writeFrame(f.Data, uint32(i*3000))
				}
			}
		}
	})
	t.Cleanup(p.close)
	return p
}

// testH264 is the codec the pion test publishers send: H.264 constrained
// baseline, packetization-mode 1, with NACK and PLI.
var testH264 = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
	SDPFmtpLine:  "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
	RTCPFeedback: []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}}}

// h264MediaEngine registers testH264 as payload type 102.
func h264MediaEngine(t testing.TB) *webrtc.MediaEngine {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: testH264, PayloadType: 102}, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	return m
}

// publisherSettings keeps a pion test publisher on UDP4 addresses that
// keep accepts, loopback included, without mDNS.
func publisherSettings(keep func(net.IP) bool) webrtc.SettingEngine {
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(keep)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return se
}

// gatheredOffer makes pc's offer, sets it and returns it with all its ICE
// candidates.
func gatheredOffer(t testing.TB, pc *webrtc.PeerConnection) string {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	return pc.LocalDescription().SDP
}

// postWHIP publishes an offer with the test token and returns the answer
// and the session's Location; anything but 201 fails the test.
func postWHIP(ctx context.Context, t testing.TB, url, offer string) (answer, location string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(offer))
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+testToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 201 {
		t.Fatalf("WHIP: %d %s", res.StatusCode, b)
	}
	return string(b), res.Header.Get("Location")
}

// checkPinned plays a stream pinned to one layer and checks that the
// viewer's first packet is a keyframe and its pictures have the size want.
func checkPinned(ctx context.Context, t *testing.T, base, stream, layer string, want [2]int, label string) {
	t.Helper()
	v, err := client.Play(ctx, client.PlayConfig{ReceiveBuffer: testRcvBuf, URL: base + "/whep/" + stream + "?layer=" + layer, Loopback: true})
	if err != nil {
		t.Fatal(err)
	}
	waitForCtx(ctx, t, func() bool { return v.Stats().Video.Frames >= 10 })
	st := v.Stats().Video
	if st.Width != want[0] || st.Height != want[1] || !st.FirstPacketKeyframe {
		t.Errorf("%s, pinned %s: %dx%d first-packet-keyframe=%v, want %dx%d", label, layer, st.Width, st.Height, st.FirstPacketKeyframe, want[0], want[1])
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
}

// layerURL is the WHEP layer extension's URL of a viewer.
func layerURL(base string, v *client.Viewer) string {
	if strings.HasPrefix(v.Location(), "http") {
		return v.Location() + "/layer"
	}
	return base + v.Location() + "/layer"
}

func (p *simulcastPublisher) close() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	_ = p.pc.Close()
	p.wg.Wait()
}

// topLayer returns the best-ranked active layer as the layer extension lists it.
func layerList(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

func selectLayer(t *testing.T, url, body string) int {
	t.Helper()
	res, err := http.Post(url, "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// TestPionSimulcastLayers: three H.264 layers from a pion publisher, in
// both RID orders: the server ranks them by measurement (the same top layer
// either way); a viewer pinned to each layer gets its resolution; a viewer
// switched f → q → h through the WHEP layer extension changes resolution
// each time without ever getting an undecodable frame.
func TestPionSimulcastLayers(t *testing.T) {
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	sizes := map[string][2]int{"f": {1280, 720}, "h": {640, 360}, "q": {320, 180}}

	for i, order := range [][]string{{"q", "h", "f"}, {"f", "h", "q"}} {
		stream := fmt.Sprintf("order%d", i)
		publishSimulcast(ctx, t, srv.URL()+"/whip/"+stream, order)
		// Measurements need a second of media; no event tells when (polled).
		waitForCtx(ctx, t, func() bool {
			ls := videoLayers(getStreams(t, srv.URL()))
			n := 0
			for _, l := range ls {
				if strings.HasPrefix(l.ID, "video-") && l.Bitrate > 0 && l.Width > 0 {
					n++
				}
			}
			return n >= 3*(i+1)
		})
		for rid, size := range sizes {
			checkPinned(ctx, t, srv.URL(), stream, rid, size, fmt.Sprintf("order %v", order))
		}
		// The listing ranks by measurement: f first whatever the offer order.
		listing := ""
		v, err := client.Play(ctx, client.PlayConfig{ReceiveBuffer: testRcvBuf, URL: srv.URL() + "/whep/" + stream, Loopback: true})
		if err != nil {
			t.Fatal(err)
		}
		layerURL := layerURL(srv.URL(), v)
		listing = layerList(t, layerURL)
		if !strings.Contains(listing, `"active":[{"id":"f"`) {
			t.Errorf("order %v: layer listing does not rank f first: %s", order, listing)
		}
		if i == 1 {
			var switchTimes []time.Duration
			defer func() { t.Logf("switch times: %v", switchTimes) }()
			// A switch starts from a picture: wait for the first frame. (A pin
			// that reaches the server before the viewer has subscribed is its
			// join, held to the join throttle: up to 500 ms.)
			waitForCtx(ctx, t, func() bool { return v.Stats().Video.DecodableFrames > 0 })
			// Switch f → q → h by hand.
			for _, rid := range []string{"f", "q", "h"} {
				if code := selectLayer(t, layerURL, `{"encodingId":"`+rid+`"}`); code != 200 {
					t.Fatalf("select %s: %d", rid, code)
				}
				start := time.Now()
				// Polled every 50 ms: the figure is rounded up to that.
				waitForCtx(ctx, t, func() bool { return v.Stats().Video.Width == sizes[rid][0] })
				took := time.Since(start)
				t.Logf("switched to %s in %v (request → first frame of the new layer at the viewer)", rid, took.Round(10*time.Millisecond))
				switchTimes = append(switchTimes, took)
			}
			if code := selectLayer(t, layerURL, `{"encodingId":"nope"}`); code != 400 {
				t.Errorf("unknown layer: %d, want 400", code)
			}
			if code := selectLayer(t, layerURL, `{}`); code != 200 {
				t.Errorf("back to automatic: %d, want 200", code)
			}
			// A switch happens at the new layer's keyframe; the old layer's
			// frame in flight at that moment is cut short (as in every SFU)
			// and the decoder drops it. So at most one incomplete frame per
			// switch, never a lost packet, and every other frame decodes: the
			// decoder never sees a P-frame without its keyframe.
			const switches = 3
			st := v.Stats().Video
			if st.Lost != 0 || st.IncompleteFrames > switches || st.DecodableFrames+st.IncompleteFrames != st.Frames {
				t.Errorf("across %d switches: %d frames, %d decodable, %d incomplete, %d lost packets", switches, st.Frames, st.DecodableFrames, st.IncompleteFrames, st.Lost)
			}
		}
		if err := v.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// ridTrack is a simulcast encoding that tags its packets with the mid and
// rid header extensions (RFC 8852), as browsers do. pion's own
// TrackLocalStaticSample announces the rid in SDP but does not tag packets,
// so a receiver cannot tell the layers apart.
type ridTrack struct {
	codec webrtc.RTPCodecCapability
	rid   string

	keyframeWanted atomic.Bool // a PLI/FIR arrived for this layer

	mu           sync.Mutex
	w            webrtc.TrackLocalWriter
	ssrc         uint32
	pt           uint8
	midID, ridID uint8
	mid          string
	pz           rtp.Packetizer
}

func newRIDTrack(c webrtc.RTPCodecCapability, rid string) *ridTrack {
	return &ridTrack{codec: c, rid: rid, mid: "0"}
}

func (r *ridTrack) ID() string                { return "video" }
func (r *ridTrack) RID() string               { return r.rid }
func (r *ridTrack) StreamID() string          { return "sim" }
func (r *ridTrack) Kind() webrtc.RTPCodecType { return webrtc.RTPCodecTypeVideo }

func (r *ridTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := ctx.CodecParameters()[0]
	r.w, r.ssrc, r.pt = ctx.WriteStream(), uint32(ctx.SSRC()), uint8(c.PayloadType)
	for _, e := range ctx.HeaderExtensions() {
		switch e.URI {
		case sdp.SDESMidURI:
			r.midID = uint8(e.ID)
		case sdp.SDESRTPStreamIDURI:
			r.ridID = uint8(e.ID)
		}
	}
	r.pz = rtp.NewPacketizer(1200, r.pt, r.ssrc, &codecs.H264Payloader{}, rtp.NewRandomSequencer(), 90000)
	return c, nil
}

func (r *ridTrack) Unbind(webrtc.TrackLocalContext) error {
	r.mu.Lock()
	r.w = nil
	r.mu.Unlock()
	return nil
}

// writeFrame sends one access unit with timestamp ts (the same for every layer).
func (r *ridTrack) writeFrame(au []byte, ts uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w == nil {
		return
	}
	for _, p := range r.pz.Packetize(au, 0) {
		p.Timestamp = ts
		if r.midID != 0 {
			_ = p.SetExtension(r.midID, []byte(r.mid))
		}
		if r.ridID != 0 {
			_ = p.SetExtension(r.ridID, []byte(r.rid))
		}
		_, _ = r.w.WriteRTP(&p.Header, p.Payload)
	}
}
