package packager

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/hybridcast/hybridcast/internal/client"
	"github.com/hybridcast/hybridcast/sfu"
)

// loadLayer loads a test clip of ../shared/media, e.g. "layer-q.h264".
func loadLayer(tb testing.TB, name string) *client.Clip {
	tb.Helper()
	clip, err := client.LoadClip(filepath.Join("..", "..", "shared", "media", name))
	if err != nil {
		tb.Fatalf("test media: %v (needs ../shared/media beside the repository)", err)
	}
	return clip
}

// clipPackets packetizes the 720p test layer into RTP packets, frame by
// frame, as the SFU hands them to subscribers.
func clipPackets(tb testing.TB, name string) [][]*sfu.Packet {
	tb.Helper()
	clip := loadLayer(tb, name)
	pz := rtp.NewPacketizer(1200, 102, 1, &codecs.H264Payloader{}, rtp.NewFixedSequencer(1), 90000)
	var seq uint64
	out := make([][]*sfu.Packet, len(clip.Frames))
	for i, f := range clip.Frames {
		for j, p := range pz.Packetize(f.Data, 3000) {
			out[i] = append(out[i], &sfu.Packet{Packet: *p, Seq: seq, Keyframe: f.Keyframe && j == 0})
			seq++
		}
	}
	return out
}

// BenchmarkPackageFrame measures RTP → CMAF for one 720p frame (about 2.5
// Mbit/s at 30 fps): reorder, depacketize, cut, write the chunk, publish
// the part. The budget is 0.5 % of a core per rendition, which at
// 30 fps is 166 µs per frame.
func BenchmarkPackageFrame(b *testing.B) {
	frames := clipPackets(b, "layer-f.h264")
	p := New(Config{})
	s := p.stream("bench")
	pub := s.newPublication()
	defer pub.close()
	pl := trackPipeline(b, pub, h264Track("video"), time.Now())
	var ts uint32
	var seq uint64
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		for _, pkt := range frames[i%len(frames)] {
			pkt.Timestamp, pkt.Seq = ts, seq
			seq++
			_ = pl.WriteRTP(pkt)
		}
		ts += 3000
		i++
	}
	b.StopTimer()
	if v := pl.rend.View(); b.N > 300 && len(v.Segments) == 0 {
		b.Fatal("no segment was written")
	}
}

// h264Track describes an H.264 video track with the given id.
func h264Track(id string) sfu.TrackInfo {
	return sfu.TrackInfo{ID: id, Kind: sfu.KindVideo, MimeType: "video/H264", ClockRate: 90000}
}

// trackPipeline makes a track described by info, whose sender report maps
// RTP time 0 to t0, and its pipeline in pub; the track closes when the
// test ends.
func trackPipeline(tb testing.TB, pub *publication, info sfu.TrackInfo, t0 time.Time) *pipeline {
	tb.Helper()
	track := sfu.NewTrack(sfu.TrackConfig{Info: info})
	tb.Cleanup(track.Close)
	track.SetSenderReport(sfu.SenderReport{NTPTime: toNTP(t0), RTPTime: 0, Arrival: t0})
	return newPipeline(pub, pub.s.rendition(track), track, info.Kind == sfu.KindVideo)
}

func toNTP(t time.Time) uint64 {
	const ntpToUnix = 2208988800
	secs := uint64(t.Unix() + ntpToUnix)
	frac := uint64(t.Nanosecond()) << 32 / uint64(time.Second)
	return secs<<32 | frac
}
