package sfu

import (
	"testing"
	"time"
)

// near compares durations to within the NTP format's rounding.
func near(a, b time.Duration) bool { return (a - b).Abs() <= time.Microsecond }

func TestPublisherClock(t *testing.T) {
	// The publisher's clock is 3 s behind ours; its audio reports arrive
	// 2 ms after they are sent, its video reports say the video was
	// captured 150 ms before it was sent (the encoder's delay).
	const behind = 3 * time.Second
	start := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	var c PublisherClock
	for i := range 20 {
		now := start.Add(time.Duration(i) * 500 * time.Millisecond)
		pubNow := now.Add(-behind)
		// Video first: its offset is the larger, and must not be taken.
		video := c.ServerTime(TimeToNTP(pubNow.Add(-150*time.Millisecond)), now.Add(2*time.Millisecond))
		audio := c.ServerTime(TimeToNTP(pubNow), now.Add(2*time.Millisecond))
		if i == 0 {
			continue // the first video report has nothing else to go by
		}
		if got := audio.Sub(video); !near(got, 150*time.Millisecond) {
			t.Fatalf("report %d: audio - video on our clock %v, want 150ms", i, got)
		}
		if got := audio.Sub(now); !near(got, 2*time.Millisecond) {
			t.Fatalf("report %d: audio at %v from its send time, want 2ms", i, got)
		}
	}
	// A report that queued 40 ms does not move the offset.
	now := start.Add(10 * time.Second)
	late := c.ServerTime(TimeToNTP(now.Add(-behind)), now.Add(40*time.Millisecond))
	if got := late.Sub(now); !near(got, 2*time.Millisecond) {
		t.Fatalf("queued report at %v from its send time, want 2ms", got)
	}
	// The clocks drift: from 11 s on the publisher's clock says 5 ms less.
	// Until the old reports leave the window its times map 5 ms early;
	// then the offset has followed.
	for i := range 12 {
		now := start.Add(11*time.Second + time.Duration(i)*time.Second)
		got := c.ServerTime(TimeToNTP(now.Add(-behind-5*time.Millisecond)), now.Add(2*time.Millisecond)).Sub(now)
		if i == 0 && !near(got, -3*time.Millisecond) {
			t.Fatalf("first drifted report at %v from its send time, want -3ms", got)
		}
		if i == 11 && !near(got, 2*time.Millisecond) {
			t.Fatalf("after the window: report at %v from its send time, want 2ms", got)
		}
	}
}
