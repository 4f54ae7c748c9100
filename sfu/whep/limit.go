package whep

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hybridcast/hybridcast/internal/signal"
)

// Limit is a cap on WebRTC viewers shared by every Handler that is given
// it: the server-wide cap. A viewer holds one slot from the moment its
// offer is accepted for processing until its session ends.
type Limit struct {
	max   int64
	inUse atomic.Int64
}

// NewLimit makes a Limit of max viewers; max <= 0 means no cap (the Limit
// still counts).
func NewLimit(max int) *Limit { return &Limit{max: int64(max)} }

// TryAcquire takes a slot if one is free.
func (l *Limit) TryAcquire() bool {
	for {
		n := l.inUse.Load()
		if l.max > 0 && n >= l.max {
			return false
		}
		if l.inUse.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Release gives back a slot taken by TryAcquire.
func (l *Limit) Release() { l.inUse.Add(-1) }

// InUse returns how many slots are taken.
func (l *Limit) InUse() int { return int(l.inUse.Load()) }

// Rejection reasons, the keys of Handler.Rejections.
const (
	// RejectStreamCap: the stream had Config.MaxViewers viewers.
	RejectStreamCap = "stream_cap"
	// RejectServerCap: the server-wide Config.ServerLimit was full.
	RejectServerCap = "server_cap"
)

// RetryAfter is the Retry-After of a 503 answered at a viewer cap.
const RetryAfter = 10 * time.Second

// viewerSlots counts the viewers of each stream and the rejections.
type viewerSlots struct {
	max    int    // per stream, 0: no cap
	server *Limit // nil: no server-wide cap

	mu       sync.Mutex
	byStream map[string]int

	rejectedStream, rejectedServer atomic.Uint64
}

// reserve takes a slot for a viewer of stream, or fails with a 503 whose
// headers say when to retry and, through alternates, where else to play.
// The returned release is safe to call more than once.
func (v *viewerSlots) reserve(stream string, alternates func(stream string) []string) (release func(), err error) {
	v.mu.Lock()
	if v.max > 0 && v.byStream[stream] >= v.max {
		v.mu.Unlock()
		v.rejectedStream.Add(1)
		return nil, capError(signal.Errorf(http.StatusServiceUnavailable,
			"stream %q has reached its limit of %d WebRTC viewers: play it over HLS or DASH (see the Link headers) or retry later", stream, v.max),
			stream, alternates)
	}
	v.byStream[stream]++
	v.mu.Unlock()
	unreserve := func() {
		v.mu.Lock()
		if v.byStream[stream]--; v.byStream[stream] <= 0 {
			delete(v.byStream, stream)
		}
		v.mu.Unlock()
	}
	if v.server != nil && !v.server.TryAcquire() {
		unreserve()
		v.rejectedServer.Add(1)
		return nil, capError(signal.Errorf(http.StatusServiceUnavailable,
			"the server has reached its limit of %d WebRTC viewers: play %q over HLS or DASH (see the Link headers) or retry later", v.server.max, stream),
			stream, alternates)
	}
	return sync.OnceFunc(func() {
		if v.server != nil {
			v.server.Release()
		}
		unreserve()
	}), nil
}

func capError(e *signal.Error, stream string, alternates func(string) []string) *signal.Error {
	e.Header = http.Header{}
	e.Header.Set("Retry-After", strconv.Itoa(int(RetryAfter/time.Second)))
	if alternates != nil {
		for _, l := range alternates(stream) {
			e.Header.Add("Link", l)
		}
	}
	return e
}

// Rejections counts the offers refused at a viewer cap, by reason
// (RejectStreamCap, RejectServerCap).
func (h *Handler) Rejections() map[string]uint64 {
	return map[string]uint64{
		RejectStreamCap: h.slots.rejectedStream.Load(),
		RejectServerCap: h.slots.rejectedServer.Load(),
	}
}
