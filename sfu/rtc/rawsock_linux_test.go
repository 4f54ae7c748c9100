package rtc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// TestMediaSocketOutsidePoller: no descriptor of the media socket is in
// Go's epoll set, where every datagram sent would wake the poller (see
// rawOut): the writers and batches send on rawOuts and the ICE mux reads
// a rawIn.
func TestMediaSocketOutsidePoller(t *testing.T) {
	sc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	bc := newBatchConn(sc, nil, nil)
	defer bc.Close()
	// A socket that Go reads is in the poller: the check must find it.
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	raw, err := other.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	otherFD := -1
	_ = raw.Control(func(fd uintptr) { otherFD = int(fd) })
	in, ok := bc.in.(*rawIn)
	if !ok {
		t.Fatalf("the socket is read by a %T, want a *rawIn", bc.in)
	}
	ours := -1
	_ = in.rc.Control(func(fd uintptr) { ours = int(fd) })
	polled := epollTargets(t, ours)
	if !polled[fdTarget(t, otherFD)] {
		t.Fatalf("a socket Go reads (%s) is not among the epoll targets %v: reading /proc went wrong", fdTarget(t, otherFD), polled)
	}
	sock := fdTarget(t, in.fd)
	if polled[sock] {
		t.Fatalf("the media socket (%s) is in Go's epoll set", sock)
	}
	// Our own set has it, for reading only.
	info, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(ours))
	if err != nil {
		t.Fatal(err)
	}
	events := int64(-1)
	for line := range strings.Lines(string(info)) {
		if f := strings.Fields(line); len(f) >= 4 && f[0] == "tfd:" && f[1] == strconv.Itoa(in.fd) && f[2] == "events:" {
			events, _ = strconv.ParseInt(f[3], 16, 64)
		}
	}
	if events < 0 || events&unix.EPOLLIN == 0 || events&unix.EPOLLOUT != 0 {
		t.Fatalf("our epoll set asks for events %#x of the socket, want EPOLLIN and not EPOLLOUT:\n%s", events, info)
	}
	for i, o := range bc.outs {
		if _, ok := o.(*rawOut); !ok {
			t.Fatalf("send descriptor %d is a %T, want a *rawOut", i, o)
		}
	}
}

// fdTarget returns what descriptor fd refers to ("socket:[inode]").
func fdTarget(t *testing.T, fd int) string {
	t.Helper()
	link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return link
}

// epollTargets returns what the descriptors in this process's epoll sets
// (but the one of descriptor except) refer to (the "tfd:" lines of each
// eventpoll descriptor's fdinfo).
func epollTargets(t *testing.T, except int) map[string]bool {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	targets := map[string]bool{}
	for _, e := range ents {
		if link, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || link != "anon_inode:[eventpoll]" || e.Name() == strconv.Itoa(except) {
			continue
		}
		info, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(info)) {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "tfd:" {
				if link, err := os.Readlink("/proc/self/fd/" + f[1]); err == nil {
					targets[link] = true
				}
			}
		}
	}
	return targets
}

// TestRawInReadsAndCloses: the media socket's reads give the datagram and
// its sender's address as the net package gives them (an IPv4 peer of a
// dual-stack socket v4-mapped), a read deadline ends a wait, and Close
// ends a read blocked waiting.
func TestRawInReadsAndCloses(t *testing.T) {
	for _, bind := range batchConnBinds {
		t.Run(bind, func(t *testing.T) {
			bc := listenBatchConn(t, bind)
			port := bc.LocalAddr().(*net.UDPAddr).Port
			if _, ok := bc.in.(*rawIn); !ok {
				t.Fatalf("read by a %T, want a *rawIn", bc.in)
			}
			// What the net package reports for the same sender.
			var lc net.ListenConfig
			ref, err := lc.ListenPacket(context.Background(), "udp", bind)
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			if _, err := client.WriteToUDP([]byte("ref"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: ref.LocalAddr().(*net.UDPAddr).Port}); err != nil {
				t.Fatal(err)
			}
			in := make([]byte, 100)
			_ = ref.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, want, err := ref.(*net.UDPConn).ReadFromUDPAddrPort(in)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := client.WriteToUDP([]byte("hello"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
				t.Fatal(err)
			}
			n, from, err := bc.ReadFromAddrPort(in)
			if err != nil || string(in[:n]) != "hello" || from != want {
				t.Fatalf("read %q from %v, %v; want \"hello\" from %v", in[:n], from, err, want)
			}
			// A read deadline ends a wait, as on a net.UDPConn.
			if err := bc.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			if _, _, err := bc.ReadFromAddrPort(in); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read past the deadline: %v, want os.ErrDeadlineExceeded", err)
			}
			if err := bc.SetReadDeadline(time.Time{}); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, _, err := bc.ReadFromAddrPort(in)
				done <- err
			}()
			// Close must end the read whether or not it has started to
			// wait, and not wait for a datagram itself.
			closed := make(chan error, 1)
			go func() { closed <- bc.Close() }()
			select {
			case err := <-done:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("read after close: %v, want net.ErrClosed", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("a read blocked in recvmsg did not end at Close")
			}
			if err := <-closed; err != nil {
				t.Fatalf("close: %v", err)
			}
		})
	}
}

