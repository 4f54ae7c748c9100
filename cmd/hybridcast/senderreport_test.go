package main

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/sfu"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// TestViewerSenderReportsFollowPublisher publishes audio and video whose
// sender reports say the video was captured 150 ms before it was sent
// (an encoder's delay that audio does not have), and plays the stream
// with a pion viewer. The viewer's sender reports must keep that: a
// video packet's capture time by its report is 150 ms earlier, against its
// arrival, than an audio packet's by its own (RFC 3550 §6.4.1: lip sync
// is done with the reports). Reports made from the server's send times,
// as pion's interceptor makes them, put both at their arrival.
func TestViewerSenderReportsFollowPublisher(t *testing.T) {
	const videoDelay = 150 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := startServer(t)
	clip := loadClip(t, "layer-q.h264")
	audioClip := loadClip(t, "audio.ogg")

	// The publisher: no interceptors, so the only sender reports are ours.
	m := h264MediaEngine(t)
	opus := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: opus, PayloadType: 111}, webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	loopback := publisherSettings(func(ip net.IP) bool { return ip.IsLoopback() })
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(&interceptor.Registry{}), webrtc.WithSettingEngine(loopback))
	// Every reader goroutine below ends when its PeerConnection closes;
	// waited for after both have.
	var readers sync.WaitGroup
	defer readers.Wait()
	pub, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	video, err := webrtc.NewTrackLocalStaticRTP(testH264, "video", "sr")
	if err != nil {
		t.Fatal(err)
	}
	audio, err := webrtc.NewTrackLocalStaticRTP(opus, "audio", "sr")
	if err != nil {
		t.Fatal(err)
	}
	vs, err := pub.AddTrack(video)
	if err != nil {
		t.Fatal(err)
	}
	as, err := pub.AddTrack(audio)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := postWHIP(ctx, t, srv.URL()+"/whip/sr", gatheredOffer(t, pub))
	if err := pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*webrtc.RTPSender{vs, as} {
		readers.Go(func() { // drain RTCP (keyframe requests are answered by the clip's 1 s GOP)
			for {
				if _, _, err := s.ReadRTCP(); err != nil {
					return
				}
			}
		})
	}

	// Send both at their clock rates from one start, each packet's RTP
	// time its send time; every 200 ms a sender report for each, the
	// video's NTP time videoDelay earlier than the audio's for the same
	// moment.
	t0 := time.Now()
	const v0, a0 = 1000, 5000
	rtpAt := func(base uint32, rate float64, t time.Time) uint32 { return base + uint32(t.Sub(t0).Seconds()*rate) }
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	wg.Go(func() {
		pay := &codecs.H264Payloader{}
		var vseq, aseq uint16
		frame, lastReport := 0, time.Time{}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case now := <-tick.C:
				_ = audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: aseq, Timestamp: rtpAt(a0, 48000, now)},
					Payload: audioClip.Frames[i%len(audioClip.Frames)].Data})
				aseq++
				if i%2 == 0 { // 25 fps of the clip's frames
					f := clip.Frames[frame%len(clip.Frames)]
					frame++
					pls := pay.Payload(1200, f.Data)
					ts := rtpAt(v0, 90000, now)
					for k, pl := range pls {
						_ = video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: vseq, Timestamp: ts, Marker: k == len(pls)-1}, Payload: pl})
						vseq++
					}
				}
				if now.Sub(lastReport) >= 200*time.Millisecond {
					lastReport = now
					vssrc, assrc := uint32(vs.GetParameters().Encodings[0].SSRC), uint32(as.GetParameters().Encodings[0].SSRC)
					_ = pub.WriteRTCP([]rtcp.Packet{
						&rtcp.SenderReport{SSRC: vssrc, NTPTime: sfu.TimeToNTP(now.Add(-videoDelay)), RTPTime: rtpAt(v0, 90000, now)},
						&rtcp.SenderReport{SSRC: assrc, NTPTime: sfu.TimeToNTP(now), RTPTime: rtpAt(a0, 48000, now)},
					})
				}
			}
		}
	})

	// The viewer: pion, receive only, noting each packet's arrival and the
	// sender reports.
	vm := h264MediaEngine(t)
	if err := vm.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: opus, PayloadType: 111}, webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	viewer, err := webrtc.NewAPI(webrtc.WithMediaEngine(vm), webrtc.WithInterceptorRegistry(&interceptor.Registry{}), webrtc.WithSettingEngine(loopback)).
		NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer viewer.Close()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := viewer.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	type arrival struct {
		ts uint32
		at time.Time
	}
	var mu sync.Mutex
	got := map[webrtc.RTPCodecType][]arrival{}
	reports := map[webrtc.RTPCodecType]*rtcp.SenderReport{}
	viewer.OnTrack(func(tr *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		kind := tr.Kind()
		readers.Go(func() {
			for {
				pkts, _, err := r.ReadRTCP()
				if err != nil {
					return
				}
				for _, p := range pkts {
					if sr, ok := p.(*rtcp.SenderReport); ok {
						mu.Lock()
						reports[kind] = sr
						mu.Unlock()
					}
				}
			}
		})
		readers.Go(func() {
			for {
				p, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				mu.Lock()
				got[kind] = append(got[kind], arrival{p.Timestamp, time.Now()})
				mu.Unlock()
			}
		})
	})
	answer, _ = postWHIP(ctx, t, srv.URL()+"/whep/sr", gatheredOffer(t, viewer))
	if err := viewer.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}

	// Wait for two seconds of media and a report on each stream, then
	// judge the packets that came after the first second (the very first
	// frames may come from the track's history with caught-up timestamps).
	waitForCtx(ctx, t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got[webrtc.RTPCodecTypeAudio]) >= 100 && reports[webrtc.RTPCodecTypeVideo] != nil && reports[webrtc.RTPCodecTypeAudio] != nil
	})
	mu.Lock()
	defer mu.Unlock()
	// lag is each packet's arrival minus its capture time by the stream's
	// latest report; the median over the last second.
	lag := func(kind webrtc.RTPCodecType, rate float64) time.Duration {
		sr := reports[kind]
		ntp := sfu.NTPToTime(sr.NTPTime)
		pkts := got[kind]
		pkts = pkts[len(pkts)/2:]
		var d []time.Duration
		for _, p := range pkts {
			capture := ntp.Add(time.Duration(float64(int32(p.ts-sr.RTPTime)) / rate * float64(time.Second)))
			d = append(d, p.at.Sub(capture))
		}
		slices.Sort(d)
		return d[len(d)/2]
	}
	lv, la := lag(webrtc.RTPCodecTypeVideo, 90000), lag(webrtc.RTPCodecTypeAudio, 48000)
	t.Logf("arrival - capture by the viewer's sender reports: video %v, audio %v (publisher's video delay %v)", lv, la, videoDelay)
	if diff := lv - la; diff < videoDelay-10*time.Millisecond || diff > videoDelay+10*time.Millisecond {
		t.Fatalf("the viewer's reports put video %v behind audio, the publisher's %v", diff, videoDelay)
	}
}
