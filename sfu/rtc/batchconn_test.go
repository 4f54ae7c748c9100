package rtc

import (
	"context"
	"encoding/binary"
	"fmt"
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
			const n = 2 * queueDepth // more than the queue holds: writers wait, nothing is lost
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
