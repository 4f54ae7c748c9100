package rtc

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hybridcast/hybridcast/sfu"

	"golang.org/x/net/ipv6"
)

// batchConn is the shared media socket with batched sends: every write of
// every session is queued and one goroutine sends them with sendmmsg(2), up
// to batchSize datagrams per system call. With hundreds of viewers the
// per-packet system call, not the forwarding, is what costs (measured with
// perf on the load tool: sendto and the VM's interrupt exits dominated), so
// batching is where fan-out per core is won. Reads go straight to the socket.
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
	*net.UDPConn
	batch *ipv6.PacketConn // the socket is dual-stack (udp on "::" or an IPv6 address) or IPv4; see newBatchConn
	v4    bool

	queues []chan outDatagram // one per writer; a destination always uses the same one, so its datagrams stay in order
	pool   sync.Pool
	done   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	waits  atomic.Uint64 // writes that found the queue full and waited
	// wait measures each datagram from queued to handed to the kernel.
	wait *sfu.LatencyHistogram
}

type outDatagram struct {
	buf    *[MaxDatagram]byte
	n      int
	addr   netip.AddrPort
	queued time.Time
}

// MaxDatagram is the largest datagram we send.
const MaxDatagram = 1500

const (
	batchSize  = 64
	queueDepth = 4096
)

var (
	_ net.PacketConn = (*batchConn)(nil)
	// The ICE UDP mux uses these allocation-free methods when present.
	_ interface {
		ReadFromAddrPort(b []byte) (int, netip.AddrPort, error)
		WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error)
	} = (*batchConn)(nil)
)

func newBatchConn(c *net.UDPConn, wait *sfu.LatencyHistogram) *batchConn {
	la, _ := c.LocalAddr().(*net.UDPAddr)
	b := &batchConn{
		UDPConn: c,
		batch:   ipv6.NewPacketConn(c),
		v4:      la != nil && la.IP.To4() != nil,
		queues:  make([]chan outDatagram, writers()),
		done:    make(chan struct{}),
		wait:    wait,
	}
	b.pool.New = func() any { return new([MaxDatagram]byte) }
	for i := range b.queues {
		b.queues[i] = make(chan outDatagram, queueDepth)
		b.wg.Go(func() { b.writeLoop(b.queues[i]) }) // joined in Close
	}
	return b
}

// ReadFromAddrPort reads one datagram.
func (b *batchConn) ReadFromAddrPort(p []byte) (int, netip.AddrPort, error) {
	return b.ReadFromUDPAddrPort(p)
}

// WriteToAddrPort queues one datagram.
func (b *batchConn) WriteToAddrPort(p []byte, addr netip.AddrPort) (int, error) {
	if len(p) > MaxDatagram {
		return b.WriteToUDPAddrPort(p, addr) // never happens with WebRTC MTUs
	}
	select {
	case <-b.done:
		return 0, net.ErrClosed
	default:
	}
	buf := b.pool.Get().(*[MaxDatagram]byte)
	d := outDatagram{buf: buf, n: copy(buf[:], p), addr: addr, queued: time.Now()}
	q := b.queues[shard(addr, len(b.queues))]
	select {
	case q <- d:
		return len(p), nil
	default:
	}
	b.waits.Add(1)
	select {
	case q <- d:
		return len(p), nil
	case <-b.done:
		b.pool.Put(buf)
		return 0, net.ErrClosed
	}
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
	})
	return b.UDPConn.Close()
}

func (b *batchConn) writeLoop(queue chan outDatagram) {
	msgs := make([]ipv6.Message, batchSize)
	addrs := make([]net.UDPAddr, batchSize)
	ips := make([][16]byte, batchSize)
	bufs := make([]*[MaxDatagram]byte, 0, batchSize)
	queued := make([]time.Time, 0, batchSize)
	for i := range msgs {
		msgs[i].Buffers = make([][]byte, 1)
	}
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
		bufs = bufs[:0]
		queued = queued[:0]
		ok := true
		n := 0
		for {
			b.fill(&msgs[n], &addrs[n], &ips[n], d)
			bufs = append(bufs, d.buf)
			queued = append(queued, d.queued)
			n++
			if n == batchSize {
				break
			}
			select {
			case d = <-queue:
			default:
				ok = false
			}
			if !ok {
				break
			}
		}
		for sent := 0; sent < n; {
			k, err := b.batch.WriteBatch(msgs[sent:n], 0)
			if err != nil {
				// A datagram the kernel refuses (unreachable, closed socket)
				// is lost like any UDP datagram; go on with the rest.
				k = max(k, 1)
			}
			sent += k
		}
		if b.wait != nil {
			now := time.Now()
			for _, q := range queued {
				b.wait.Observe(now.Sub(q))
			}
		}
		for _, buf := range bufs {
			b.pool.Put(buf)
		}
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
	ua.Zone = ""
	m.Buffers[0] = d.buf[:d.n]
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
