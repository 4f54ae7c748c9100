package sfu

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// Kind says whether a track carries audio or video.
type Kind uint8

// Track kinds.
const (
	KindAudio Kind = iota + 1
	KindVideo
)

func (k Kind) String() string {
	switch k {
	case KindAudio:
		return "audio"
	case KindVideo:
		return "video"
	}
	return "unknown"
}

// TrackInfo describes what a Track carries. It travels with the track to
// every subscriber, so that a WHEP viewer can pick the matching payload type
// and the packager can write the right sample entry.
type TrackInfo struct {
	// ID names the track within its stream, for example "audio" or "video".
	ID   string
	Kind Kind
	// MimeType is the codec, for example "video/H264" or "audio/opus".
	MimeType    string
	ClockRate   uint32
	Channels    uint16
	SDPFmtpLine string
	// PayloadType is the publisher's payload type.
	PayloadType uint8
	// RID is the simulcast layer's restriction identifier, or "" without simulcast.
	RID string
	// SSRC is the publisher's SSRC for this track.
	SSRC uint32
}

// SenderReport is the publisher's latest RTCP sender report for a track: the
// mapping from its RTP clock to wall-clock (NTP) time, kept for packaging.
type SenderReport struct {
	NTPTime uint64 // NTP timestamp, 32.32 fixed point
	RTPTime uint32
	Arrival time.Time
	// ServerTime is NTPTime on the server's clock (PublisherClock), the
	// same offset for every track of the publisher; zero if not known.
	ServerTime time.Time
}

// TrackConfig configures a Track. Zero values take the documented defaults.
type TrackConfig struct {
	Info TrackInfo
	// RequestKeyframe asks the publisher for a keyframe (an RTCP PLI). The
	// Track throttles calls; it may be nil for audio.
	RequestKeyframe func()
	// KeyframeInterval is the minimum time between two keyframe requests
	// sent to the publisher. Default 500 ms.
	KeyframeInterval time.Duration
	// HistorySize is how many recent packets are kept to answer NACKs,
	// rounded up to a power of two. Default 1024 for video, 256 for audio.
	HistorySize int
	// QueueSize is the default per-subscriber queue length, rounded up to a
	// power of two. Default 128 for video (half a second of a 2.5 Mbit/s
	// stream: a subscriber further behind is better restarted at a
	// keyframe than served late), 64 for audio.
	QueueSize int
	// Arrivals, if set, has the kernel's receive times of the publisher's
	// packets: a packet found there arrives when the kernel had it rather
	// than when it reached the track.
	Arrivals *Arrivals
	Logger   *slog.Logger
}

// TrackStats are a Track's counters.
type TrackStats struct {
	Packets          uint64 // media packets received and forwarded
	Bytes            uint64 // payload bytes of those packets
	Padding          uint64 // padding-only packets dropped
	Keyframes        uint64
	KeyframeRequests uint64 // requests sent to the publisher
	// Dropped counts packets not delivered to a subscriber whose queue
	// was full, summed over the track's subscriptions.
	Dropped     uint64
	Subscribers int
}

// Track is one RTP stream of a publisher, fanned out to subscribers.
//
// WriteRTP is called by one goroutine, the publisher's read loop; the other
// methods are safe for concurrent use.
type Track struct {
	info TrackInfo
	log  *slog.Logger
	pool *packetPool

	requestKeyframe  func()
	keyframeInterval time.Duration
	queueSize        int
	arrivals         *Arrivals

	subs atomic.Pointer[[]*subscription] // copy-on-write snapshot

	mu       sync.Mutex // guards history, closed, subscription list writes
	history  []*Packet
	histMask uint64
	newest   uint64 // forwarding Seq of the newest packet in the history
	keySeq   uint64 // forwarding Seq of the latest keyframe's first packet, 0 if none
	closed   bool
	done     chan struct{}
	// workers deliver the shared subscriptions' packets (Shared): the
	// publication's, or the track's own.
	workers *workerPool

	// Read loop state, touched only by WriteRTP's goroutine.
	started     bool
	highest     uint64 // extended sequence number of the newest packet
	paddingSeen uint64
	lastKeyTS   uint32
	lastKeySeen bool

	kfMu        sync.Mutex
	kfLast      time.Time
	kfPending   *time.Timer
	kfPendingAt time.Time // when kfPending fires
	// lastKeyframe is when the last keyframe began to arrive, unix nanos.
	lastKeyframe atomic.Int64

	sr    atomic.Pointer[SenderReport]
	meter meter

	packets, bytes, padding, keyframes, kfRequests, dropped atomic.Uint64
}

