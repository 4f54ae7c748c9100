package main

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/internal/client"
	"github.com/hybridcast/hybridcast/sfu"
	"go.uber.org/goleak"
)

// mediaPath resolves a file of ../shared/media from the repository.
func mediaPath(t testing.TB, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "..", "shared", "media", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func loadClip(t testing.TB, name string) *client.Clip {
	t.Helper()
	c, err := client.LoadClip(mediaPath(t, name))
	if err != nil {
		t.Fatalf("test media: %v (the tests need ../shared/media beside the repository)", err)
	}
	return c
}

// sendLog records the publisher's frames in send order. Fingerprints repeat
// when the clip loops; a received frame maps to the latest send of its
// fingerprint, which is right because a frame is logged before it is sent.
type sendLog struct {
	mu      sync.Mutex
	bySeq   []client.SentFrame
	latest  map[uint64]int
	onCount map[int]chan struct{}
}

func newSendLog() *sendLog {
	return &sendLog{latest: map[uint64]int{}, onCount: map[int]chan struct{}{}}
}

func (l *sendLog) add(f client.SentFrame) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.latest[f.Fingerprint] = len(l.bySeq)
	l.bySeq = append(l.bySeq, f)
	if ch, ok := l.onCount[len(l.bySeq)]; ok {
		close(ch)
		delete(l.onCount, len(l.bySeq))
	}
}

func (l *sendLog) seq(fp uint64) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.latest[fp]
	return s, ok
}

func (l *sendLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.bySeq)
}

// reached returns a channel closed once n frames have been sent.
func (l *sendLog) reached(n int) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch := make(chan struct{})
	if len(l.bySeq) >= n {
		close(ch)
		return ch
	}
	l.onCount[n] = ch
	return ch
}

// recvLog is one viewer's received frames, by publisher send sequence.
type recvLog struct {
	mu        sync.Mutex
	first     int // send sequence of the first frame, -1 before
	firstKey  bool
	decodable map[int]bool
	unknown   int
	target    int
	reached   chan struct{}
	once      sync.Once
}

func newRecvLog() *recvLog {
	return &recvLog{first: -1, decodable: map[int]bool{}, target: -1, reached: make(chan struct{})}
}

func (r *recvLog) onFrame(sends *sendLog) func(client.VideoFrame) {
	return func(f client.VideoFrame) {
		seq, ok := sends.seq(f.Fingerprint)
		r.mu.Lock()
		defer r.mu.Unlock()
		if !ok {
			r.unknown++
			return
		}
		if r.first < 0 {
			r.first, r.firstKey = seq, f.Keyframe && f.Decodable
		}
		if f.Decodable {
			r.decodable[seq] = true
		}
		if r.target >= 0 && seq >= r.target {
			r.once.Do(func() { close(r.reached) })
		}
	}
}

func (r *recvLog) setTarget(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.target = n
	for seq := range r.decodable {
		if seq >= n {
			r.once.Do(func() { close(r.reached) })
		}
	}
}

