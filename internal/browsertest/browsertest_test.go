package browsertest_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/intervalpli"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/hybridcast/hybridcast/internal/browsertest"
)

// TestMain checks that no goroutine outlives the tests: the browser, the
// tabs, the page server and the stand-in must all stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const standInToken = "s3cret"

// h264 is the only video codec of the stand-in, so that the browser must
// send H.264, as it does to the real server.
var h264 = webrtc.RTPCodecCapability{
	MimeType:    webrtc.MimeTypeH264,
	ClockRate:   90000,
	SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
	RTCPFeedback: []webrtc.RTCPFeedback{
		{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"},
	},
}

// standIn is a minimal WHIP/WHEP endpoint written with pion. It is a stand-in
// for the real hybridcast server, which lives elsewhere: it exists only to
// prove this harness. It takes one publisher at a time, counts its RTP
// packets per kind and rid, and forwards the video of the single encoding
// (or of rid "h") to every WHEP viewer.
type standIn struct {
	t   testing.TB
	srv *httptest.Server

	video *webrtc.TrackLocalStaticRTP // what the viewers get

	mu        sync.Mutex
	pcs       map[string]*webrtc.PeerConnection // by resource id
	nextID    int
	counts    map[string]int // "audio", "video", "video/h", ...
	keyframe  func()         // asks the publisher for a keyframe; nil without publisher
	deletions int

	closing bool
	wg      sync.WaitGroup // the goroutines that read tracks and RTCP
}

func newStandIn(t testing.TB) *standIn {
	t.Helper()
	video, err := webrtc.NewTrackLocalStaticRTP(h264, "video", "standin")
	if err != nil {
		t.Fatal(err)
	}
	s := &standIn{t: t, video: video, pcs: map[string]*webrtc.PeerConnection{}, counts: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /whip", s.handleWHIP)
	mux.HandleFunc("POST /whep", s.handleWHEP)
	mux.HandleFunc("DELETE /resource/{id}", s.handleDelete)
	s.srv = httptest.NewServer(cors(mux))
	t.Cleanup(s.close)
	return s
}

// cors answers the preflight requests of the browser and lets it read the
// Location header. The page runs on another origin (the helper's server).
// Content-Type: application/sdp, Authorization and DELETE each need a
// preflight; "*" in Access-Control-Allow-Headers does not cover
// Authorization, so it is named.
func cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Expose-Headers", "Location")
		if r.Method == http.MethodOptions {
			h.Set("Access-Control-Allow-Methods", "POST, DELETE, PATCH, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// close stops the HTTP server first, so that no handler adds a session or a
// goroutine after it, then closes every session and waits for the goroutines.
func (s *standIn) close() {
	s.srv.Close() // waits for the handlers that run
	s.mu.Lock()
	s.closing = true
	pcs := s.pcs
	s.pcs = map[string]*webrtc.PeerConnection{}
	s.mu.Unlock()
	for _, pc := range pcs {
		_ = pc.Close()
	}
	s.wg.Wait()
}

// goTracked runs f in a goroutine that close waits for, unless close began.
func (s *standIn) goTracked(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closing {
		s.wg.Go(f)
	}
}

// newAPI returns a pion API with H.264 and Opus, the default interceptors,
// a PLI every second, and ICE on 127.0.0.1 only (TESTING.md §4).
func newAPI() (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: h264, PayloadType: 102}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, err
	}
	opus := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: opus, PayloadType: 111}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, err
	}
	pli, err := intervalpli.NewReceiverInterceptor(intervalpli.GeneratorInterval(time.Second))
	if err != nil {
		return nil, err
	}
	ir.Add(pli)
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// answer applies the offer in the body of r to pc, and writes the
// non-trickle answer with 201 Created and a Location.
func (s *standIn) answer(w http.ResponseWriter, r *http.Request, pc *webrtc.PeerConnection) {
	offer, err := io.ReadAll(r.Body)
	if err == nil {
		err = pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)})
	}
	var ans webrtc.SessionDescription
	if err == nil {
		ans, err = pc.CreateAnswer(nil)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err == nil {
		err = pc.SetLocalDescription(ans)
	}
	if err != nil {
		_ = pc.Close()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	select {
	case <-gathered:
	case <-r.Context().Done():
		_ = pc.Close()
		return
	}
	s.mu.Lock()
	s.nextID++
	id := fmt.Sprint(s.nextID)
	s.pcs[id] = pc
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", "/resource/"+id)
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, pc.LocalDescription().SDP)
}