// NewTrack makes a Track. Routers make tracks through Publication.AddTrack;
// NewTrack is exported for tests and benchmarks.
func NewTrack(cfg TrackConfig) *Track {
	video := cfg.Info.Kind == KindVideo
	hist := cfg.HistorySize
	if hist <= 0 {
		hist = 256
		if video {
			hist = 1024
		}
	}
	hist = pow2(hist)
	queue := cfg.QueueSize
	if queue <= 0 {
		queue = 64
		if video {
			queue = 128
		}
	}
	interval := cfg.KeyframeInterval
	if interval <= 0 {
		interval = 500 * time.Millisecond
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Track{
		info:             cfg.Info,
		log:              log.With("track", cfg.Info.ID, "rid", cfg.Info.RID, "codec", cfg.Info.MimeType),
		pool:             newPacketPool(),
		requestKeyframe:  cfg.RequestKeyframe,
		keyframeInterval: interval,
		queueSize:        pow2(queue),
		arrivals:         cfg.Arrivals,
		history:          make([]*Packet, hist),
		workers:          &workerPool{},
		histMask:         uint64(hist - 1),
		done:             make(chan struct{}),
	}
}

func pow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

// Info returns what the track carries.
func (t *Track) Info() TrackInfo { return t.info }

// Done is closed when the track closes.
func (t *Track) Done() <-chan struct{} { return t.done }

// Stats returns the track's counters.
func (t *Track) Stats() TrackStats {
	s := TrackStats{
		Packets:          t.packets.Load(),
		Bytes:            t.bytes.Load(),
		Padding:          t.padding.Load(),
		Keyframes:        t.keyframes.Load(),
		KeyframeRequests: t.kfRequests.Load(),
		Dropped:          t.dropped.Load(),
	}
	if subs := t.subs.Load(); subs != nil {
		s.Subscribers = len(*subs)
	}
	return s
}

// WriteRTP forwards one packet from the publisher. It copies the packet, so
// the caller may reuse p. It never blocks on subscribers.
func (t *Track) WriteRTP(p *rtp.Packet) error {
	pkt := t.pool.get()
	if err := pkt.loadPacket(p); err != nil {
		pkt.Release()
		return err
	}
	return t.forward(pkt)
}

// Write forwards one marshalled RTP packet from the publisher, like WriteRTP.
func (t *Track) Write(raw []byte) error {
	pkt := t.pool.get()
	if err := pkt.load(raw); err != nil {
		pkt.Release()
		return err
	}
	return t.forward(pkt)
}

// forward takes ownership of pkt's single reference.
func (t *Track) forward(pkt *Packet) error {
	pkt.Arrival = t.arrivals.Arrival(pkt.SSRC, pkt.SequenceNumber, time.Now())
	ext, inOrder := t.extend(pkt.SequenceNumber)
	if len(pkt.Payload) == 0 {
		// Padding-only packets (bandwidth probes) carry no media: drop them
		// and take them out of the forwarding sequence.
		if inOrder {
			t.paddingSeen++
		}
		t.padding.Add(1)
		pkt.Release()
		return nil
	}
	pkt.Seq = ext - t.paddingSeen
	pkt.Keyframe = t.info.Kind != KindVideo
	if t.info.Kind == KindVideo && inOrder && IsKeyframe(t.info.MimeType, pkt.Payload) {
		// Flag only the first keyframe packet of a frame, so that a
		// subscriber starts at the SPS rather than in the middle of the IDR.
		if !t.lastKeySeen || pkt.Timestamp != t.lastKeyTS {
			pkt.Keyframe = true
			t.lastKeyTS, t.lastKeySeen = pkt.Timestamp, true
			t.keyframes.Add(1)
			t.lastKeyframe.Store(time.Now().UnixNano())
			t.log.Debug("keyframe")
		}
	}

	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		pkt.Release()
		return ErrTrackClosed
	}
	slot := &t.history[pkt.Seq&t.histMask]
	if old := *slot; old != nil && old.Seq == pkt.Seq {
		// A duplicate (a retransmission we already have).
		t.mu.Unlock()
		pkt.Release()
		return nil
	}
	old := *slot
	*slot = pkt // the history keeps the reference we were given
	t.newest = max(t.newest, pkt.Seq)
	if pkt.Keyframe && t.info.Kind == KindVideo {
		t.keySeq = pkt.Seq
	}
	t.mu.Unlock()
	if old != nil {
		old.Release()
	}

	t.meter.observe(pkt, t.info.MimeType)
	t.packets.Add(1)
	t.bytes.Add(uint64(len(pkt.Payload)))
	if subs := t.subs.Load(); subs != nil {
		// The shared subscriptions are all on one set of workers: a set
		// stops only once none is left on it.
		var set *workerSet
		var wake uint32
		for _, s := range *subs {
			if s.enqueue(pkt) && s.w != nil {
				set = s.w.set
				wake |= 1 << s.w.idx
			}
		}
		if set != nil {
			set.wakeUp(wake)
		}
	}
	return nil
}

