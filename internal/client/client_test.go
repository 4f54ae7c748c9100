package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

// fakeServer is a TEST-ONLY stand-in for the hybridcast server (which lives
// in ingest/ and sfu/): a minimal pion WHIP + WHEP endpoint for one stream.
// It forwards the publisher's packets to every viewer unchanged except for
// SSRC and payload type, forwards viewers' PLIs to the publisher, and runs
// a videoAnalyzer on what the publisher sends. It lets this package test
// its clients against real pion peers on 127.0.0.1 without the server.
type fakeServer struct {
	t     *testing.T
	token string

	srv *httptest.Server

	video, audio *webrtc.TrackLocalStaticRTP
	analyzer     *videoAnalyzer
	frames       chan VideoFrame // frames received from the publisher

	mu       sync.Mutex
	closed   bool
	pcs      map[string]*webrtc.PeerConnection
	nextID   int
	pub      *webrtc.PeerConnection
	pubSSRC  uint32
	deletes  int
	wg       sync.WaitGroup
	lastAuth string
}

func newFakeServer(t *testing.T, token string) *fakeServer {
	t.Helper()
	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000}, "video", "fake")
	if err != nil {
		t.Fatal(err)
	}
	audio, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "fake")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{
		t: t, token: token, video: video, audio: audio,
		analyzer: newVideoAnalyzer(webrtc.MimeTypeH264, nil),
		frames:   make(chan VideoFrame, 4096),
		pcs:      map[string]*webrtc.PeerConnection{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /whip/{stream}", f.handleWHIP)
	mux.HandleFunc("POST /whep/{stream}", f.handleWHEP)
	mux.HandleFunc("DELETE /resource/{id}", f.handleDelete)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.close)
	return f
}

func (f *fakeServer) close() {
	f.srv.Close()
	f.mu.Lock()
	f.closed = true
	pcs := f.pcs
	f.pcs = nil
	f.mu.Unlock()
	for _, pc := range pcs {
		_ = pc.Close()
	}
	f.wg.Wait()
}

// goGuarded starts fn on f.wg unless the server is closing.
func (f *fakeServer) goGuarded(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.wg.Go(fn)
	}
}

func (f *fakeServer) newPC(w http.ResponseWriter, r *http.Request) (*webrtc.PeerConnection, string, bool) {
	f.mu.Lock()
	f.lastAuth = r.Header.Get("Authorization")
	f.mu.Unlock()
	if f.token != "" && r.Header.Get("Authorization") != "Bearer "+f.token {
		http.Error(w, "bad token", http.StatusUnauthorized)
		return nil, "", false
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/sdp" {
		http.Error(w, "want application/sdp, got "+ct, http.StatusUnsupportedMediaType)
		return nil, "", false
	}
	api, err := newAPI([]webrtc.RTPCodecParameters{h264Codec(102, "42e01f")}, true, true)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return nil, "", false
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return nil, "", false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		_ = pc.Close()
		http.Error(w, "closing", http.StatusServiceUnavailable)
		return nil, "", false
	}
	f.nextID++
	id := strconv.Itoa(f.nextID)
	f.pcs[id] = pc
	return pc, id, true
}

func (f *fakeServer) answer(w http.ResponseWriter, r *http.Request, pc *webrtc.PeerConnection, id string) {
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
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	<-gathered
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", "../resource/"+id) // relative, as servers may send
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, pc.LocalDescription().SDP)
}

func (f *fakeServer) handleWHIP(w http.ResponseWriter, r *http.Request) {
	pc, id, ok := f.newPC(w, r)
	if !ok {
		return
	}
	pc.OnTrack(func(track *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		out := f.audio
		if track.Kind() == webrtc.RTPCodecTypeVideo {
			out = f.video
			f.mu.Lock()
			f.pub, f.pubSSRC = pc, uint32(track.SSRC())
			f.mu.Unlock()
		}
		f.goGuarded(func() {
			for {
				pkt, _, err := track.ReadRTP()
				if err != nil {
					return
				}
				if track.Kind() == webrtc.RTPCodecTypeVideo {
					for _, fr := range f.analyzer.push(pkt, time.Now()) {
						select {
						case f.frames <- fr:
						default:
						}
					}
				}
				_ = out.WriteRTP(pkt)
			}
		})
	})
	f.answer(w, r, pc, id)
}