func (s *standIn) handleWHIP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+standInToken {
		http.Error(w, "bad token", http.StatusUnauthorized)
		return
	}
	api, err := newAPI()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		s.goTracked(func() { s.readTrack(pc, tr) })
	})
	s.answer(w, r, pc)
}

// readTrack counts the packets of tr and forwards the video of the single
// encoding, or of rid "h", to the viewers.
func (s *standIn) readTrack(pc *webrtc.PeerConnection, tr *webrtc.TrackRemote) {
	key := tr.Kind().String()
	if tr.RID() != "" {
		key += "/" + tr.RID()
	}
	forward := tr.Kind() == webrtc.RTPCodecTypeVideo && (tr.RID() == "" || tr.RID() == "h")
	if forward {
		ssrc := uint32(tr.SSRC())
		s.mu.Lock()
		s.keyframe = func() {
			_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
		}
		s.mu.Unlock()
	}
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		if len(pkt.Payload) == 0 {
			continue // padding-only bandwidth probes
		}
		s.mu.Lock()
		s.counts[key]++
		s.mu.Unlock()
		if forward {
			_ = s.video.WriteRTP(pkt)
		}
	}
}

func (s *standIn) handleWHEP(w http.ResponseWriter, r *http.Request) {
	api, err := newAPI()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	sender, err := pc.AddTrack(s.video)
	if err != nil {
		_ = pc.Close()
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	// Forward the viewer's keyframe requests to the publisher, so that a
	// new viewer gets a picture at once.
	s.goTracked(func() {
		for {
			pkts, _, err := sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				switch p.(type) {
				case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
					s.mu.Lock()
					kf := s.keyframe
					s.mu.Unlock()
					if kf != nil {
						kf()
					}
				}
			}
		}
	})
	s.answer(w, r, pc)
}

func (s *standIn) handleDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	pc, ok := s.pcs[id]
	delete(s.pcs, id)
	if ok {
		s.deletions++
	}
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	_ = pc.Close()
	w.WriteHeader(http.StatusOK)
}

func (s *standIn) snapshot() (counts map[string]int, open, deletions int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	counts = make(map[string]int, len(s.counts))
	for k, v := range s.counts {
		counts[k] = v
	}
	return counts, len(s.pcs), s.deletions
}

