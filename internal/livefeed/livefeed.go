// Package livefeed publishes an H.264 test clip into an sfu.Registry in
// real time (30 frames a second, with an RTCP sender report), as a WHIP
// publisher would, but without WebRTC: for tests and benchmarks of what
// sits behind the SFU (packager, origin, caches).
package livefeed

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/hybridcast/hybridcast/internal/client"
	"github.com/hybridcast/hybridcast/sfu"
)

// Publish makes stream's publication with one video track "video" and
// feeds clip into it, looping, until stop is called; stop ends the
// publication and waits for the feeding goroutine.
func Publish(reg *sfu.Registry, stream string, clip *client.Clip) (stop func(), err error) {
	if len(clip.Frames) == 0 {
		return nil, fmt.Errorf("livefeed: clip %s has no frames", clip.Path)
	}
	pub, err := reg.RouterFor(stream).Publish("livefeed")
	if err != nil {
		return nil, err
	}
	track, err := pub.AddTrack(sfu.TrackConfig{Info: sfu.TrackInfo{ID: "video", Kind: sfu.KindVideo, MimeType: "video/H264", ClockRate: 90000}})
	if err != nil {
		pub.Close()
		return nil, err
	}
	start := time.Now()
	track.SetSenderReport(sfu.SenderReport{NTPTime: sfu.TimeToNTP(start), RTPTime: 0, Arrival: start, ServerTime: start})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		pz := rtp.NewPacketizer(1200, 102, 1, &codecs.H264Payloader{}, rtp.NewFixedSequencer(1), 90000)
		tick := time.NewTicker(time.Second / 30)
		defer tick.Stop()
		for i := 0; ; {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			// Every frame that is due by now, not one per tick: a ticker
			// drops ticks when this goroutine runs late (a busy machine),
			// and the stream would fall behind the wall clock that its
			// sender report ties it to, as no camera does.
			for due := int(time.Since(start) * 30 / time.Second); i <= due; i++ {
				f := clip.Frames[i%len(clip.Frames)]
				for _, p := range pz.Packetize(f.Data, 3000) {
					p.Timestamp = uint32(i * 3000)
					_ = track.WriteRTP(p)
				}
			}
		}
	})
	return sync.OnceFunc(func() { cancel(); wg.Wait(); pub.Close() }), nil
}
