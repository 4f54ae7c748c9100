package rtc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
)

func TestListenPair(t *testing.T) {
	udp, tcp, err := listenPair("127.0.0.1:0", true)
	if err != nil {
		t.Fatal(err)
	}
	u, p := udp.LocalAddr().(*net.UDPAddr).Port, tcp.Addr().(*net.TCPAddr).Port
	_ = udp.Close()
	_ = tcp.Close()
	if u != p {
		t.Fatalf("udp port %d, tcp port %d: want the same", u, p)
	}

	// A fixed port whose TCP side is taken is an error naming it, and
	// leaves the UDP port free again.
	var lc net.ListenConfig
	busy, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)
	if _, _, err := listenPair("127.0.0.1:"+port, true); err == nil || !strings.Contains(err.Error(), "ICE-TCP") {
		t.Fatalf("listenPair on a taken TCP port: %v", err)
	}
	again, err := lc.ListenPacket(context.Background(), "udp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatalf("the UDP port was not released: %v", err)
	}
	_ = again.Close()
}

func TestPionErrorLevel(t *testing.T) {
	for _, c := range []struct {
		args []any
		want slog.Level
	}{
		{[]any{io.ErrClosedPipe}, slog.LevelDebug},
		{[]any{fmt.Errorf("write: %w", net.ErrClosed)}, slog.LevelDebug},
		{[]any{errors.New("dtls: bad record")}, slog.LevelWarn},
		{[]any{"a string", 3}, slog.LevelWarn},
	} {
		if got := errorLevel(c.args); got != c.want {
			t.Errorf("errorLevel(%v) = %v, want %v", c.args, got, c.want)
		}
	}
}
