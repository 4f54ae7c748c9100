// Command viewer plays a stream from a WHEP endpoint, prints what arrives
// every second and a final report.
//
//	go run ./examples/viewer -url http://127.0.0.1:8080/whep/demo -duration 10s
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hybridcast/hybridcast/internal/client"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "viewer:", err)
		os.Exit(1)
	}
}

func run() error {
	url := flag.String("url", "http://127.0.0.1:8080/whep/demo", "WHEP endpoint URL")
	token := flag.String("token", "", "bearer token for the Authorization header")
	duration := flag.Duration("duration", 0, "how long to play; 0 plays until interrupted")
	record := flag.String("record", "", "write decodable H.264 to this Annex-B file")
	pli := flag.Bool("pli", true, "ask for a keyframe while the picture is broken")
	loopback := flag.Bool("loopback", false, "use only 127.0.0.1 ICE candidates")
	verbose := flag.Bool("v", false, "debug logging")
	flag.Parse()

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	start := time.Now()
	v, err := client.Play(ctx, client.PlayConfig{
		URL: *url, Token: *token, Loopback: *loopback, Logger: log,
		RecordH264: *record, RequestKeyframes: *pli,
	})
	if err != nil {
		return err
	}
	connected := time.Now()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-tick.C:
			s := v.Stats()
			fmt.Printf("%5.1fs video %s pkts=%d lost=%d frames=%d decodable=%d incomplete=%d keyframes=%d %dx%d | audio pkts=%d lost=%d\n",
				time.Since(start).Seconds(), s.Video.MimeType, s.Video.Packets, s.Video.Lost, s.Video.Frames,
				s.Video.DecodableFrames, s.Video.IncompleteFrames, s.Video.Keyframes, s.Video.Width, s.Video.Height,
				s.Audio.Packets, s.Audio.Lost)
		case <-v.Done():
			log.Warn("peer connection ended")
			done = true
		case <-ctx.Done():
			done = true
		}
	}
	closeErr := v.Close()
	report(v.Stats(), start, connected)
	return closeErr
}

func report(s client.ViewerStats, start, connected time.Time) {
	since := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.Sub(start).Round(time.Millisecond).String()
	}
	vs, as := s.Video, s.Audio
	fmt.Println("--- final report ---")
	fmt.Printf("connected after         %v\n", connected.Sub(start).Round(time.Millisecond))
	fmt.Printf("video codec             %s\n", vs.MimeType)
	fmt.Printf("first video packet      %s (keyframe start: %v)\n", since(vs.FirstPacketAt), vs.FirstPacketKeyframe)
	fmt.Printf("first complete keyframe %s\n", since(vs.FirstKeyframeAt))
	fmt.Printf("resolution              first %dx%d, last %dx%d\n", vs.FirstWidth, vs.FirstHeight, vs.Width, vs.Height)
	fmt.Printf("video packets           %d (%d bytes, %d padding), lost %d, late %d, malformed %d\n",
		vs.Packets, vs.Bytes, vs.PaddingPackets, vs.Lost, vs.Late, vs.MalformedPackets)
	fmt.Printf("video frames            %d: %d complete, %d incomplete, %d decodable, %d keyframes\n",
		vs.Frames, vs.CompleteFrames, vs.IncompleteFrames, vs.DecodableFrames, vs.Keyframes)
	fmt.Printf("PLIs sent               %d\n", vs.PLIsSent)
	fmt.Printf("audio                   %s: %d packets, lost %d, late %d\n", as.MimeType, as.Packets, as.Lost, as.Late)
}