func (f *fakeServer) handleWHEP(w http.ResponseWriter, r *http.Request) {
	pc, id, ok := f.newPC(w, r)
	if !ok {
		return
	}
	for _, tr := range []*webrtc.TrackLocalStaticRTP{f.audio, f.video} {
		sender, err := pc.AddTrack(tr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		f.goGuarded(func() {
			for {
				pkts, _, err := sender.ReadRTCP()
				if err != nil {
					return
				}
				for _, p := range pkts {
					if _, ok := p.(*rtcp.PictureLossIndication); ok {
						f.sendPLI()
					}
				}
			}
		})
	}
	f.answer(w, r, pc, id)
}

// sendPLI asks the publisher for a keyframe.
func (f *fakeServer) sendPLI() {
	f.mu.Lock()
	pc, ssrc := f.pub, f.pubSSRC
	f.mu.Unlock()
	if pc == nil {
		return
	}
	if err := pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
		f.t.Errorf("send PLI: %v", err)
	}
}

func (f *fakeServer) handleDelete(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	pc := f.pcs[r.PathValue("id")]
	delete(f.pcs, r.PathValue("id"))
	if pc != nil {
		f.deletes++
	}
	f.mu.Unlock()
	if pc == nil {
		http.NotFound(w, r)
		return
	}
	_ = pc.Close()
	w.WriteHeader(http.StatusOK)
}

func (f *fakeServer) deleteCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deletes
}