// extend unwraps a 16-bit sequence number into the 64-bit space and says
// whether it is newer than every packet seen so far.
func (t *Track) extend(seq uint16) (ext uint64, inOrder bool) {
	if !t.started {
		t.started = true
		t.highest = 1<<16 + uint64(seq) // headroom for late packets below the first
		return t.highest, true
	}
	diff := int64(int16(seq - uint16(t.highest)))
	ext = uint64(int64(t.highest) + diff)
	if diff > 0 {
		t.highest = ext
		return ext, true
	}
	return ext, false
}

// Lookup returns the packet with forwarding sequence number seq from the
// history, with a reference the caller must Release, or nil if it is gone.
func (t *Track) Lookup(seq uint64) *Packet {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.history[seq&t.histMask]
	if p == nil || p.Seq != seq {
		return nil
	}
	p.retain()
	return p
}

// SwitchKeyframeInterval is the shortest time from any keyframe request
// to one made for a viewer joining or switching to a track
// (RequestSwitchKeyframe). A join or switch completes at the track's next
// keyframe; held to KeyframeInterval (500 ms), a switch to a layer just
// asked for a keyframe took 354–508 ms with a publisher that answers at
// once, against the ≤ 300 ms a switch should take. It is not shorter
// because libwebrtc drops a keyframe request that comes less than 300 ms
// after the last one it acted on (EncoderRtcpFeedback's
// min_keyframe_send_interval): a browser publisher would ignore it, and
// the viewer would wait for a keyframe that never comes.
const SwitchKeyframeInterval = 300 * time.Millisecond

// switchOutstanding is how long a keyframe request that has not been
// answered yet is taken to be on its way, so that a switch waits for its
// keyframe instead of asking again.
const switchOutstanding = 500 * time.Millisecond

// RequestKeyframe asks the publisher for a keyframe, at most once per
// KeyframeInterval: a request inside the interval is deferred to its end, and
// requests made while one is deferred are merged into it. Viewers' PLI and
// FIR, new subscriptions and overflowing ones ask through it.
func (t *Track) RequestKeyframe() {
	if !t.lockKeyframeRequests() {
		return
	}
	defer t.kfMu.Unlock()
	if t.kfPending != nil {
		return
	}
	now := time.Now()
	if wait := t.kfLast.Add(t.keyframeInterval).Sub(now); wait > 0 {
		t.deferKeyframeRequestLocked(now, wait)
		return
	}
	t.sendKeyframeRequestLocked(now)
}

// RequestSwitchKeyframe asks for a keyframe for a viewer joining or
// switching to this track, which starts at the track's next keyframe. A
// request sent less than switchOutstanding ago and not answered by a
// keyframe yet serves it; otherwise a request goes at once, or
// SwitchKeyframeInterval after the last request of any kind (bringing a
// deferred request forward), apart from KeyframeInterval.
func (t *Track) RequestSwitchKeyframe() {
	if !t.lockKeyframeRequests() {
		return
	}
	defer t.kfMu.Unlock()
	now := time.Now()
	if !t.kfLast.IsZero() && t.kfLast.UnixNano() > t.lastKeyframe.Load() && now.Sub(t.kfLast) < switchOutstanding {
		return // the keyframe asked for is on its way
	}
	wait := max(t.kfLast.Add(SwitchKeyframeInterval).Sub(now), 0)
	switch {
	case t.kfPending != nil:
		// Merged into the deferred request, which the switch may bring
		// forward (unless it is firing already).
		if now.Add(wait).Before(t.kfPendingAt) && t.kfPending.Stop() {
			t.deferKeyframeRequestLocked(now, wait)
		}
	case wait > 0:
		t.deferKeyframeRequestLocked(now, wait)
	default:
		t.sendKeyframeRequestLocked(now)
	}
}

// lockKeyframeRequests takes kfMu for a keyframe request, unless the track
// has no way to ask or is closed; it reports whether it did.
func (t *Track) lockKeyframeRequests() bool {
	if t.requestKeyframe == nil {
		return false
	}
	t.kfMu.Lock()
	select {
	case <-t.done:
		t.kfMu.Unlock()
		return false
	default:
		return true
	}
}

