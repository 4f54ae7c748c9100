package rtc

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestBatchConnDeliversInOrder sends datagrams through a batchConn on an
// IPv4 and on a dual-stack socket to a real receiver on loopback: all
// arrive, in order, and Close sends what was queued first.
func TestBatchConnDeliversInOrder(t *testing.T) {
	for _, bind := range []string{"127.0.0.1:0", "[::]:0"} {
		t.Run(bind, func(t *testing.T) {
			var lc net.ListenConfig
			sc, err := lc.ListenPacket(context.Background(), "udp", bind)
			if err != nil {
				t.Skipf("cannot bind %s: %v", bind, err)
			}
			bc := newBatchConn(sc.(*net.UDPConn), nil)
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
