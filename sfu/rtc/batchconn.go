package rtc

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hybridcast/hybridcast/internal/kstamp"
	"github.com/hybridcast/hybridcast/sfu"

	"golang.org/x/net/ipv6"
)

// batchConn is the shared media socket with batched sends: every write of
// every session is queued and one goroutine sends them with sendmmsg(2), up
// to batchSize datagrams per system call. With hundreds of viewers the
// per-packet system call, not the forwarding, is what costs (measured with
// perf on the load tool: sendto and the VM's interrupt exits dominated), so
// batching is where fan-out per core is won. Reads go straight to the
// socket; where the kernel stamps datagrams (SO_TIMESTAMPNS) each RTP
// packet's receive time is recorded in arrivals on the way.
//
// Where the kernel offers UDP generic segmentation offload (UDP_SEGMENT),
// datagrams of one size to one destination that are queued together (the
// packets of a frame to one viewer) leave as one segmented send: the
// kernel takes them through its UDP and IP layers once and cuts them
// apart at the end (or the network card does). If a send is refused for
// segmentation, the writer sends every datagram alone from then on.
//
// With several cores there is one writer per core, each with its own queue;
// a destination always maps to the same writer, so its datagrams stay in
// order. A write returns once the datagram is queued; like any UDP send, a lost
// datagram is reported by nobody. When the queue is full the writer waits
// for room: the senders are per-subscriber goroutines whose own bounded
// queues absorb the wait, and dropping here would cut frames at random
// (measured: with a 2048-datagram queue, keyframe bursts to 200 viewers
// lost 6 % of frames).
type batchConn struct {
	// in reads the socket. On Linux it is a descriptor outside Go's
	// poller (rawIn), and the connection Go opened is closed once its
	// descriptor has been duplicated: see rawOut for why.
	in    recvFD
	laddr *net.UDPAddr
	// one sends what does not fit the batches (a datagram over
	// MaxDatagram, a segmented send the path refused), under oneMu.
	one   batchSender
	oneMu sync.Mutex
	// outs send on the socket, each a duplicate of the socket's
	// descriptor: one per writer, and outsPerWriter times as many for the
	// SendBatches, which take them in turn. Go serialises the writes on
	// one descriptor (its write lock), so with one, sends from two cores
	// took turns and the second waited parked: at 200 viewers goroutines
	// spent 0.9 s of every 4 s waiting for that lock. The duplicates are
	// the same kernel socket, which sends UDP from several threads at
	// once; on Linux they are outside Go's poller (rawOut). If no
	// duplicate can be made, outs is the socket itself. The socket is
	// dual-stack (udp on "::" or an IPv6 address) or IPv4; see
	// newBatchConn.
	outs    []sendFD
	nextOut atomic.Uint32 // SendBatches take outs in turn
	v4      bool

	queues []chan outDatagram // one per writer; a destination always uses the same one, so its datagrams stay in order
	pool   sync.Pool
	done   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	waits  atomic.Uint64 // writes that found the queue full and waited
	// gso: datagrams to one destination that follow each other in a
	// writer's queue go to the kernel as one segmented send (UDP GSO).
	gso       atomic.Bool
	gsoFailed atomic.Bool   // the kernel refused a segmented send: gso is off for good
	segmented atomic.Uint64 // datagrams that left in segmented sends
	sent      atomic.Uint64 // datagrams handed to the kernel
	calls     atomic.Uint64 // sendmmsg calls
	// wait measures each datagram from queued to handed to the kernel.
	wait *sfu.LatencyHistogram
	// arrivals gets the kernel's receive time of each RTP packet read,
	// when stamped is set.
	arrivals *sfu.Arrivals
	stamped  bool
	oobs     sync.Pool // *[]byte of kstamp.OOBSize, one per read in flight
	// epoch is the zero of the queue's clock. time.Since on it reads only
	// the monotonic clock, half of what time.Now costs, and the queue
	// takes a reading per datagram (2.5 % of the server's CPU at 200
	// viewers with time.Now).
	epoch time.Time
}

