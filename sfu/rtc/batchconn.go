package rtc

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/net/ipv6"
)

// batchConn is the shared media socket with batched sends: every write of
// every session is queued and one goroutine sends them with sendmmsg(2), up
// to batchSize datagrams per system call. With hundreds of viewers the
// per-packet system call, not the forwarding, is what costs (measured with
// perf on the load tool: sendto and the VM's interrupt exits dominated), so
// batching is where fan-out per core is won. Reads go straight to the socket.
//
// A write returns once the datagram is queued; like any UDP send, a lost
// datagram is reported by nobody. When the queue is full the writer waits
// for room: the senders are per-subscriber goroutines whose own bounded
// queues absorb the wait, and dropping here would cut frames at random
// (measured: with a 2048-datagram queue, keyframe bursts to 200 viewers
// lost 6 % of frames).
type batchConn struct {
	*net.UDPConn
	batch *ipv6.PacketConn // the socket is dual-stack (udp on "::" or an IPv6 address) or IPv4; see newBatchConn
	v4    bool

	queue   chan outDatagram
	pool    sync.Pool
	done    chan struct{}
	stopped chan struct{}
	once    sync.Once
	waits   atomic.Uint64 // writes that found the queue full and waited
}

type outDatagram struct {
	buf  *[MaxDatagram]byte
	n    int
	addr netip.AddrPort
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

func newBatchConn(c *net.UDPConn) *batchConn {
	la, _ := c.LocalAddr().(*net.UDPAddr)
	b := &batchConn{
		UDPConn: c,
		batch:   ipv6.NewPacketConn(c),
		v4:      la != nil && la.IP.To4() != nil,
		queue:   make(chan outDatagram, queueDepth),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	b.pool.New = func() any { return new([MaxDatagram]byte) }
	go b.writeLoop() // joined in Close through stopped
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
	d := outDatagram{buf: buf, n: copy(buf[:], p), addr: addr}
	select {
	case b.queue <- d:
		return len(p), nil
	default:
	}
	b.waits.Add(1)
	select {
	case b.queue <- d:
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
		<-b.stopped
	})
	return b.UDPConn.Close()
}

func (b *batchConn) writeLoop() {
	defer close(b.stopped)
	msgs := make([]ipv6.Message, batchSize)
	addrs := make([]net.UDPAddr, batchSize)
	ips := make([][16]byte, batchSize)
	bufs := make([]*[MaxDatagram]byte, 0, batchSize)
	for i := range msgs {
		msgs[i].Buffers = make([][]byte, 1)
	}
	for {
		var d outDatagram
		select {
		case d = <-b.queue:
		case <-b.done:
			select { // send what was queued before Close, then stop
			case d = <-b.queue:
			default:
				return
			}
		}
		bufs = bufs[:0]
		ok := true
		n := 0
		for {
			b.fill(&msgs[n], &addrs[n], &ips[n], d)
			bufs = append(bufs, d.buf)
			n++
			if n == batchSize {
				break
			}
			select {
			case d = <-b.queue:
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