// TestPionFanout20: a pion WHIP publisher (H.264 + Opus test media) → the
// server → 20 pion WHEP viewers over loopback. Every viewer starts at a
// keyframe and decodes at least 99 % of the frames sent after its first one.
func TestPionFanout20(t *testing.T) {
	const viewers, framesAfterJoin, margin = 20, 120, 15
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	sends := newSendLog()
	pub, err := client.Publish(ctx, client.PublishConfig{
		URL: srv.URL() + "/whip/fan", Token: testToken, Loopback: true,
		Video: loadClip(t, "layer-h.h264"), Audio: loadClip(t, "audio.ogg"),
		OnFrameSent: sends.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	logs := make([]*recvLog, viewers)
	views := make([]*client.Viewer, viewers)
	for i := range viewers {
		logs[i] = newRecvLog()
		v, err := client.Play(ctx, client.PlayConfig{
			ReceiveBuffer: testRcvBuf, URL: srv.URL() + "/whep/fan", Loopback: true, RequestKeyframes: true, OnFrame: logs[i].onFrame(sends),
		})
		if err != nil {
			t.Fatalf("viewer %d: %v", i, err)
		}
		views[i] = v
		defer v.Close()
	}
	target := sends.count() + framesAfterJoin
	for _, l := range logs {
		l.setTarget(target)
	}
	select {
	case <-sends.reached(target + margin):
	case <-ctx.Done():
		t.Fatal("publisher did not send its frames in time")
	}
	for i, l := range logs {
		select {
		case <-l.reached:
		case <-time.After(5 * time.Second):
			t.Errorf("viewer %d never received frame %d", i, target)
		}
	}

	// The API lists every viewer with what it was sent.
	streams := getStreams(t, srv.URL())
	if len(streams) != 1 || len(streams[0].ViewerList) != viewers || streams[0].Viewers != viewers {
		t.Fatalf("/api/streams: %+v", streams)
	}
	for _, v := range streams[0].ViewerList {
		// Every viewer here connects over UDP with setup:actpass: all take
		// the direct send path (sfu/rtc), and decode what it sent.
		if v.Packets == 0 || v.LayerSwitches != 1 || v.SendPath != "direct" {
			t.Errorf("viewer %s in the API: %+v", v.ID, v)
		}
	}

	for i, l := range logs {
		l.mu.Lock()
		st := views[i].Stats().Video
		if !st.FirstPacketKeyframe || !l.firstKey {
			t.Errorf("viewer %d: first packet keyframe=%v, first frame decodable keyframe=%v", i, st.FirstPacketKeyframe, l.firstKey)
		}
		want := target - l.first + 1
		got := 0
		for seq := l.first; seq <= target; seq++ {
			if l.decodable[seq] {
				got++
			}
		}
		ratio := float64(got) / float64(want)
		if ratio < 0.99 {
			t.Errorf("viewer %d: decoded %d of %d frames sent after its first (%.1f %%), lost %d packets", i, got, want, 100*ratio, st.Lost)
		}
		if i == 0 || ratio < 1 {
			t.Logf("viewer %d: first frame #%d, decoded %d/%d (%.2f %%), %dx%d, lost %d packets, audio %d packets",
				i, l.first, got, want, 100*ratio, st.Width, st.Height, st.Lost, views[i].Stats().Audio.Packets)
		}
		l.mu.Unlock()
	}
	t.Logf("publisher: %+v", pub.Stats())
}

// TestViewersJoinAndLeaveWithoutLeaks: 100 WHEP viewers join and leave;
// afterwards the server has no viewer session and no goroutine more than
// before they came.
func TestViewersJoinAndLeaveWithoutLeaks(t *testing.T) {
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	pub, err := client.Publish(ctx, client.PublishConfig{
		URL: srv.URL() + "/whip/leak", Token: testToken, Loopback: true,
		Video: loadClip(t, "layer-q.h264"), Audio: loadClip(t, "audio.ogg"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	httpc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	// The publisher's read loops start with its first packets.
	waitFor(t, func() bool {
		r := srv.registry.Router("leak")
		return r != nil && len(r.Stats().Tracks) == 2
	})
	before := goleak.IgnoreCurrent()

	const total, parallel = 100, 10
	for batch := 0; batch < total/parallel; batch++ {
		var wg sync.WaitGroup
		errs := make(chan error, parallel)
		for range parallel {
			wg.Go(func() {
				v, err := client.Play(ctx, client.PlayConfig{ReceiveBuffer: testRcvBuf, URL: srv.URL() + "/whep/leak", Loopback: true, HTTPClient: httpc})
				if err != nil {
					errs <- err
					return
				}
				select {
				case <-v.VideoStarted():
				case <-ctx.Done():
				}
				errs <- v.Close()
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, func() bool { return srv.whep.Sessions() == 0 })
	if n := srv.registry.Router("leak").Stats().Viewers; n != 0 {
		t.Fatalf("router still counts %d viewers", n)
	}
	// The packager stays subscribed to every track (one subscriber each).
	if subs := srv.registry.Router("leak").Stats().Tracks[1].Subscribers; subs != 1 {
		t.Fatalf("video track has %d subscribers, want 1 (the packager)", subs)
	}
	goleak.VerifyNone(t, before)
}

// getStreams reads GET /api/streams of the server at base.
func getStreams(t testing.TB, base string) []sfu.StreamStats {
	t.Helper()
	res, err := http.Get(base + "/api/streams")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		Streams []sfu.StreamStats `json:"streams"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return body.Streams
}
