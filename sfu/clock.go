package sfu

import (
	"sync"
	"time"
)

// PublisherClock relates one publisher's wall clock, the NTP times of its
// RTCP sender reports, to the server's. The offset is the least difference
// between a report's arrival and its NTP time over the last clockBuckets
// seconds, so a report that queued on the way does not move it, and the
// two clocks' drift is followed as old reports leave the window. One
// PublisherClock serves all of a publisher's tracks: what their reports
// say about each other (a video stream's encoder delay against its audio,
// one simulcast layer against another) then survives the move onto the
// server's clock.
type PublisherClock struct {
	mu      sync.Mutex
	buckets [clockBuckets]clockBucket
}

// clockBucket is the least offset seen in one second.
type clockBucket struct {
	second int64 // arrival, Unix seconds; 0: empty
	offset time.Duration
}

// clockBuckets is how many seconds back the least offset is looked for
// (one bucket a second).
const clockBuckets = 10

// ServerTime takes a sender report's NTP time that arrived at arrival into
// the offset and returns that NTP time on the server's clock.
func (c *PublisherClock) ServerTime(ntp uint64, arrival time.Time) time.Time {
	t := NTPToTime(ntp)
	d := arrival.Sub(t)
	sec := arrival.Unix()
	c.mu.Lock()
	b := &c.buckets[sec%clockBuckets]
	if b.second != sec || d < b.offset {
		*b = clockBucket{second: sec, offset: d}
	}
	off := d
	for _, b := range c.buckets {
		if b.second != 0 && sec-b.second < clockBuckets && b.offset < off {
			off = b.offset
		}
	}
	c.mu.Unlock()
	return t.Add(off)
}

// TimeToNTP converts a time to a 32.32 NTP timestamp (seconds since 1900).
func TimeToNTP(t time.Time) uint64 {
	return uint64(t.Unix()+ntpToUnix)<<32 | uint64(t.Nanosecond())<<32/uint64(time.Second)
}

// ntpToUnix is the seconds from 1900 (NTP's era 0) to 1970.
const ntpToUnix = 2208988800

// NTPToTime converts a 32.32 NTP timestamp (seconds since 1900) to a time.
func NTPToTime(v uint64) time.Time {
	secs := int64(v>>32) - ntpToUnix
	frac := int64(v & 0xffffffff)
	return time.Unix(secs, frac*int64(time.Second)>>32)
}
