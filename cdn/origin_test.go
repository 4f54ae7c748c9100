//go:build linux

package cdn

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/internal/client"
	"github.com/hybridcast/hybridcast/internal/livefeed"
	"github.com/hybridcast/hybridcast/origin"
	"github.com/hybridcast/hybridcast/packager"
	"github.com/hybridcast/hybridcast/sfu"
)

// The origin runs in a process of its own (this test binary, started
// again with originEnv set), so that its CPU can be read from /proc apart
// from the simulated players'. It serves stream "b", rendition "video"
// (a test layer at 30 fps, the 720p one unless -cdn.layer says another),
// and /_test/stats for the test. originEnv carries the layer's letter.
const originEnv = "HYBRIDCAST_CDN_TEST_ORIGIN"

// The 180p layer by default: the cache does the same for any bitrate, and
// 200 players of the 2.5 Mbit/s layer are more than a race-instrumented
// player process reads on a 2-core machine.
var layer = flag.String("cdn.layer", "q", "test layer the origin serves: f (720p, 2.5 Mbit/s), h (360p) or q (180p, 250 kbit/s)")

func TestMain(m *testing.M) {
	if os.Getenv(playersEnv) != "" {
		if err := playPlayers(); err != nil {
			fmt.Fprintln(os.Stderr, "players:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv(originEnv) != "" {
		if err := runOrigin(); err != nil {
			fmt.Fprintln(os.Stderr, "origin:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	if originBinDir != "" {
		_ = os.RemoveAll(originBinDir)
	}
	os.Exit(code)
}

// originStats is what the origin process tells the test.
type originStats struct {
	// Requests counts the requests the origin served, by path and query
	// (the query normalised: parsed and encoded again).
	Requests map[string]int
	// Cookies counts requests that carried a Cookie header.
	Cookies int
	// Published is when each part ("msn.part") appeared at the origin,
	// Unix nanoseconds.
	Published map[string]int64
}

// recorder counts requests per URL and notes when parts appear.
type recorder struct {
	mu sync.Mutex
	st originStats
}

func (rc *recorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.Path
		if q := r.URL.Query().Encode(); q != "" {
			key += "?" + q
		}
		rc.mu.Lock()
		rc.st.Requests[key]++
		if r.Header.Get("Cookie") != "" {
			rc.st.Cookies++
		}
		rc.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (rc *recorder) serveStats(w http.ResponseWriter, _ *http.Request) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&rc.st)
}

// watch notes the publication time of every part of rend until ctx ends.
func (rc *recorder) watch(ctx context.Context, rend *packager.Rendition) {
	for {
		v := rend.View()
		rc.mu.Lock()
		for _, seg := range v.Segments {
			for i := range seg.Parts {
				k := fmt.Sprintf("%d.%d", seg.MSN, i)
				if _, ok := rc.st.Published[k]; !ok {
					rc.st.Published[k] = v.Updated.UnixNano()
				}
			}
		}
		rc.mu.Unlock()
		select {
		case <-v.Changed:
		case <-ctx.Done():
			return
		}
	}
}

// runOrigin is the origin process: a packager fed with a test layer
// at 30 fps (like origin_test.go's live helper), an origin wrapped in a
// recorder, on a loopback port it prints once the first segment is
// complete. It ends on SIGTERM or when its stdin closes.
func runOrigin() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { // the test closes our stdin, or dies
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		cancel()
	})

	clip, err := client.LoadClip(filepath.Join("..", "..", "shared", "media", "layer-"+os.Getenv(originEnv)+".h264"))
	if err != nil {
		return fmt.Errorf("test media: %w", err)
	}
	reg := sfu.NewRegistry(nil)
	pk := packager.New(packager.Config{})
	wg.Go(func() { _ = pk.Run(ctx, reg) })
	stopFeed, err := livefeed.Publish(reg, "b", clip)
	if err != nil {
		return err
	}
	defer stopFeed()

	// Wait for the rendition and its first complete segment: the packager
	// subscribes when it sees the track (no event to wait on before that).
	var rend *packager.Rendition
	for deadline := time.Now().Add(10 * time.Second); rend == nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			return errors.New("no rendition within 10 s")
		}
		if s := pk.Stream("b"); s != nil {
			rend = s.Rendition("video")
		}
	}
	for {
		v := rend.View()
		if _, ok := v.LastComplete(); ok {
			break
		}
		select {
		case <-v.Changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Second):
			return errors.New("no complete segment within 10 s")
		}
	}

	rc := &recorder{st: originStats{Requests: map[string]int{}, Published: map[string]int64{}}}
	wg.Go(func() { rc.watch(ctx, rend) })
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_test/stats", rc.serveStats)
	mux.Handle("/", rc.wrap(origin.New(origin.Config{Source: pk})))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, BaseContext: func(net.Listener) context.Context { return ctx }}
	wg.Go(func() { _ = srv.Serve(ln) })
	fmt.Println(ln.Addr().String())
	<-ctx.Done()
	return srv.Close()
}

// originProc is the origin process as the test sees it.
type originProc struct {
	addr string // host:port
	pid  int
}

var (
	originBinOnce sync.Once
	originBin     string
	originBinErr  error
	originBinDir  string
)

// originBinary is the program of the origin process: this test binary, or
// under the race detector the same test package built without it. The
// tests measure the caches, and a race-instrumented origin answers a part
// in milliseconds instead of microseconds, long enough for most of 200
// simultaneous requests to land on nginx's cache lock, whose waiters poll
// every 500 ms. (The origin's own race tests are in origin/.)
func originBinary(tb testing.TB) string {
	tb.Helper()
	if !raceEnabled {
		return os.Args[0]
	}
	originBinOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			originBinErr = fmt.Errorf("go tool not in PATH: %w", err)
			return
		}
		if originBinDir, err = os.MkdirTemp("", "hybridcast-cdn-origin-"); err != nil {
			originBinErr = err
			return
		}
		originBin = filepath.Join(originBinDir, "origin.test")
		cmd := exec.Command(goTool, "test", "-c", "-o", originBin, ".")
		cmd.Env = append(os.Environ(), "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			originBinErr = fmt.Errorf("go test -c: %w\n%s", err, out)
		}
	})
	if originBinErr != nil {
		tb.Fatal(originBinErr)
	}
	return originBin
}

// startOrigin starts the origin process and returns once it serves.
func startOrigin(tb testing.TB) *originProc {
	tb.Helper()
	cmd := exec.Command(originBinary(tb), "-test.run=^$")
	cmd.Env = append(os.Environ(), originEnv+"="+*layer)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = stdin.Close() // the origin ends when its stdin closes
		if err := cmd.Wait(); err != nil {
			tb.Errorf("origin process: %v", err)
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		tb.Fatalf("origin process did not start: %v", err)
	}
	return &originProc{addr: strings.TrimSpace(line), pid: cmd.Process.Pid}
}

func (o *originProc) stats(tb testing.TB) originStats {
	tb.Helper()
	res, err := http.Get("http://" + o.addr + "/_test/stats")
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	var st originStats
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		tb.Fatal(err)
	}
	return st
}

// originKey is how the recorder names a URL: path and normalised query.
func originKey(path string, q url.Values) string {
	if e := q.Encode(); e != "" {
		return path + "?" + e
	}
	return path
}