// deferKeyframeRequestLocked sends a keyframe request wait after now. kfMu
// is held and no request is pending.
func (t *Track) deferKeyframeRequestLocked(now time.Time, wait time.Duration) {
	t.kfPending = time.AfterFunc(wait, t.sendDeferredKeyframeRequest)
	t.kfPendingAt = now.Add(wait)
}

// sendKeyframeRequestLocked sends a keyframe request now. kfMu is held.
func (t *Track) sendKeyframeRequestLocked(now time.Time) {
	t.kfLast = now
	t.kfRequests.Add(1)
	t.log.Debug("keyframe request sent")
	t.requestKeyframe()
}

func (t *Track) sendDeferredKeyframeRequest() {
	t.kfMu.Lock()
	t.kfPending = nil
	t.kfLast = time.Now()
	t.kfMu.Unlock()
	select {
	case <-t.done:
		return
	default:
	}
	t.kfRequests.Add(1)
	t.requestKeyframe()
}

// SetSenderReport records the publisher's latest RTCP sender report.
func (t *Track) SetSenderReport(sr SenderReport) { t.sr.Store(&sr) }

// SenderReport returns the latest sender report, if one arrived.
func (t *Track) SenderReport() (SenderReport, bool) {
	if sr := t.sr.Load(); sr != nil {
		return *sr, true
	}
	return SenderReport{}, false
}

// Close ends the track: subscriptions stop, the history is released.
// It is safe to call more than once.
func (t *Track) Close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	close(t.done)
	subs := t.subs.Swap(nil)
	hist := t.history
	t.history = make([]*Packet, len(hist))
	t.mu.Unlock()

	t.kfMu.Lock()
	if t.kfPending != nil {
		t.kfPending.Stop()
		t.kfPending = nil
	}
	t.kfMu.Unlock()

	if subs != nil {
		for _, s := range *subs {
			s.stop()
			if s.w != nil {
				t.workers.remove(s)
			}
		}
	}
	for _, p := range hist {
		if p != nil {
			p.Release()
		}
	}
}

// Subscriber receives one Track's packets, in order, from a goroutine that
// the Track's subscription owns (or one of the publication's shared
// workers, see Shared). WriteRTP should return quickly: while it runs, that subscriber's
// queue fills (never the publisher's). It must not retain p or modify it
// after it returns.
type Subscriber interface {
	WriteRTP(p *Packet) error
}

// SubscribeOption tunes one subscription.
type SubscribeOption func(*subscription)

// WithQueueSize sets the subscription's queue length (rounded up to a power
// of two) instead of the track's default.
func WithQueueSize(n int) SubscribeOption {
	return func(s *subscription) {
		if n > 0 {
			s.ring = make([]*Packet, pow2(n))
			s.mask = uint64(len(s.ring) - 1)
		}
	}
}

// WithoutKeyframeStart delivers packets from the next one on, instead of
// holding them back until a keyframe (the default for video).
func WithoutKeyframeStart() SubscribeOption {
	return func(s *subscription) { s.waitKeyframe = false }
}

// ForSwitch marks a subscription made for a viewer joining or switching to
// the track: its keyframe request is a RequestSwitchKeyframe.
func ForSwitch() SubscribeOption {
	return func(s *subscription) { s.forSwitch = true }
}

// Shared delivers the subscription's packets on one of the shared
// workers of the track's publication (one per core) instead of a
// goroutine of its own: a packet then wakes a worker per core rather than
// a goroutine per subscriber. Subscriptions to the publication's tracks
// with the same affinity key (comparable, not nil: a viewer's, say) are
// on the same worker, so their packets leave in the order the subscriber
// wrote them. It is for subscribers whose WriteRTP never waits on their
// peer, such as WHEP viewers on the direct send path, which only encrypt
// and queue a datagram: a WriteRTP that blocks holds up every
// subscription of its worker (their queues fill and drop; the publisher
// never waits). A BatchSubscriber's sends go to the worker's batch.
func Shared(affinity any) SubscribeOption {
	return func(s *subscription) { s.shared, s.affinity = true, affinity }
}

// Backfill says where a subscription made with FromRecentKeyframe started:
// its first packets, up to Last, came from the track's history.
type Backfill struct {
	// Last is the forwarding sequence number of the newest packet taken
	// from the history; later packets are live.
	Last uint64
	// LastTimestamp is that packet's RTP timestamp.
	LastTimestamp uint32
}

