package rtc

import (
	"context"
	"encoding/binary"
	"net"
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
			bc := newBatchConn(sc.(*net.UDPConn))
			rc, err := lc.ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if err := rc.(*net.UDPConn).SetReadBuffer(4 << 20); err != nil {
				t.Fatal(err)
			}
			to := rc.LocalAddr().(*net.UDPAddr).AddrPort()
			const n = 1000
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
			if d := bc.dropped.Load(); d != 0 {
				t.Fatalf("%d datagrams dropped on a queue of %d", d, queueDepth)
			}
			in := make([]byte, 2000)
			for i := range n {
				_ = rc.SetReadDeadline(time.Now().Add(5 * time.Second))
				k, _, err := rc.ReadFrom(in)
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				if got := binary.BigEndian.Uint32(in); k != 1200 || got != uint32(i) {
					t.Fatalf("datagram %d: got #%d (%d bytes)", i, got, k)
				}
			}
		})
	}
}
