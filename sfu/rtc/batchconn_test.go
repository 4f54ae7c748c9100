//go:build linux

package rtc

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// batchConnBinds are the sockets a batchConn is tested on: IPv4 and
// dual-stack.
var batchConnBinds = []string{"127.0.0.1:0", "[::]:0"}

// listenBatchConn binds a UDP socket on bind (skipping the test where
// that cannot be done) and makes a batchConn of it.
func listenBatchConn(t *testing.T, bind string) *batchConn {
	t.Helper()
	var lc net.ListenConfig
	sc, err := lc.ListenPacket(context.Background(), "udp", bind)
	if err != nil {
		t.Skipf("cannot bind %s: %v", bind, err)
	}
	return newBatchConn(sc.(*net.UDPConn), nil, nil)
}

// TestBatchConnDeliversInOrder sends datagrams through a batchConn on an
// IPv4 and on a dual-stack socket to a real receiver on loopback: all
// arrive, in order, and Close sends what was queued first.
func TestBatchConnDeliversInOrder(t *testing.T) {
	for _, bind := range batchConnBinds {
		t.Run(bind, func(t *testing.T) {
			bc := listenBatchConn(t, bind)
			var lc net.ListenConfig
			rc, err := lc.ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			// UDP gives no flow control: the receiver's kernel buffer must
			// hold what the writer can outrun it by. As root, ask for 32 MB
			// (beyond rmem_max); otherwise send only what the default holds.
			rbuf := receiveBuffer(t, rc.(*net.UDPConn), 32<<20)
			to := rc.LocalAddr().(*net.UDPAddr).AddrPort()
			n := 2 * queueDepth // more than the queue holds: writers wait, nothing is lost
			if fit := rbuf / 2 / 1500; fit < n {
				n = fit
				t.Logf("receive buffer %d bytes: sending %d datagrams, not exercising a full queue", rbuf, n)
			}
			got := make(chan error, 1)
			go func() { // the receiver reads while we write, as a peer would
				in := make([]byte, 2000)
				for i := range n {
					_ = rc.SetReadDeadline(time.Now().Add(5 * time.Second))
					k, _, err := rc.ReadFrom(in)
					if err != nil {
						got <- fmt.Errorf("datagram %d: %w", i, err)
						return
					}
					if v := binary.BigEndian.Uint32(in); k != 1200 || v != uint32(i) {
						got <- fmt.Errorf("datagram %d: got #%d (%d bytes)", i, v, k)
						return
					}
				}
				got <- nil
			}()
			buf := make([]byte, 1200)
			for i := range n {
				binary.BigEndian.PutUint32(buf, uint32(i))
				if _, err := bc.WriteToAddrPort(buf, to); err != nil {
					t.Fatal(err)
				}
			}
			if err := bc.Close(); err != nil { // flushes the queue first
				t.Fatal(err)
			}
			if _, err := bc.WriteToAddrPort(buf, to); err == nil {
				t.Fatal("write after Close succeeded")
			}
			if err := <-got; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// receiveBuffer sets a socket's receive buffer as large as allowed and
// returns the size the kernel granted.
func receiveBuffer(t *testing.T, c *net.UDPConn, want int) int {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	_ = raw.Control(func(fd uintptr) {
		if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, want) != nil {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, want)
		}
		got, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
	})
	return got / 2 // Linux reports twice the usable size
}

// TestBatchConnSegments sends frames of datagrams (full-size packets and a
// shorter last one, as a packetizer makes them) to three receivers, the
// receivers' packets interleaved, with and without UDP GSO: every
// datagram arrives whole, with its own size, in order per receiver; with
// GSO most leave in segmented sends.
func TestBatchConnSegments(t *testing.T) {
	for _, gso := range []bool{false, true} {
		t.Run(fmt.Sprintf("gso=%v", gso), func(t *testing.T) {
			var lc net.ListenConfig
			sc, err := lc.ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			bc := newBatchConn(sc.(*net.UDPConn), nil, nil)
			if gso && !bc.gso.Load() {
				t.Skip("the kernel has no UDP_SEGMENT")
			}
			bc.gso.Store(gso)
			const receivers, frames = 3, 200
			sizes := []int{1200, 1200, 1200, 1200, 1200, 1200, 1200, 1200, 517, 1200, 90, 90, 1200} // a frame's datagrams
			type rx struct {
				c   *net.UDPConn
				got chan error
			}
			var rxs []rx
			for range receivers {
				rc, err := lc.ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer rc.Close()
				if rb := receiveBuffer(t, rc.(*net.UDPConn), 8<<20); rb < frames*len(sizes)*1500 {
					t.Logf("receive buffer %d bytes: the receiver must keep up", rb)
				}
				r := rx{c: rc.(*net.UDPConn), got: make(chan error, 1)}
				rxs = append(rxs, r)
				go func() {
					in := make([]byte, 2000)
					for i := range frames * len(sizes) {
						_ = r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
						k, _, err := r.c.ReadFrom(in)
						if err != nil {
							r.got <- fmt.Errorf("datagram %d: %w", i, err)
							return
						}
						want := sizes[i%len(sizes)]
						if v := binary.BigEndian.Uint32(in); k != want || v != uint32(i) || in[k-1] != byte(i) {
							r.got <- fmt.Errorf("datagram %d: got #%d, %d bytes ending in %d; want %d bytes ending in %d", i, v, k, in[k-1], want, byte(i))
							return
						}
					}
					r.got <- nil
				}()
			}
			buf := make([]byte, 1500)
			for f := range frames {
				for j, size := range sizes { // packet j of frame f to every receiver in turn
					i := f*len(sizes) + j
					for _, r := range rxs {
						binary.BigEndian.PutUint32(buf, uint32(i))
						buf[size-1] = byte(i)
						if _, err := bc.WriteToAddrPort(buf[:size], r.c.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			if err := bc.Close(); err != nil {
				t.Fatal(err)
			}
			for _, r := range rxs {
				if err := <-r.got; err != nil {
					t.Fatal(err)
				}
			}
			seg := bc.segmented.Load()
			t.Logf("%d of %d datagrams in segmented sends", seg, receivers*frames*len(sizes))
			if gso && seg == 0 && !bc.gsoFailed.Load() {
				t.Error("GSO on, but no datagram left in a segmented send")
			}
			if !gso && seg != 0 {
				t.Errorf("GSO off, but %d datagrams left in segmented sends", seg)
			}
		})
	}
}

// openFDs counts the process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	return len(ents)
}

// TestSendBatchesOnDuplicates: SendBatches send on duplicates of the
// socket's descriptor, from several goroutines at once; every datagram
// arrives from the socket's own address, each batch's in its order, and
// Close releases the duplicates.
func TestSendBatchesOnDuplicates(t *testing.T) {
	before := openFDs(t)
	sc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	bc := newBatchConn(sc, nil, nil)
	if len(bc.outs) < 2 {
		t.Fatalf("%d send descriptors, want several", len(bc.outs))
	}
	rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	receiveBuffer(t, rc, 8<<20)
	to := rc.LocalAddr().(*net.UDPAddr).AddrPort()
	const senders, each = 4, 200
	done := make(chan struct{})
	for s := range senders {
		go func() {
			defer func() { done <- struct{}{} }()
			b := bc.NewBatch().(*SendBatch)
			for i := range each {
				buf := bc.pool.Get().(*[MaxDatagram]byte)
				binary.BigEndian.PutUint32(buf[:], uint32(s<<16|i))
				b.put(buf, 100, to)
				if i%50 == 49 {
					b.Flush()
				}
			}
			b.Flush()
		}()
	}
	for range senders {
		<-done
	}
	next := make([]int, senders)
	in := make([]byte, 2000)
	for range senders * each {
		_ = rc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := rc.ReadFromUDPAddrPort(in)
		if err != nil {
			t.Fatalf("after %v datagrams: %v", next, err)
		}
		if from != sc.LocalAddr().(*net.UDPAddr).AddrPort() || n != 100 {
			t.Fatalf("datagram from %v, %d bytes", from, n)
		}
		v := binary.BigEndian.Uint32(in)
		s, i := int(v>>16), int(v&0xffff)
		if s >= senders || i != next[s] {
			t.Fatalf("sender %d's datagram %d, want %d", s, i, next[s])
		}
		next[s]++
	}
	if err := bc.Close(); err != nil {
		t.Fatal(err)
	}
	_ = rc.Close()
	if after := openFDs(t); after != before {
		t.Fatalf("%d descriptors open before, %d after Close", before, after)
	}
}
