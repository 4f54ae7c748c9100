package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"
)

const testToken = "test-token-123"

// startServer runs a real server on loopback ports chosen by the kernel and
// stops it (waiting for every goroutine) when the test ends.
func startServer(t testing.TB, mutate ...func(*Config)) *server {
	t.Helper()
	srv := newTestServer(t, mutate...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server stopped with: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("server did not stop within 15 s")
		}
	})
	return srv
}

// newTestServer binds a server on loopback ports chosen by the kernel,
// without serving yet.
func newTestServer(t testing.TB, mutate ...func(*Config)) *server {
	t.Helper()
	cfg := DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.WebRTCUDPAddr = "127.0.0.1:0"
	cfg.LoopbackOnly = true
	cfg.PublishToken = testToken
	for _, m := range mutate {
		m(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	out, level := io.Discard, slog.LevelWarn
	if os.Getenv("HYBRIDCAST_TEST_LOG") != "" {
		out, level = io.Writer(os.Stderr), slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
	srv, err := newServer(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// testRcvBuf is the kernel receive buffer the tests' pion viewers ask for
// (SO_RCVBUFFORCE as root). With the race detector and other test packages
// running at once, a viewer goroutine can be descheduled through a
// keyframe burst; the default 200 KB buffer then drops datagrams at the
// viewer, which measures the test machine, not the server.
const testRcvBuf = 4 << 20
