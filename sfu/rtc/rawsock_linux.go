//go:build linux

package rtc

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// The media socket outside Go's network poller.
//
// Every descriptor that Go's poller holds is in its epoll set (for reading
// and writing, edge-triggered), and every entry puts a callback on the
// socket's wait queue. Each datagram the kernel is done with (sock_wfree:
// on loopback at once, on a network card at transmit completion) reports
// the socket writable to every callback on that queue, and wakes the
// poller's thread whenever one sleeps in epoll_wait, which a server with
// idle time has: every datagram sent woke a thread that found nothing to
// do. With the send descriptors made by net.FilePacketConn (seven entries
// for one socket on two cores) that was 10.5 % of the server's CPU at 200
// viewers (perf), and 6.7 % with only the socket's own entry left. So on
// Linux no descriptor of the socket is in the poller: the writers send on
// duplicates with sendmmsg(2) of our own (rawOut; x/net's batch writes
// only take the net package's connections), and the ICE mux's goroutine
// reads one more through an epoll set of our own that Go's poller watches
// (rawIn), after the connection Go opened is closed, which takes it out
// of Go's set.

// rawOut is a duplicate of the media socket's descriptor for sending.
type rawOut struct {
	fd int
	v4 bool
	// mu is held for reading across each system call on fd and taken by
	// close, so that fd is never used after it is closed (and perhaps
	// reused by another file).
	mu     sync.RWMutex
	closed bool
}

// newSendFD returns a descriptor of c's socket for sending, outside Go's
// poller. Its sends do not block: one that finds the socket's buffer full
// waits in poll(2).
func newSendFD(c *net.UDPConn, v4 bool) (sendFD, error) {
	fd, err := dupFD(c)
	if err != nil {
		return nil, err
	}
	return &rawOut{fd: fd, v4: v4}, nil
}

// dupFD returns a new descriptor of c's socket (close-on-exec).
func dupFD(c *net.UDPConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	if err := raw.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, os.NewSyscallError("fcntl", derr)
	}
	return fd, nil
}

func (o *rawOut) sender() batchSender {
	return &rawSender{
		o:    o,
		hdrs: make([]mmsghdr, batchSize),
		iovs: make([]unix.Iovec, batchSize*gsoMaxSegments),
		v4s:  make([]unix.RawSockaddrInet4, batchSize),
		v6s:  make([]unix.RawSockaddrInet6, batchSize),
	}
}

func (o *rawOut) close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	o.closed = true
	return unix.Close(o.fd)
}

// mmsghdr is struct mmsghdr of sendmmsg(2). Go pads the struct to the
// alignment of its first field as C does, on every Linux architecture.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// rawSender is one goroutine's sendmmsg on a rawOut: the system call's
// arguments, reused from call to call.
type rawSender struct {
	o    *rawOut
	hdrs []mmsghdr
	iovs []unix.Iovec // gsoMaxSegments per message
	v4s  []unix.RawSockaddrInet4
	v6s  []unix.RawSockaddrInet6
	// full, if set, is called when a send finds the socket's buffer full
	// (tests).
	full func()
}

// WriteBatch sends ms (at most batchSize) as ipv6.PacketConn's WriteBatch
// does: it returns how many messages the kernel took, and an error only
// when it took none. Each message's Addr is a *net.UDPAddr, or nil for a
// connected socket's peer.
func (s *rawSender) WriteBatch(ms []ipv6.Message, _ int) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	ms = ms[:min(len(ms), len(s.hdrs))]
	for i := range ms {
		s.pack(i, &ms[i])
	}
	s.o.mu.RLock()
	defer s.o.mu.RUnlock()
	for {
		if s.o.closed {
			return 0, net.ErrClosed
		}
		// MSG_DONTWAIT: a full send buffer is waited for below, whatever
		// the socket's file status.
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.o.fd),
			uintptr(unsafe.Pointer(&s.hdrs[0])), uintptr(len(ms)), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			// The socket's send buffer is full: wait until the kernel has
			// sent some of it (bounded, so that close is not held up).
			if s.full != nil {
				s.full()
			}
			fds := []unix.PollFd{{Fd: int32(s.o.fd), Events: unix.POLLOUT}}
			if _, err := unix.Poll(fds, 100); err != nil && err != unix.EINTR {
				return 0, os.NewSyscallError("poll", err)
			}
			continue
		default:
			return 0, os.NewSyscallError("sendmmsg", errno)
		}
	}
}

// pack fills the system call's message i from m.
func (s *rawSender) pack(i int, m *ipv6.Message) {
	h := &s.hdrs[i].hdr
	iovs := s.iovs[i*gsoMaxSegments : i*gsoMaxSegments+len(m.Buffers)]
	for j, b := range m.Buffers {
		iovs[j].Base = &b[0]
		iovs[j].SetLen(len(b))
	}
	h.Iov = &iovs[0]
	h.SetIovlen(len(iovs))
	h.Control = nil
	h.SetControllen(0)
	if len(m.OOB) > 0 {
		h.Control = &m.OOB[0]
		h.SetControllen(len(m.OOB))
	}
	h.Flags = 0
	s.hdrs[i].len = 0
	ua, _ := m.Addr.(*net.UDPAddr)
	if ua == nil { // to the connected peer
		h.Name, h.Namelen = nil, 0
		return
	}
	ip, port := ua.IP, ua.Port
	if s.o.v4 {
		sa := &s.v4s[i]
		sa.Family = unix.AF_INET
		putPort(&sa.Port, port)
		copy(sa.Addr[:], ip.To4())
		h.Name = (*byte)(unsafe.Pointer(sa))
		h.Namelen = unix.SizeofSockaddrInet4
	} else {
		sa := &s.v6s[i]
		sa.Family = unix.AF_INET6
		putPort(&sa.Port, port)
		copy(sa.Addr[:], ip.To16())
		sa.Scope_id = scopeID(ua.Zone)
		h.Name = (*byte)(unsafe.Pointer(sa))
		h.Namelen = unix.SizeofSockaddrInet6
	}
}