// TestPublishPlay publishes from one tab through WHIP, plays in another tab
// through WHEP, and checks that the viewer decodes frames.
func TestPublishPlay(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	b := browsertest.New(t)
	si := newStandIn(t)

	pub, err := b.NewPage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A wrong token must give the status and the body of the answer.
	err = pub.Publish(ctx, si.srv.URL+"/whip", "wrong", false)
	if err == nil || !strings.Contains(err.Error(), "HTTP 401") || !strings.Contains(err.Error(), "bad token") {
		t.Fatalf("Publish with a wrong token: got %v, want an error with HTTP 401 and the body", err)
	}
	t.Logf("wrong token: %v", err)
	if err := pub.Publish(ctx, si.srv.URL+"/whip", standInToken, false); err != nil {
		t.Fatal(err)
	}
	ps, err := pub.WaitFor(ctx, func(s browsertest.Stats) bool {
		return s.Publisher != nil && s.Publisher.ConnectionState == "connected" && s.Publisher.Video[""].FramesEncoded > 0
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("publisher: %+v", *ps.Publisher)

	viewer, err := b.NewPage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := viewer.Play(ctx, si.srv.URL+"/whep"); err != nil {
		t.Fatal(err)
	}
	vs, err := viewer.WaitFor(ctx, func(s browsertest.Stats) bool {
		_, ok := s.Timings.FirstFrame()
		return s.Viewer != nil && s.Viewer.FramesDecoded >= 30 && ok
	})
	if err != nil {
		t.Fatal(err)
	}
	ff, _ := vs.Timings.FirstFrame()
	t.Logf("viewer after %v: %+v", time.Since(start).Round(time.Millisecond), *vs.Viewer)
	t.Logf("timings: %+v (first frame %v after Play)", vs.Timings, ff.Round(time.Millisecond))
	if vs.Viewer.FramesDecoded <= 0 || vs.Viewer.FrameWidth <= 0 {
		t.Errorf("viewer decoded %d frames of width %d, want > 0", vs.Viewer.FramesDecoded, vs.Viewer.FrameWidth)
	}
	if ff <= 0 || ff > 20*time.Second {
		t.Errorf("first frame after %v, want a measured time in (0, 20s]", ff)
	}

	if err := viewer.Stop(ctx); err != nil {
		t.Error(err)
	}
	if err := pub.Stop(ctx); err != nil {
		t.Error(err)
	}
	counts, open, deletions := si.snapshot()
	t.Logf("stand-in packets: %v", counts)
	if counts["audio"] == 0 || counts["video"] == 0 {
		t.Errorf("stand-in packets %v: want audio and video", counts)
	}
	if open != 0 || deletions != 2 {
		t.Errorf("stand-in has %d open sessions and %d deletions, want 0 and 2", open, deletions)
	}
}

// TestPublishSimulcast publishes three encodings and checks that each rid
// reaches the stand-in.
func TestPublishSimulcast(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	b := browsertest.New(t)
	si := newStandIn(t)

	pub, err := b.NewPage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, si.srv.URL+"/whip", standInToken, true); err != nil {
		t.Fatal(err)
	}
	ps, err := pub.WaitFor(ctx, func(s browsertest.Stats) bool {
		if s.Publisher == nil || s.Publisher.ConnectionState != "connected" {
			return false
		}
		for _, rid := range []string{"h", "m", "l"} {
			if s.Publisher.Video[rid].FramesEncoded < 10 {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, rid := range []string{"h", "m", "l"} {
		t.Logf("rid %s: %+v", rid, ps.Publisher.Video[rid])
	}
	if w := ps.Publisher.Video["h"].FrameWidth; w != 1280 {
		t.Errorf("rid h frame width %d, want 1280", w)
	}
	if err := pub.Stop(ctx); err != nil {
		t.Error(err)
	}
	counts, _, _ := si.snapshot()
	t.Logf("stand-in packets: %v", counts)
	for _, k := range []string{"audio", "video/h", "video/m", "video/l"} {
		if counts[k] == 0 {
			t.Errorf("stand-in got no %s packets: %v", k, counts)
		}
	}
}

// fakeTB records the Skip or Fatal call of New, and ends the goroutine as the
// real ones do.
type fakeTB struct {
	testing.TB
	mu      sync.Mutex
	skipped string
	fatal   string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Skip(args ...any) {
	f.mu.Lock()
	f.skipped = fmt.Sprint(args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Fatal(args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprint(args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Fatalf(format string, args ...any) { f.Fatal(fmt.Sprintf(format, args...)) }

// TestNewMissingBrowser checks that New skips without Chromium on a
// developer's machine, and fails in CI.
func TestNewMissingBrowser(t *testing.T) {
	for _, tc := range []struct {
		ci       string
		wantSkip bool
	}{{"", true}, {"false", true}, {"true", false}} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			f := &fakeTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				browsertest.New(f, browsertest.WithExecPath("/nonexistent/chromium"))
			}()
			<-done
			f.mu.Lock()
			defer f.mu.Unlock()
			msg := f.skipped
			if !tc.wantSkip {
				msg = f.fatal
			}
			if msg == "" || !strings.Contains(msg, "/nonexistent/chromium") {
				t.Errorf("skip %q, fatal %q; want a message about the missing browser in the %s", f.skipped, f.fatal,
					map[bool]string{true: "skip", false: "fatal"}[tc.wantSkip])
			}
			t.Logf("skip %q, fatal %q", f.skipped, f.fatal)
		})
	}
}