// TestRawSendAfterClose: a sender whose descriptor is closed reports
// net.ErrClosed and does not touch the descriptor number, which the
// process may have given to another file since.
func TestRawSendAfterClose(t *testing.T) {
	sc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	o, err := newSendFD(sc, true)
	if err != nil {
		t.Fatal(err)
	}
	s := o.sender()
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sc.LocalAddr().(*net.UDPAddr).Port}
	msg := []ipv6.Message{{Buffers: [][]byte{[]byte("before")}, Addr: to}}
	if n, err := s.WriteBatch(msg, 0); n != 1 || err != nil {
		t.Fatalf("send before close: %d, %v", n, err)
	}
	in := make([]byte, 100)
	if n, _, err := sc.ReadFrom(in); err != nil || string(in[:n]) != "before" {
		t.Fatalf("read %q, %v", in[:n], err)
	}
	if err := o.close(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.WriteBatch(msg, 0); n != 0 || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("send after close: %d, %v; want 0, net.ErrClosed", n, err)
	}
	if err := o.close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

// TestRawSendWaitsForRoom: a send that finds the socket's buffer full
// waits until there is room and then sends the rest, losing nothing. A
// UDP socket on loopback never fills (the kernel frees each datagram as
// it delivers it), so the test sends on a Unix datagram socket pair, whose
// sender gets EAGAIN while the receiver's queue is full, as a UDP sender
// does while its network card is behind.
func TestRawSendWaitsForRoom(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Skipf("no Unix datagram socket pair: %v", err)
	}
	o := &rawOut{fd: fds[0], v4: true}
	defer o.close()
	defer unix.Close(fds[1])
	s := o.sender().(*rawSender)
	full := make(chan struct{}, 1)
	s.full = func() {
		select {
		case full <- struct{}{}:
		default:
		}
	}
	msg := func(i int) []ipv6.Message {
		return []ipv6.Message{{Buffers: [][]byte{[]byte(strconv.Itoa(i))}}}
	}
	// Fill the receiver's queue.
	queued := 0
	for ; queued < 100000; queued++ {
		if _, err := unix.Write(fds[0], []byte(strconv.Itoa(queued))); err == unix.EAGAIN {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if queued == 100000 {
		t.Skip("the receiver's queue never filled")
	}
	sent := make(chan error, 1)
	go func() {
		n, err := s.WriteBatch(msg(queued), 0)
		if err == nil && n != 1 {
			err = fmt.Errorf("sent %d of 1", n)
		}
		sent <- err
	}()
	select {
	case <-full:
	case err := <-sent:
		t.Fatalf("the send returned (%v) with the receiver's queue full", err)
	}
	// Read everything, in order: the queued datagrams, then the one the
	// sender waited to send.
	in := make([]byte, 100)
	for i := 0; i <= queued; i++ {
		pfd := []unix.PollFd{{Fd: int32(fds[1]), Events: unix.POLLIN}}
		if n, err := unix.Poll(pfd, 5000); err != nil || n == 0 {
			t.Fatalf("datagram %d of %d did not come: %v", i, queued+1, err)
		}
		n, err := unix.Read(fds[1], in)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(in[:n]); got != strconv.Itoa(i) {
			t.Fatalf("datagram %q, want %d", got, i)
		}
	}
	select {
	case err := <-sent:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the send did not return once there was room")
	}
}

// TestRawAddressesKeepZones: a link-local IPv6 peer's zone survives the
// way through rawIn (the interface index, as a number) and back out
// through the batches (the scope id of the message's address), so that a
// reply reaches the interface the peer is on.
func TestRawAddressesKeepZones(t *testing.T) {
	var sa unix.RawSockaddrAny
	in6 := (*unix.RawSockaddrInet6)(unsafe.Pointer(&sa))
	in6.Family = unix.AF_INET6
	putPort(&in6.Port, 5004)
	in6.Addr = netip.MustParseAddr("fe80::1").As16()
	in6.Scope_id = 7
	from := sockaddrAddrPort(&sa)
	if want := netip.MustParseAddrPort("[fe80::1%7]:5004"); from != want {
		t.Fatalf("read address %v, want %v", from, want)
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no lo: %v", err)
	}
	for _, c := range []struct {
		zone string
		want uint32
	}{{"7", 7}, {"lo", uint32(lo.Index)}, {"", 0}} {
		bc := &batchConn{}
		var m ipv6.Message
		var ua net.UDPAddr
		var ip [16]byte
		addr := netip.AddrPortFrom(netip.MustParseAddr("fe80::1").WithZone(c.zone), 5004)
		bc.fill(&m, &ua, &ip, outDatagram{buf: new([MaxDatagram]byte), n: 10, addr: addr})
		s := (&rawOut{fd: -1}).sender().(*rawSender)
		s.pack(0, &m)
		got := s.v6s[0]
		if got.Scope_id != c.want || got.Addr != addr.Addr().As16() || port(got.Port) != 5004 {
			t.Fatalf("zone %q: sent to scope %d, %x port %d; want scope %d", c.zone, got.Scope_id, got.Addr, port(got.Port), c.want)
		}
	}
}