// checkLeaks fails the test if goroutines started during it outlive it.
// It runs after every other cleanup (the fake server's included).
func checkLeaks(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

func loadTestClips(t *testing.T) (video, audio *Clip) {
	t.Helper()
	dir := mediaDir(t)
	video, err := LoadH264(filepath.Join(dir, "layer-q.h264"))
	if err != nil {
		t.Fatal(err)
	}
	audio, err = LoadOpus(filepath.Join(dir, "audio.ogg"))
	if err != nil {
		t.Fatal(err)
	}
	return video, audio
}

// nextFrame returns the next frame the fake server received.
func nextFrame(t *testing.T, ch <-chan VideoFrame) VideoFrame {
	t.Helper()
	select {
	case f := <-ch:
		return f
	case <-time.After(5 * time.Second):
		t.Fatal("no video frame for 5 s")
		return VideoFrame{}
	}
}

// TestPublishKeyframeOnPLI publishes to the fake server, waits until the
// stream is 5 frames into a GOP (the next natural keyframe is 25 frames
// away), sends one PLI and checks that the publisher answers with the next
// keyframe of the file at once: the first or (if one was in flight) second
// frame to arrive is a keyframe, and it is the one the publisher reports
// as requested.
func TestPublishKeyframeOnPLI(t *testing.T) {
	checkLeaks(t)
	video, audio := loadTestClips(t)
	srv := newFakeServer(t, "secret")
	sent := make(chan SentFrame, 4096)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pub, err := Publish(ctx, PublishConfig{
		URL: srv.srv.URL + "/whip/test", HTTPClient: srv.srv.Client(), Token: "secret", Video: video, Audio: audio, Loopback: true,
		OnFrameSent: func(f SentFrame) {
			select {
			case sent <- f:
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	// Find a keyframe, then let 5 more frames through.
	for !nextFrame(t, srv.frames).Keyframe {
	}
	for range 5 {
		if f := nextFrame(t, srv.frames); f.Keyframe || !f.Complete {
			t.Fatalf("unexpected frame %+v", f)
		}
	}
	srv.sendPLI()
	var got VideoFrame
	for i := range 2 {
		got = nextFrame(t, srv.frames)
		if got.Keyframe {
			break
		}
		if i == 1 {
			t.Fatal("no keyframe within 2 frames of the PLI")
		}
	}
	if !got.Complete {
		t.Fatalf("requested keyframe incomplete: %+v", got)
	}
	// The publisher saw the PLI and reports the keyframe it sent early.
	var req SentFrame
	for req = range sent {
		if req.Requested {
			break
		}
	}
	if req.Index != 30 || !req.Keyframe {
		t.Fatalf("requested frame %+v, want keyframe at index 30", req)
	}
	if req.Fingerprint != got.Fingerprint {
		t.Fatalf("fingerprints differ: sent %x, received %x", req.Fingerprint, got.Fingerprint)
	}
	st := pub.Stats()
	if st.PLIsReceived != 1 || st.RequestedKeyframes != 1 {
		t.Fatalf("publisher stats %+v", st)
	}
	if s := srv.analyzer.snapshot(); s.IncompleteFrames != 0 || s.Lost != 0 || s.Width != 320 || s.Height != 180 {
		t.Fatalf("server-side stats %+v", s)
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	if n := srv.deleteCount(); n != 1 {
		t.Fatalf("%d DELETEs, want 1", n)
	}
	srv.close()
}

// TestPublishPlay runs Publish → fake server → Play on 127.0.0.1 and checks
// the viewer's accounting, PLI on join, fingerprint matching for latency
// and the H.264 recording (with ffprobe when available).
func TestPublishPlay(t *testing.T) {
	checkLeaks(t)
	video, audio := loadTestClips(t)
	srv := newFakeServer(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var mu sync.Mutex
	sentAt := map[uint64]time.Time{}
	sentTS := map[uint64]uint32{}              // fingerprint → publisher RTP timestamp
	packetAt := map[uint32]map[int]time.Time{} // RTP timestamp → packet index → written
	pub, err := Publish(ctx, PublishConfig{
		URL: srv.srv.URL + "/whip/test", HTTPClient: srv.srv.Client(), Video: video, Audio: audio, Loopback: true,
		OnFrameSent: func(f SentFrame) {
			mu.Lock()
			sentAt[f.Fingerprint] = f.SentAt
			sentTS[f.Fingerprint] = f.Timestamp
			mu.Unlock()
		},
		OnPacketSent: func(ts uint32, i int, at time.Time) {
			mu.Lock()
			if packetAt[ts] == nil {
				packetAt[ts] = map[int]time.Time{}
			}
			packetAt[ts][i] = at
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	// Join mid-GOP so that the viewer has to ask for a keyframe.
	for range 10 {
		nextFrame(t, srv.frames)
	}

	rec := filepath.Join(t.TempDir(), "rec.h264")
	var latencies []time.Duration
	var stamped, badStamps int // packets with a kernel time; those outside (written, read]
	viewer, err := Play(ctx, PlayConfig{
		URL: srv.srv.URL + "/whep/test", HTTPClient: srv.srv.Client(), Loopback: true, RecordH264: rec, RequestKeyframes: true,
		KernelTimestamps: true,
		OnFrame: func(f VideoFrame) {
			mu.Lock()
			if at, ok := sentAt[f.Fingerprint]; ok {
				latencies = append(latencies, f.ReceivedAt.Sub(at))
			}
			if ts, ok := sentTS[f.Fingerprint]; ok && f.Complete && len(f.KernelAt) == f.Packets {
				for i, k := range f.KernelAt {
					w, ok := packetAt[ts][i]
					if !ok || k.IsZero() {
						continue
					}
					stamped++
					// The kernel has the packet after the publisher wrote
					// it and before the viewer read the frame's last one.
					if !k.After(w) || k.After(f.ReceivedAt) {
						badStamps++
					}
				}
			}
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer viewer.Close()

	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var st ViewerStats
	for range tick.C {
		st = viewer.Stats()
		if st.Video.DecodableFrames >= 45 && st.Audio.Packets >= 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("viewer stats after 10 s: %+v", st)
		}
	}
	v := st.Video
	if v.FirstWidth != 320 || v.FirstHeight != 180 || v.Lost != 0 || v.IncompleteFrames != 0 || v.MalformedPackets != 0 {
		t.Fatalf("video stats %+v", v)
	}
	if !v.FirstPacketKeyframe && v.PLIsSent == 0 {
		t.Fatalf("joined mid-GOP but sent no PLI: %+v", v)
	}
	if v.FirstKeyframeAt.IsZero() || v.FirstKeyframeAt.Sub(v.FirstPacketAt) > 2*time.Second {
		t.Fatalf("first keyframe %v after first packet", v.FirstKeyframeAt.Sub(v.FirstPacketAt))
	}
	if !strings.EqualFold(v.MimeType, webrtc.MimeTypeH264) || !strings.EqualFold(st.Audio.MimeType, webrtc.MimeTypeOpus) {
		t.Fatalf("codecs %s, %s", v.MimeType, st.Audio.MimeType)
	}
	if ps := pub.Stats(); ps.PLIsReceived == 0 && !v.FirstPacketKeyframe {
		t.Fatalf("publisher got no PLI: %+v", ps)
	}
	mu.Lock()
	matched := len(latencies)
	var worst time.Duration
	for _, l := range latencies {
		worst = max(worst, l)
	}
	nStamped, nBad := stamped, badStamps
	mu.Unlock()
	if matched < 40 || worst > 500*time.Millisecond {
		t.Fatalf("%d frames matched by fingerprint, worst latency %v", matched, worst)
	}
	if runtime.GOOS == "linux" && (nStamped < 40 || nBad > 0) {
		t.Fatalf("kernel receive times: %d packets stamped (want ≥ 40), %d not between the publisher's write and the viewer's read", nStamped, nBad)
	}
	t.Logf("viewer: %d decodable frames, %d audio packets, %d matched, worst latency %v", v.DecodableFrames, st.Audio.Packets, matched, worst)

	if err := viewer.Close(); err != nil {
		t.Fatal(err)
	}
	final := viewer.Stats().Video
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	if n := srv.deleteCount(); n != 2 {
		t.Fatalf("%d DELETEs, want 2", n)
	}
	srv.close()

	probe := ffprobe(t)
	out, err := exec.Command(probe, "-v", "error", "-count_frames", "-show_entries", "stream=codec_name,width,height,nb_read_frames",
		"-of", "default=nw=1", rec).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v: %s", err, out)
	}
	want := fmt.Sprintf("codec_name=h264\nwidth=320\nheight=180\nnb_read_frames=%d\n", final.DecodableFrames)
	if string(out) != want {
		t.Fatalf("ffprobe says\n%s\nwant\n%s", out, want)
	}
}

func TestSignallingErrors(t *testing.T) {
	video, _ := loadTestClips(t)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /forbidden", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "stream key rejected", http.StatusForbidden)
	})
	mux.HandleFunc("POST /nolocation", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusCreated)
	})
	mux.HandleFunc("POST /ok200", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, tc := range []struct {
		path   string
		status int
		is     error
	}{
		{"/forbidden", http.StatusForbidden, nil},
		{"/ok200", http.StatusOK, nil},
		{"/missing", http.StatusNotFound, nil},
		{"/nolocation", 0, ErrNoLocation},
	} {
		_, errPub := Publish(ctx, PublishConfig{URL: srv.URL + tc.path, Video: video, Loopback: true})
		_, errPlay := Play(ctx, PlayConfig{URL: srv.URL + tc.path, Loopback: true})
		for _, err := range []error{errPub, errPlay} {
			var he *HTTPError
			switch {
			case tc.is != nil && !errors.Is(err, tc.is):
				t.Errorf("%s: got %v, want %v", tc.path, err, tc.is)
			case tc.is == nil && (!errors.As(err, &he) || he.Status != tc.status):
				t.Errorf("%s: got %v, want HTTP %d", tc.path, err, tc.status)
			}
		}
		if tc.path == "/forbidden" && !strings.Contains(errPub.Error(), "stream key rejected") {
			t.Errorf("error %q lacks the body", errPub)
		}
	}
	if _, err := Publish(ctx, PublishConfig{URL: srv.URL}); !errors.Is(err, ErrNoMedia) {
		t.Errorf("no media: %v", err)
	}
}

func TestUnauthorized(t *testing.T) {
	video, _ := loadTestClips(t)
	srv := newFakeServer(t, "secret")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Publish(ctx, PublishConfig{URL: srv.srv.URL + "/whip/x", Token: "wrong", Video: video, Loopback: true})
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
		t.Fatalf("got %v, want HTTP 401", err)
	}
	srv.mu.Lock()
	auth := srv.lastAuth
	srv.mu.Unlock()
	if auth != "Bearer wrong" {
		t.Fatalf("Authorization %q", auth)
	}
}

func TestNextVideoFrame(t *testing.T) {
	keys := []int{0, 30, 60}
	for _, tc := range []struct {
		pos  int
		want bool
		out  int
	}{
		{5, false, 5},
		{5, true, 30},
		{30, true, 30},
		{31, true, 60},
		{61, true, 0}, // wraps to the first keyframe
		{0, true, 0},
	} {
		if got := nextVideoFrame(keys, tc.pos, tc.want); got != tc.out {
			t.Errorf("nextVideoFrame(%d, %v) = %d, want %d", tc.pos, tc.want, got, tc.out)
		}
	}
	if got := nextVideoFrame(nil, 7, true); got != 7 {
		t.Errorf("no keyframes: %d", got)
	}
}