// scopeID returns the interface index of an IPv6 zone: the index itself
// (the form rawIn reads), or an interface's name.
func scopeID(zone string) uint32 {
	if zone == "" {
		return 0
	}
	if i, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(i)
	}
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return uint32(ifi.Index)
	}
	return 0
}

// putPort stores port in network byte order.
func putPort(p *uint16, port int) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}

// rawIn reads the media socket on a descriptor of its own. Go's poller
// does not hold that descriptor but an epoll set of ours that asks for
// nothing but its readability: the socket's writability, reported at
// every datagram sent, stops at our set's callback, while a datagram that
// arrives makes our set readable, which wakes the reading goroutine
// through Go's poller as a socket of its own would. (Reading in a
// blocking recvmsg(2) instead kept the runtime's monitor handing the
// reader's processor on after every datagram: 11.5 % of the server's CPU
// in the monitor at 200 viewers.)
type rawIn struct {
	fd     int
	ep     *os.File // our epoll set, in Go's poller
	rc     syscall.RawConn
	mu     sync.RWMutex // held for reading across a read; close takes it
	closed atomic.Bool
	args   sync.Pool // *recvArgs
}

// recvArgs are recvmsg's arguments, kept across reads.
type recvArgs struct {
	h   unix.Msghdr
	iov unix.Iovec
	sa  unix.RawSockaddrAny
}

// newRecvFD returns a rawIn on a duplicate of c's descriptor and closes
// c, which takes c's descriptor out of Go's epoll set. If that cannot be
// done, c is read as it is.
func newRecvFD(c *net.UDPConn) recvFD {
	fd, err := dupFD(c)
	if err != nil {
		return connIn{c}
	}
	r, err := watchReadable(fd)
	if err != nil {
		_ = unix.Close(fd)
		return connIn{c}
	}
	_ = c.Close() // the socket lives on in fd and the send descriptors
	return r
}

// watchReadable makes the epoll set that watches fd for reading and
// hands it to Go's poller.
func watchReadable(fd int) (*rawIn, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		_ = unix.Close(epfd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	ep := os.NewFile(uintptr(epfd), "media socket readability") // non-blocking: Go polls it
	// Only a file in Go's poller takes deadlines: this checks that it is
	// there, so that a read waits in the poller and not in the kernel.
	if err := ep.SetReadDeadline(time.Time{}); err != nil {
		_ = ep.Close()
		return nil, err
	}
	rc, err := ep.SyscallConn()
	if err != nil {
		_ = ep.Close()
		return nil, err
	}
	r := &rawIn{fd: fd, ep: ep, rc: rc}
	r.args.New = func() any { return new(recvArgs) }
	return r, nil
}

func (r *rawIn) recvMsg(p, oob []byte) (int, int, netip.AddrPort, error) {
	a := r.args.Get().(*recvArgs)
	defer r.args.Put(a)
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed.Load() {
		return 0, 0, netip.AddrPort{}, net.ErrClosed
	}
	var n uintptr
	var errno syscall.Errno
	err := r.rc.Read(func(uintptr) bool {
		for {
			a.h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&a.sa)), Namelen: unix.SizeofSockaddrAny}
			a.iov = unix.Iovec{}
			if len(p) > 0 {
				a.iov.Base = &p[0]
			}
			a.iov.SetLen(len(p))
			a.h.Iov = &a.iov
			a.h.SetIovlen(1)
			if len(oob) > 0 {
				a.h.Control = &oob[0]
				a.h.SetControllen(len(oob))
			}
			n, _, errno = unix.Syscall(unix.SYS_RECVMSG, uintptr(r.fd), uintptr(unsafe.Pointer(&a.h)), unix.MSG_DONTWAIT)
			switch errno {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // wait until our set is readable
			}
			return true
		}
	})
	switch {
	case r.closed.Load():
		return 0, 0, netip.AddrPort{}, net.ErrClosed
	case err != nil:
		return 0, 0, netip.AddrPort{}, err
	case errno != 0:
		return 0, 0, netip.AddrPort{}, os.NewSyscallError("recvmsg", errno)
	}
	return int(n), int(a.h.Controllen), sockaddrAddrPort(&a.sa), nil
}

// sockaddrAddrPort converts the sender's address as the net package does
// (an IPv4 peer of a dual-stack socket stays v4-mapped).
func sockaddrAddrPort(sa *unix.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		s := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(s.Addr), port(s.Port))
	case unix.AF_INET6:
		s := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		ip := netip.AddrFrom16(s.Addr)
		if s.Scope_id != 0 {
			ip = ip.WithZone(strconv.FormatUint(uint64(s.Scope_id), 10))
		}
		return netip.AddrPortFrom(ip, port(s.Port))
	}
	return netip.AddrPort{}
}

// port reads a port in network byte order.
func port(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// setReadDeadline bounds the reads' wait in Go's poller; one that times
// out returns os.ErrDeadlineExceeded, as the net package's reads do.
func (r *rawIn) setReadDeadline(t time.Time) error { return r.ep.SetReadDeadline(t) }

// close ends a read in progress and closes the descriptor.
func (r *rawIn) close() error {
	if r.closed.Swap(true) {
		return nil
	}
	_ = r.ep.Close() // wakes a read waiting in Go's poller
	r.mu.Lock()
	defer r.mu.Unlock()
	return unix.Close(r.fd)
}
