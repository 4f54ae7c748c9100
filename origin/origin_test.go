package origin

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/hybridcast/hybridcast/internal/client"
	"github.com/hybridcast/hybridcast/packager"
	"github.com/hybridcast/hybridcast/sfu"
)

// fill publishes ten seconds of the 720p test layer into a real packager
// through a real sfu track, as fast as it is packaged, and returns the
// packager with the stream "b" and its rendition "video".
func fill(tb testing.TB) (*packager.Packager, *packager.Rendition) {
	tb.Helper()
	clip, err := client.LoadClip(filepath.Join("..", "..", "shared", "media", "layer-f.h264"))
	if err != nil {
		tb.Fatalf("test media: %v", err)
	}
	reg := sfu.NewRegistry(nil)
	pk := packager.New(packager.Config{QueueSize: 1 << 16})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = pk.Run(ctx, reg); close(done) }()
	tb.Cleanup(func() { cancel(); <-done })
	pub, err := reg.RouterFor("b").Publish("p")
	if err != nil {
		tb.Fatal(err)
	}
	track, err := pub.AddTrack(sfu.TrackConfig{Info: sfu.TrackInfo{ID: "video", Kind: sfu.KindVideo, MimeType: "video/H264", ClockRate: 90000}})
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	track.SetSenderReport(sfu.SenderReport{NTPTime: uint64(now.Unix()+2208988800) << 32, RTPTime: 0, Arrival: now.Truncate(time.Second)})
	var rend *packager.Rendition
	for rend == nil { // the packager subscribes when it sees the track
		if s := pk.Stream("b"); s != nil {
			rend = s.Rendition("video")
		}
		time.Sleep(time.Millisecond)
	}
	pz := rtp.NewPacketizer(1200, 102, 1, &codecs.H264Payloader{}, rtp.NewFixedSequencer(1), 90000)
	for i := range 300 {
		f := clip.Frames[i%len(clip.Frames)]
		for _, p := range pz.Packetize(f.Data, 3000) {
			p.Timestamp = uint32(i * 3000)
			if err := track.WriteRTP(p); err != nil {
				tb.Fatal(err)
			}
		}
	}
	for { // wait until the packager has caught up: eight complete segments
		v := rend.View()
		if n, ok := v.LastComplete(); ok && n-v.Segments[0].MSN >= 7 {
			return pk, rend
		}
		select {
		case <-v.Changed:
		case <-time.After(10 * time.Second):
			tb.Fatalf("packager did not write 8 segments: %d", len(v.Segments))
		}
	}
}

// BenchmarkServePart measures the CPU of serving one part from memory:
// routing, lookup in the rendition's View, headers, copy into the
// response. The budget is 40 µs.
func BenchmarkServePart(b *testing.B) {
	pk, rend := fill(b)
	o := New(Config{Source: pk})
	v := rend.View()
	seg := v.Segments[len(v.Segments)/2]
	req := httptest.NewRequest("GET", fmt.Sprintf("/hls/b/video/%d.2.m4s", seg.MSN), nil)
	b.ReportAllocs()
	w := &discard{}
	for b.Loop() {
		w.reset()
		o.ServeHTTP(w, req)
		if w.code != http.StatusOK || w.n != len(seg.Parts[2].Data) {
			b.Fatalf("%d, %d bytes", w.code, w.n)
		}
	}
	b.SetBytes(int64(len(seg.Parts[2].Data)))
}

// discard is a ResponseWriter that counts what it is given: the benchmark
// measures the origin, not a recorder's buffer growth. The real server
// writes to a socket the same way.
type discard struct {
	h    http.Header
	code int
	n    int
}

func (d *discard) reset()              { d.h, d.code, d.n = http.Header{}, 0, 0 }
func (d *discard) Header() http.Header { return d.h }
func (d *discard) WriteHeader(c int)   { d.code = c }
func (d *discard) Write(b []byte) (int, error) {
	if d.code == 0 {
		d.code = http.StatusOK
	}
	d.n += len(b)
	return len(b), nil
}

// BenchmarkServePlaylist measures rendering and serving a media playlist.
func BenchmarkServePlaylist(b *testing.B) {
	pk, _ := fill(b)
	o := New(Config{Source: pk})
	req := httptest.NewRequest("GET", "/hls/b/video/index.m3u8", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		o.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}