type outDatagram struct {
	buf    *[MaxDatagram]byte
	n      int
	addr   netip.AddrPort
	queued time.Duration // since batchConn.epoch
}

// MaxDatagram is the largest datagram we send.
const MaxDatagram = 1500

const (
	batchSize  = 64
	queueDepth = 4096
	// outsPerWriter is how many descriptors the SendBatches have per
	// writer: each of a publication's shared workers (one per core) has a
	// batch, and those of a few streams should not share one.
	outsPerWriter = 2
)

var (
	_ net.PacketConn = (*batchConn)(nil)
	// The ICE UDP mux uses these allocation-free methods when present.
	_ interface {
		ReadFromAddrPort(b []byte) (int, netip.AddrPort, error)
		WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error)
	} = (*batchConn)(nil)
)

func newBatchConn(c *net.UDPConn, wait *sfu.LatencyHistogram, arrivals *sfu.Arrivals) *batchConn {
	la, _ := c.LocalAddr().(*net.UDPAddr)
	b := &batchConn{
		laddr:    la,
		v4:       la != nil && la.IP.To4() != nil,
		queues:   make([]chan outDatagram, writers()),
		done:     make(chan struct{}),
		wait:     wait,
		arrivals: arrivals,
		stamped:  arrivals != nil && kstamp.Enable(c),
		epoch:    time.Now(),
	}
	b.oobs.New = func() any { oob := make([]byte, kstamp.OOBSize); return &oob }
	b.gso.Store(gsoSupported(c))
	b.pool.New = func() any { return new([MaxDatagram]byte) }
	for range len(b.queues) * (1 + outsPerWriter) {
		d, err := newSendFD(c, b.v4)
		if err != nil {
			break // the writers share the descriptors there are
		}
		b.outs = append(b.outs, d)
	}
	b.in = connIn{c}
	if len(b.outs) == 0 {
		b.outs = append(b.outs, pollFD{pc: ipv6.NewPacketConn(c)}) // sends on c: c stays open
	} else {
		b.in = newRecvFD(c)
	}
	b.one = b.outs[0].sender()
	for i := range b.queues {
		b.queues[i] = make(chan outDatagram, queueDepth)
		out := b.outs[i%len(b.outs)]
		b.wg.Go(func() { b.writeLoop(b.queues[i], out) }) // joined in Close
	}
	return b
}

// A sendFD is a descriptor of the media socket that writers send on.
type sendFD interface {
	// sender returns what sends on it, for one goroutine.
	sender() batchSender
	close() error
}

// A batchSender sends a batch of datagrams with one system call, as
// ipv6.PacketConn's WriteBatch does.
type batchSender interface {
	WriteBatch(ms []ipv6.Message, flags int) (int, error)
}

// pollFD sends through Go's poller with x/net's batch writes: the socket
// itself (c nil), or, where rawOut does not exist, a duplicate c.
type pollFD struct {
	pc *ipv6.PacketConn
	c  net.PacketConn
}

func (o pollFD) sender() batchSender { return o.pc }

func (o pollFD) close() error {
	if o.c == nil {
		return nil
	}
	return o.c.Close()
}

// A recvFD reads the media socket.
type recvFD interface {
	// recvMsg reads one datagram into p and its control messages into
	// oob, as net.UDPConn's ReadMsgUDPAddrPort.
	recvMsg(p, oob []byte) (n, oobn int, from netip.AddrPort, err error)
	setReadDeadline(t time.Time) error
	close() error
}

// connIn reads through Go's poller: the connection Go opened, where rawIn
// does not exist or could not be made.
type connIn struct{ c *net.UDPConn }

func (r connIn) recvMsg(p, oob []byte) (int, int, netip.AddrPort, error) {
	n, oobn, _, from, err := r.c.ReadMsgUDPAddrPort(p, oob)
	return n, oobn, from, err
}

func (r connIn) setReadDeadline(t time.Time) error { return r.c.SetReadDeadline(t) }