// FromRecentKeyframe starts a video subscription at the track's latest
// keyframe instead of the next one, when that keyframe began to arrive at
// most maxAge ago and it and every packet since fit in half the queue: the
// subscription's queue is filled with them from the history, and no
// keyframe is requested. If it did so, started is called with where,
// before Subscribe returns and before the subscriber gets a packet.
//
// It is for a viewer's first picture: a keyframe request within 300 ms of
// the last one is ignored by a browser publisher (see
// SwitchKeyframeInterval), so a viewer joining just after a keyframe would
// otherwise wait for the next allowed request. The packets are up to
// maxAge old and come in a burst; a subscriber that plays them should
// present them as current (see Rewriter.CatchUp).
func FromRecentKeyframe(maxAge time.Duration, started func(Backfill)) SubscribeOption {
	return func(s *subscription) { s.backfillAge, s.backfilled = maxAge, started }
}

// backfillLocked fills sub's queue from the history if FromRecentKeyframe
// asked for it and the latest keyframe qualifies, and reports whether it
// did. t.mu is held and sub is not in the fan-out yet.
func (t *Track) backfillLocked(sub *subscription) bool {
	if sub.backfillAge <= 0 || !sub.waitKeyframe || t.info.Kind != KindVideo || t.keySeq == 0 {
		return false
	}
	key := t.history[t.keySeq&t.histMask]
	n := t.newest - t.keySeq + 1
	if key == nil || key.Seq != t.keySeq || time.Since(key.Arrival) > sub.backfillAge ||
		n > uint64(len(sub.ring)/2) || n > uint64(len(t.history)) {
		return false
	}
	var last *Packet
	for seq := t.keySeq; seq <= t.newest; seq++ {
		p := t.history[seq&t.histMask]
		if p == nil || p.Seq != seq {
			continue // lost upstream: the viewer asks for it like for any loss
		}
		p.retain()
		sub.ring[sub.head&sub.mask] = p
		sub.head++
		last = p
	}
	sub.waitKeyframe = false
	sub.after = last.Seq
	if sub.backfilled != nil {
		sub.backfilled(Backfill{Last: last.Seq, LastTimestamp: last.Timestamp})
	}
	return true
}

// Subscribe adds s to the track's fan-out. Video subscriptions start at the
// next keyframe and ask the publisher for one at once (unless
// FromRecentKeyframe started them at the latest one). The returned function
// removes the subscription and waits until its goroutine has ended; it is
// safe to call more than once and after the track closed. Subscribing to a
// closed track returns ErrTrackClosed.
func (t *Track) Subscribe(s Subscriber, opts ...SubscribeOption) (unsubscribe func(), err error) {
	sub := newSubscription(t, s, opts...)
	askKeyframe := sub.waitKeyframe && t.info.Kind == KindVideo // read before enqueue can touch it
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, fmt.Errorf("subscribe to %s: %w", t.info.ID, ErrTrackClosed)
	}
	old := t.subs.Load()
	var list []*subscription
	if old != nil {
		list = make([]*subscription, 0, len(*old)+1)
		list = append(list, *old...)
	}
	backfilled := t.backfillLocked(sub)
	if backfilled {
		askKeyframe = false
	}
	if sub.shared {
		// After the backfill, which fills the queue without its lock: the
		// worker may drain it from here on.
		sub.bsub, _ = s.(BatchSubscriber)
		t.workers.add(sub)
	}
	list = append(list, sub)
	t.subs.Store(&list)
	sub.start()
	if backfilled {
		sub.wakeUp() // after the store: a shared worker finds it in the list
	}
	t.mu.Unlock()

	if askKeyframe {
		if sub.forSwitch {
			t.RequestSwitchKeyframe()
		} else {
			t.RequestKeyframe()
		}
	}
	return sync.OnceFunc(func() { t.unsubscribe(sub) }), nil
}

func (t *Track) unsubscribe(sub *subscription) {
	t.mu.Lock()
	if old := t.subs.Load(); old != nil {
		list := make([]*subscription, 0, len(*old))
		for _, s := range *old {
			if s != sub {
				list = append(list, s)
			}
		}
		t.subs.Store(&list)
	}
	t.mu.Unlock()
	sub.stop()
	if sub.w != nil {
		t.workers.remove(sub)
	}
}

// String names the track in logs.
func (t *Track) String() string {
	var b strings.Builder
	b.WriteString(t.info.ID)
	if t.info.RID != "" {
		b.WriteString("/")
		b.WriteString(t.info.RID)
	}
	return b.String()
}
