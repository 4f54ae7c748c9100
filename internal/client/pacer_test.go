package client

import (
	"testing"
	"time"
)

// TestPacerKeepsRateWhenLate sends 100 packets of 10 bytes at 1000 bytes/s
// with every wakeup 5 ms late: the credit carried over makes the last one
// go at 0.99 s plus one wakeup's lateness, not 1.5 s.
func TestPacerKeepsRateWhenLate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := pacer{rate: 1000}
	now := t0
	p.resume(now)
	for range 100 {
		if now.Before(p.next) {
			now = p.next.Add(5 * time.Millisecond)
		}
		p.sent(now, 10)
	}
	if got, want := now.Sub(t0), 995*time.Millisecond; got != want {
		t.Errorf("last packet written after %v, want %v", got, want)
	}
}

// TestPacerCreditBounded: after a stall longer than maxPaceCredit the
// pacer owes at most maxPaceCredit, and after an idle spell (resume) none.
func TestPacerCreditBounded(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := pacer{rate: 1000}
	p.resume(t0)
	p.sent(t0, 10) // next at +10 ms
	late := t0.Add(time.Second)
	p.sent(late, 10)
	if got, want := p.next.Sub(late), 10*time.Millisecond-maxPaceCredit; got != want {
		t.Errorf("after a 1 s stall the next packet may go at %v from now, want %v", got, want)
	}
	idle := late.Add(time.Second)
	p.resume(idle)
	if !p.next.Equal(idle) {
		t.Errorf("after an idle spell next = %v after it, want 0", p.next.Sub(idle))
	}
}
