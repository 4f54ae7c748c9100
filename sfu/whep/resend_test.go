package whep

import (
	"testing"
	"time"
)

func TestResendGuard(t *testing.T) {
	var g resendGuard
	ms := time.Millisecond
	steps := []struct {
		seq  uint16
		now  time.Duration
		want bool
	}{
		{100, 1 * ms, true},
		{100, 2 * ms, false},                      // asked again before the first could arrive
		{101, 2 * ms, true},                       // another packet
		{100, 1*ms + resendInterval - 1, false},   // still within the interval
		{100, 1*ms + resendInterval, true},        // the retransmission may have been lost: once more
		{100, 1*ms + resendInterval + ms, false},  // and the interval starts again
		{100 + resendMemory, 3 * ms, true},        // same slot, other packet: the slot is reused
		{100, 1*ms + resendInterval + 2*ms, true}, // its mark was overwritten
		{65535, 5 * ms, true},                     // the top of the sequence space
		{65535, 6 * ms, false},
	}
	for i, s := range steps {
		if got := g.allow(s.seq, s.now); got != s.want {
			t.Errorf("step %d: allow(%d, %v) = %v, want %v", i, s.seq, s.now, got, s.want)
		}
	}
}
