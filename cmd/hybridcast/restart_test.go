package main

import (
	"context"
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/internal/client"
)

// TestViewerWaitsForPublisherAndSeesOneStream: a viewer connects to a known
// stream while it is offline, starts at a keyframe when a publisher
// arrives, keeps one continuous stream (no sequence gap) across a publisher
// restart, and its session ends when no publisher returns within the wait.
func TestViewerWaitsForPublisherAndSeesOneStream(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.ViewerPublisherWait = 2 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	video, audio := loadClip(t, "layer-q.h264"), loadClip(t, "audio.ogg")
	publish := func(sends *sendLog) *client.Publisher {
		t.Helper()
		p, err := client.Publish(ctx, client.PublishConfig{
			URL: srv.URL() + "/whip/restart", Token: testToken, Loopback: true, Video: video, Audio: audio, OnFrameSent: sends.add,
		})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	// Make the stream known, then take it offline.
	first := newSendLog()
	p := publish(first)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return !srv.registry.Router("restart").Live() })

	// The viewer comes while nobody publishes.
	sends := newSendLog()
	rl := newRecvLog()
	v, err := client.Play(ctx, client.PlayConfig{ReceiveBuffer: testRcvBuf, URL: srv.URL() + "/whep/restart", Loopback: true, OnFrame: rl.onFrame(sends)})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()

	p = publish(sends)
	rl.setTarget(60)
	select {
	case <-rl.reached:
	case <-ctx.Done():
		t.Fatal("viewer received nothing from the publisher that came after it")
	}
	if st := v.Stats().Video; !st.FirstPacketKeyframe || st.Width != 320 {
		t.Fatalf("after the publisher arrived: first packet keyframe %v, width %d", st.FirstPacketKeyframe, st.Width)
	}

	// Restart the publisher: same viewer session, one continuous stream.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	before := v.Stats().Video
	// The viewer's frame callback matches against the first publisher's
	// log; the second publisher's frames are counted through the stats.
	second := newSendLog()
	p = publish(second)
	defer p.Close()
	<-second.reached(60)
	waitFor(t, func() bool { return v.Stats().Video.Frames > before.Frames+30 })
	after := v.Stats().Video
	if after.Lost != 0 || after.IncompleteFrames != before.IncompleteFrames {
		t.Fatalf("publisher restart: viewer lost %d packets, %d incomplete frames (before: %d, %d); want a gap-free stream",
			after.Lost, after.IncompleteFrames, before.Lost, before.IncompleteFrames)
	}
	t.Logf("across the restart: %d → %d frames, %d lost, %d late packets", before.Frames, after.Frames, after.Lost, after.Late)

	// The publisher goes for good: the viewer's session ends after the wait.
	gone := time.Now()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-v.Done():
		t.Logf("viewer session ended %v after the publisher left (wait 2s)", time.Since(gone).Round(10*time.Millisecond))
	case <-ctx.Done():
		t.Fatal("viewer session did not end after the publisher left")
	}
	waitFor(t, func() bool { return srv.whep.Sessions() == 0 })
}