func (r connIn) close() error { return r.c.Close() }

// LocalAddr returns the socket's address (net.PacketConn).
func (b *batchConn) LocalAddr() net.Addr { return b.laddr }

// SetReadDeadline sets the read deadline (net.PacketConn).
func (b *batchConn) SetReadDeadline(t time.Time) error { return b.in.setReadDeadline(t) }

// SetWriteDeadline does nothing: a write only queues the datagram
// (net.PacketConn).
func (b *batchConn) SetWriteDeadline(time.Time) error { return nil }

// SetDeadline sets the read deadline (SetReadDeadline).
func (b *batchConn) SetDeadline(t time.Time) error { return b.SetReadDeadline(t) }

// ReadFrom reads one datagram (net.PacketConn).
func (b *batchConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, from, err := b.ReadFromAddrPort(p)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// ReadFromAddrPort reads one datagram, and records an RTP packet's
// kernel receive time.
func (b *batchConn) ReadFromAddrPort(p []byte) (int, netip.AddrPort, error) {
	if !b.stamped {
		n, _, from, err := b.in.recvMsg(p, nil)
		return n, from, err
	}
	oob := b.oobs.Get().(*[]byte)
	defer b.oobs.Put(oob)
	n, oobn, addr, err := b.in.recvMsg(p, *oob)
	if err == nil {
		if ssrc, seq, ok := kstamp.RTPKey(p[:n]); ok {
			if t, ok := kstamp.Parse((*oob)[:oobn]); ok {
				b.arrivals.Record(ssrc, seq, t)
			}
		}
	}
	return n, addr, err
}

// WriteToAddrPort queues one datagram.
func (b *batchConn) WriteToAddrPort(p []byte, addr netip.AddrPort) (int, error) {
	if len(p) > MaxDatagram {
		return b.sendOne(p, addr) // never happens with WebRTC MTUs
	}
	buf := b.pool.Get().(*[MaxDatagram]byte)
	if err := b.queue(buf, copy(buf[:], p), addr); err != nil {
		return 0, err
	}
	return len(p), nil
}

// queue hands buf (n bytes, from b.pool) to the writers, which own it
// from then on (also when queue fails).
func (b *batchConn) queue(buf *[MaxDatagram]byte, n int, addr netip.AddrPort) error {
	d := outDatagram{buf: buf, n: n, addr: addr, queued: time.Since(b.epoch)}
	q := b.queues[shard(addr, len(b.queues))]
	select {
	case <-b.done:
		b.pool.Put(buf)
		return net.ErrClosed
	default:
	}
	select {
	case q <- d:
		return nil
	default:
	}
	b.waits.Add(1)
	select {
	case q <- d:
		return nil
	case <-b.done:
		b.pool.Put(buf)
		return net.ErrClosed
	}
}

// sendOne sends p now, outside the batches.
func (b *batchConn) sendOne(p []byte, addr netip.AddrPort) (int, error) {
	b.oneMu.Lock()
	defer b.oneMu.Unlock()
	m := []ipv6.Message{{Buffers: [][]byte{p}, Addr: net.UDPAddrFromAddrPort(addr)}}
	if _, err := b.one.WriteBatch(m, 0); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteTo queues one datagram (net.PacketConn).
func (b *batchConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, errors.New("rtc: not a UDP address")
	}
	return b.WriteToAddrPort(p, ua.AddrPort())
}

// Close stops the writer after it has sent what is queued, then closes the socket.
func (b *batchConn) Close() error {
	b.once.Do(func() {
		close(b.done)
		b.wg.Wait()
		for _, d := range b.outs {
			_ = d.close()
		}
	})
	return b.in.close()
}

// gsoMaxSegments and gsoMaxBytes bound one segmented send: the kernel
// takes at most 64 segments (UDP_MAX_SEGMENTS before Linux 6.8) and a UDP
// datagram's 65507 bytes of payload.
const (
	gsoMaxSegments = 64
	gsoMaxBytes    = 65000
	// drainMax bounds the datagrams one writer takes from its queue for one
	// system call, segmented sends counted one by one.
	drainMax = 1024
)

// outMsg is one message of a sendmmsg call: one datagram, or with GSO a
// run of datagrams of one size (the last may be shorter) to one
// destination, which the kernel cuts apart.
type outMsg struct {
	dst  netip.AddrPort
	size int  // the size of every segment but the last
	open bool // every segment so far is size long: one more may follow
}

// add puts d into the batch: appended to the latest message to the same
// destination when GSO can carry it there, else as a new message.
func (w *writer) add(d outDatagram, gso bool) {
	if gso {
		for i := w.n - 1; i >= 0; i-- {
			m := &w.out[i]
			if m.dst != d.addr {
				continue
			}
			// Only the destination's latest message may take it, so that
			// its datagrams keep their order.
			segs := len(w.msgs[i].Buffers)
			if !m.open || d.n > m.size || segs >= gsoMaxSegments || segs*m.size+d.n > gsoMaxBytes {
				break
			}
			w.msgs[i].Buffers = append(w.msgs[i].Buffers, d.buf[:d.n])
			if segs == 1 {
				w.msgs[i].OOB = appendGSO(w.oob[i][:0], uint16(m.size))
			}
			m.open = d.n == m.size
			return
		}
	}
	w.b.fill(&w.msgs[w.n], &w.addrs[w.n], &w.ips[w.n], d)
	w.out[w.n] = outMsg{dst: d.addr, size: d.n, open: true}
	w.n++
}

// writer is one send goroutine's batch, reused from call to call.
type writer struct {
	b      *batchConn
	sock   batchSender // on the descriptor it sends on
	msgs   []ipv6.Message
	out    []outMsg
	oob    [][]byte
	addrs  []net.UDPAddr
	ips    [][16]byte
	n      int // messages in the batch
	bufs   []*[MaxDatagram]byte
	queued []time.Duration
}

func (b *batchConn) newWriter(out sendFD) *writer {
	w := &writer{
		b:      b,
		sock:   out.sender(),
		msgs:   make([]ipv6.Message, batchSize),
		out:    make([]outMsg, batchSize),
		oob:    make([][]byte, batchSize),
		addrs:  make([]net.UDPAddr, batchSize),
		ips:    make([][16]byte, batchSize),
		bufs:   make([]*[MaxDatagram]byte, 0, drainMax),
		queued: make([]time.Duration, 0, drainMax),
	}
	for i := range w.msgs {
		w.msgs[i].Buffers = make([][]byte, 1, gsoMaxSegments)
		w.oob[i] = make([]byte, 0, gsoSpace)
	}
	return w
}

// push puts d into the batch, which owns its buffer from then on, and
// reports whether the batch is full.
func (w *writer) push(d outDatagram, gso bool) (full bool) {
	w.add(d, gso)
	w.bufs = append(w.bufs, d.buf)
	w.queued = append(w.queued, d.queued)
	return w.n == batchSize || len(w.bufs) == drainMax
}

// flush sends the batch, counts it and empties it.
func (w *writer) flush() {
	if len(w.bufs) == 0 {
		return
	}
	b := w.b
	w.send()
	b.sent.Add(uint64(len(w.bufs)))
	if b.wait != nil {
		now := time.Since(b.epoch)
		for _, q := range w.queued {
			b.wait.Observe(now - q)
		}
	}
	for _, buf := range w.bufs {
		b.pool.Put(buf)
	}
	w.n = 0
	w.bufs = w.bufs[:0]
	w.queued = w.queued[:0]
}

func (b *batchConn) writeLoop(queue chan outDatagram, out sendFD) {
	w := b.newWriter(out)
	for {
		var d outDatagram
		select {
		case d = <-queue:
		case <-b.done:
			select { // send what was queued before Close, then stop
			case d = <-queue:
			default:
				return
			}
		}
		gso := b.gso.Load()
		for !w.push(d, gso) {
			select {
			case d = <-queue:
				continue
			default:
			}
			break
		}
		w.flush()
	}
}

// SendBatch is a batch of datagrams that its owner sends itself
// (sfu.Batch): a publication's shared worker leaves the datagrams of a pass over
// its viewers in one and sends them with as few system calls as the
// queue's writers would, without handing each datagram to a writer's
// goroutine. It is for one goroutine at a time.
type SendBatch struct{ w *writer }

var (
	_ sfu.Batcher = (*batchConn)(nil)
	_ sfu.Batch   = (*SendBatch)(nil)
)

// NewBatch makes a SendBatch on the socket (sfu.Batcher).
// Batches take the socket's descriptors in turn.
func (b *batchConn) NewBatch() sfu.Batch {
	i := int(b.nextOut.Add(1) - 1)
	if n := len(b.outs) - len(b.queues); n > 0 {
		i = len(b.queues) + i%n // those after the writers'
	}
	out := b.outs[i%len(b.outs)]
	return &SendBatch{w: b.newWriter(out)}
}

// Flush sends what the batch holds.
func (s *SendBatch) Flush() { s.w.flush() }

// put adds a datagram (buf, n bytes, from the socket's pool) and sends the
// batch when it is full.
func (s *SendBatch) put(buf *[MaxDatagram]byte, n int, addr netip.AddrPort) {
	b := s.w.b
	if s.w.push(outDatagram{buf: buf, n: n, addr: addr, queued: time.Since(b.epoch)}, b.gso.Load()) {
		s.w.flush()
	}
}

// send hands the batch to the kernel.
func (w *writer) send() {
	msgs := w.msgs[:w.n]
	for sent := 0; sent < len(msgs); {
		k, err := w.sock.WriteBatch(msgs[sent:], 0)
		w.b.calls.Add(1)
		for _, m := range msgs[sent : sent+max(k, 0)] {
			if len(m.Buffers) > 1 {
				w.b.segmented.Add(uint64(len(m.Buffers)))
			}
		}
		if err != nil {
			m := &msgs[sent+max(k, 0)]
			if len(m.Buffers) > 1 && isGSOError(err) {
				// This path cannot segment: from now on every datagram goes
				// alone, starting with these.
				w.b.gso.Store(false)
				w.b.gsoFailed.Store(true)
				if ua, ok := m.Addr.(*net.UDPAddr); ok {
					for _, seg := range m.Buffers {
						_, _ = w.b.sendOne(seg, ua.AddrPort())
					}
				}
			}
			// A datagram the kernel refuses (unreachable, closed socket)
			// is lost like any UDP datagram; go on with the rest.
			k = max(k, 0) + 1
		}
		sent += k
	}
	for i := range msgs { // back to one datagram per message
		msgs[i].Buffers = msgs[i].Buffers[:1]
		msgs[i].OOB = nil
	}
}

func (b *batchConn) fill(m *ipv6.Message, ua *net.UDPAddr, ip *[16]byte, d outDatagram) {
	a := d.addr.Addr()
	if b.v4 {
		a = a.Unmap()
		v4 := a.As4()
		copy(ip[:4], v4[:])
		ua.IP = ip[:4]
	} else {
		*ip = a.As16() // IPv4 peers as v4-mapped on a dual-stack socket
		ua.IP = ip[:]
	}
	ua.Port = int(d.addr.Port())
	ua.Zone = a.Zone() // a link-local IPv6 peer's interface
	m.Buffers = append(m.Buffers[:0], d.buf[:d.n])
	m.Addr = ua
	m.OOB = nil
}

// writers is how many send goroutines share the socket: one per core, up
// to 4 (more only contend for the socket).
func writers() int { return min(max(runtime.GOMAXPROCS(0), 1), 4) }

// shard maps a destination to a writer.
func shard(a netip.AddrPort, n int) int {
	if n == 1 {
		return 0
	}
	b := a.Addr().As16()
	h := uint32(a.Port())
	for _, x := range b {
		h = h*31 + uint32(x)
	}
	return int(h % uint32(n))
}
