// Command load measures a running hybridcast server under many WHEP viewers.
// In one process it runs one WHIP publisher looping a test clip and N pion
// WHEP viewers, holds them for a measurement window and reports how many
// viewers connected, what share of the published frames each one received,
// the added latency, keyframe starts, PLIs, server memory per viewer and the
// tool's own CPU use.
//
//	go build -o /tmp/hc ./cmd/hybridcast
//	/tmp/hc --loopback-only --publish-token T --http-addr 127.0.0.1:8080 --webrtc-udp-addr 127.0.0.1:8189 &
//	go run ./examples/load -token T -viewers 200 -duration 30s -server-pid $!
//
// Timeline:
//
//	publish ──settle──┬─ viewers join at -ramp/s ─┬──── -duration window ────┬─ close all
//	                  RSS before                   T0                         T1, RSS after
//
// Frames are matched by client.PayloadFingerprint: a received frame belongs
// to the latest send of its fingerprint no later than the frame's first
// packet, within -match-window (the clip loops every 10 s, so fingerprints
// repeat). Each viewer is expected to receive every frame the publisher sent
// in [max(T0, the viewer's first keyframe), T1 - tail].
//
// Latency is measured three ways. The frame figures run from the publisher
// writing a frame's first packet to a viewer's goroutine reading it, so on
// a shared machine they include the viewers' own wait for the CPU. "every
// packet" runs from the publisher writing each packet to the kernel
// receiving it at the viewer's socket (SO_TIMESTAMPNS; -kernel-stamps): the
// server's whole added latency, its ingress included, plus the loopback's.
// The server-side lines are the server's own histograms of two stages
// (arrival → SRTP written, send queue → kernel) from its /metrics.
// -yield lowers the viewers' threads to SCHED_IDLE so the server runs
// first, as it would with the viewers on other machines.
//
// Relative media paths are resolved against the repository root (the
// directory holding this module's go.mod). Only loopback hosts are accepted
// unless -allow-remote is given.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hybridcast/hybridcast/internal/client"
	"github.com/hybridcast/hybridcast/internal/procstat"
	"github.com/hybridcast/hybridcast/sfu"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Limits that keep every loop and buffer bounded.
const (
	maxViewers      = 5000
	maxDuration     = time.Hour
	closeParallel   = 32
	progressEvery   = 5 * time.Second
	maxFrameRate    = 60 // bounds the per-viewer frame log
	clkTck          = 100
	maxErrorKinds   = 20
	maxErrorKeySize = 240
)

func main() {
	if os.Getenv(wakeupProbeEnv) != "" {
		if err := runWakeupProbe(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "load: wakeup probe:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

type config struct {
	base, stream, token, viewerToken                string
	video, audio                                    string
	viewers, maxPending                             int
	ramp, pace                                      float64
	duration, settle, tail, match                   time.Duration
	setupTimeout                                    time.Duration
	serverPID                                       int
	loopback, allowRemote, pli, lean, yield, stamps bool
	gro                                             bool
	rcvbuf                                          int
	jsonOut, verbose, wakeupProbe                   bool
	cpuProfile                                      string
}

func parseFlags() (config, error) {
	var c config
	flag.StringVar(&c.base, "url", "http://127.0.0.1:8080", "server base URL; WHIP is POST {url}/whip/{stream}, WHEP POST {url}/whep/{stream}")
	flag.StringVar(&c.stream, "stream", "load", "stream name")
	flag.StringVar(&c.token, "token", "", "publish bearer token")
	flag.StringVar(&c.viewerToken, "viewer-token", "", "bearer token for viewers, if the server wants one")
	flag.StringVar(&c.video, "video", "../shared/media/layer-f.h264", "video clip (.h264 or .ivf), relative to the repository root; empty for none")
	flag.StringVar(&c.audio, "audio", "../shared/media/audio.ogg", "Opus clip (.ogg), relative to the repository root; empty for none")
	flag.Float64Var(&c.pace, "pace", 0, "publisher pacing: video packets leave at most at this multiple of the clip's mean bitrate, as a browser's pacer sends them (Chrome: 2.5); 0 writes each frame's packets in one burst")
	flag.IntVar(&c.viewers, "viewers", 200, fmt.Sprintf("number of WHEP viewers (at most %d)", maxViewers))
	flag.Float64Var(&c.ramp, "ramp", 20, "viewers started per second")
	flag.IntVar(&c.maxPending, "max-pending", 20, "most viewers negotiating at once")
	flag.DurationVar(&c.duration, "duration", 30*time.Second, "measurement window after all viewers joined")
	flag.DurationVar(&c.settle, "settle", 2*time.Second, "publisher run time before the first viewer joins")
	flag.DurationVar(&c.tail, "tail", 500*time.Millisecond, "frames sent in the last part of the window are in flight and not expected")
	flag.DurationVar(&c.match, "match-window", 2*time.Second, "largest send-to-receive gap for matching a frame by fingerprint (keep below the clip length)")
	flag.DurationVar(&c.setupTimeout, "setup-timeout", 30*time.Second, "bound on one viewer's (or the publisher's) POST + ICE + DTLS")
	flag.IntVar(&c.serverPID, "server-pid", 0, "server process id: report its RSS growth per viewer and its CPU (Linux /proc)")
	flag.BoolVar(&c.loopback, "loopback", true, "use only 127.0.0.1 ICE candidates (false needs -allow-remote)")
	flag.BoolVar(&c.allowRemote, "allow-remote", false, "allow a non-loopback server and non-loopback ICE")
	flag.BoolVar(&c.pli, "pli", true, "viewers send PLI while their picture is broken, as browsers do")
	flag.IntVar(&c.rcvbuf, "rcvbuf", 4<<20, "kernel receive buffer per viewer socket, bytes (SO_RCVBUFFORCE as root); 0 keeps the default")
	flag.BoolVar(&c.lean, "lean", true, "viewers keep only NACK and receiver-report interceptors (no per-packet stats, no TWCC), so the tool costs less than the server")
	flag.BoolVar(&c.stamps, "kernel-stamps", true, "read each video packet's kernel receive time (SO_TIMESTAMPNS, Linux) and report every packet's latency from the publisher's write to the viewer's socket, apart from the viewers' own wait for the CPU")
	flag.BoolVar(&c.gro, "gro", true, "viewers' sockets take UDP GRO (Linux): a run of datagrams the server sent in one segmented (GSO) send reaches a viewer whole instead of being cut apart by the kernel on delivery, which on loopback it charges to the server; over a network the server's card cuts the run and the viewer's machine receives it")
	flag.BoolVar(&c.wakeupProbe, "wakeup-probe", true, "measure over the window how late this machine wakes a normal-priority thread (a 1 ms timer in a process of its own, Linux): the floor under every latency figure")
	flag.BoolVar(&c.yield, "yield", false, "run the viewers' threads at SCHED_IDLE (Linux) and only the publisher's send thread at normal priority, so the server takes the CPU first, as if the viewers were on other machines; the viewers' own latency figures then include their wait for the CPU")
	flag.StringVar(&c.cpuProfile, "cpuprofile", "", "write the tool's CPU profile over the measurement window to this `file`")
	flag.BoolVar(&c.jsonOut, "json", false, "print the report as JSON on stdout instead of text")
	flag.BoolVar(&c.verbose, "v", false, "log publisher and viewer warnings (info with -v -v is not offered: 200 viewers are noisy)")
	flag.Parse()

	var errs []error
	if c.viewers < 0 || c.viewers > maxViewers {
		errs = append(errs, fmt.Errorf("-viewers %d: want 0..%d", c.viewers, maxViewers))
	}
	if !(c.ramp > 0 && c.ramp <= 1000) {
		errs = append(errs, fmt.Errorf("-ramp %v: want (0, 1000] viewers per second", c.ramp))
	}
	if c.pace != 0 && !(c.pace >= 1 && c.pace <= 100) {
		errs = append(errs, fmt.Errorf("-pace %v: want 0 (no pacing) or [1, 100] times the clip's bitrate", c.pace))
	}
	if c.maxPending < 1 {
		errs = append(errs, fmt.Errorf("-max-pending %d: want at least 1", c.maxPending))
	}
	if c.duration <= 0 || c.duration > maxDuration {
		errs = append(errs, fmt.Errorf("-duration %v: want (0, %v]", c.duration, maxDuration))
	}
	if c.settle < 0 || c.settle > time.Minute {
		errs = append(errs, fmt.Errorf("-settle %v: want [0, 1m]", c.settle))
	}
	if c.tail < 0 || c.tail >= c.duration {
		errs = append(errs, fmt.Errorf("-tail %v: want [0, duration)", c.tail))
	}
	if c.match <= 0 || c.match >= 10*time.Second {
		errs = append(errs, fmt.Errorf("-match-window %v: want (0, 10s)", c.match))
	}
	if c.setupTimeout <= 0 || c.setupTimeout > 5*time.Minute {
		errs = append(errs, fmt.Errorf("-setup-timeout %v: want (0, 5m]", c.setupTimeout))
	}
	if c.stream == "" || strings.ContainsAny(c.stream, "/?#") {
		errs = append(errs, fmt.Errorf("-stream %q: want a plain name", c.stream))
	}
	if !c.loopback && !c.allowRemote {
		errs = append(errs, errors.New("-loopback=false gathers non-loopback ICE candidates: add -allow-remote"))
	}
	if err := checkHost(c.base, c.allowRemote); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// checkHost refuses a base URL that is not http(s) on a loopback host.
func checkHost(base string, allowRemote bool) error {
	u, err := url.Parse(base)
	if err != nil {
		return fmt.Errorf("-url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("-url %q: want http(s)://host:port", base)
	}
	if allowRemote {
		return nil
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); ip != nil {
		if !ip.IsLoopback() {
			return fmt.Errorf("-url host %s is not loopback: add -allow-remote", host)
		}
		return nil
	}
	if host != "localhost" {
		return fmt.Errorf("-url host %q is not a loopback address: add -allow-remote", host)
	}
	return nil
}

// loopbackOnly is a net.Dialer Control that refuses non-loopback peers, so
// that a Location header cannot send the tool elsewhere.
func loopbackOnly(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("refusing to connect to non-loopback %s (see -allow-remote)", address)
	}
	return nil
}

// sentRec is one video frame the publisher sent. at is relative to the
// tool's start (monotonic clock).
type sentRec struct {
	at       time.Duration
	fp       uint64
	ts       uint32
	keyframe bool
	pkts     []int64 // when each packet was written, Unix ns
}

// recvRec is one video frame a viewer received.
type recvRec struct {
	first, done time.Duration
	kernel      []int64 // each packet's kernel receive time, Unix ns (0: none)
	fp          uint64
	ts          uint32
	complete    bool
	decodable   bool
	keyframe    bool
}

// viewer is one load viewer. frames is appended by the client's video read
// goroutine and read only after Close has returned (which waits for it).
type viewer struct {
	id        int
	v         *client.Viewer
	err       error
	playTook  time.Duration
	playedAt  time.Time
	frames    []recvRec
	maxFrames int
	overflow  int
	dropped   bool
	stats     client.ViewerStats
	closeErr  error
}

func run() error {
	cfg, err := parseFlags()
	if err != nil {
		return err
	}
	level := slog.LevelError
	if cfg.verbose {
		level = slog.LevelWarn
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	video, err := client.LoadClipFile(cfg.video)
	if err != nil {
		return err
	}
	audio, err := client.LoadClipFile(cfg.audio)
	if err != nil {
		return err
	}
	if video == nil {
		return errors.New("-video is empty: the frame measurements need video")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first Ctrl-C, restore the default so a second one kills.
	defer context.AfterFunc(ctx, stop)()

	dialer := &net.Dialer{Timeout: 10 * time.Second}
	if !cfg.allowRemote {
		dialer.Control = loopbackOnly
	}
	transport := &http.Transport{
		Proxy:               nil, // never via a proxy
		DialContext:         dialer.DialContext,
		MaxIdleConnsPerHost: closeParallel,
		IdleConnTimeout:     30 * time.Second,
	}
	defer transport.CloseIdleConnections()
	httpClient := &http.Client{Timeout: cfg.setupTimeout, Transport: transport}
	base := strings.TrimSuffix(cfg.base, "/")
	whip := base + "/whip/" + url.PathEscape(cfg.stream)
	whep := base + "/whep/" + url.PathEscape(cfg.stream)

	start := time.Now()
	rel := func(t time.Time) time.Duration { return t.Sub(start) }
	var rep Report
	rep.Config = reportConfig{URL: base, Stream: cfg.stream, Viewers: cfg.viewers, Ramp: cfg.ramp, Pace: cfg.pace,
		DurationS: cfg.duration.Seconds(), Video: video.Path, TailMS: ms(cfg.tail), MatchWindowMS: ms(cfg.match), GRO: cfg.gro}
	if audio != nil {
		rep.Config.Audio = audio.Path
	}

	// The publisher. sends is appended by its send goroutine and read
	// after Close.
	var sends []sentRec
	maxSends := maxFrameRate * int((cfg.settle+cfg.duration+time.Duration(float64(cfg.viewers)/cfg.ramp*float64(time.Second))+10*time.Minute)/time.Second)
	var sendOverflow int
	sendByTS := map[uint32]int{} // the send goroutine's index of sends
	var y yielder
	var onSendStart func()
	if cfg.yield {
		onSendStart = y.keepThread
	}
	setup, cancel := context.WithTimeout(ctx, cfg.setupTimeout)
	pub, err := client.Publish(setup, client.PublishConfig{
		URL: whip, Token: cfg.token, Video: video, Audio: audio, Loopback: cfg.loopback,
		Logger: log, HTTPClient: httpClient, PaceFactor: cfg.pace, OnSendStart: onSendStart,
		OnFrameSent: func(f client.SentFrame) {
			if len(sends) >= maxSends {
				sendOverflow++
				return
			}
			sendByTS[f.Timestamp] = len(sends)
			sends = append(sends, sentRec{at: rel(f.SentAt), fp: f.Fingerprint, ts: f.Timestamp, keyframe: f.Keyframe,
				pkts: make([]int64, f.Packets)})
		},
		OnPacketSent: func(ts uint32, i int, at time.Time) {
			if j, ok := sendByTS[ts]; ok && i < len(sends[j].pkts) {
				sends[j].pkts[i] = at.UnixNano()
				if i == len(sends[j].pkts)-1 {
					delete(sendByTS, ts)
				}
			}
		},
	})
	cancel()
	if err != nil {
		return fmt.Errorf("publish to %s: %w", whip, err)
	}
	progress("publishing %s (%s, %d frames, %v loop)", pub.Location(), video.Path, len(video.Frames), video.Duration().Round(time.Millisecond))
	pubClosed := false
	closePub := func() {
		if !pubClosed {
			pubClosed = true
			if err := pub.Close(); err != nil {
				rep.PublisherCloseError = err.Error()
			}
		}
	}
	defer closePub()
	if cfg.yield {
		yctx, stopYield := context.WithCancel(ctx)
		var ywg sync.WaitGroup
		started := make(chan error, 1)
		ywg.Go(func() { y.run(yctx, 50*time.Millisecond, started) })
		defer func() { stopYield(); ywg.Wait() }()
		if err := <-started; err != nil {
			return fmt.Errorf("-yield: %w", err)
		}
		rep.Config.Yield = true
		progress("viewers' threads at SCHED_IDLE, the publisher's send thread at normal priority")
	}

	sleep(ctx, cfg.settle)
	memBefore, memErr := readRSS(cfg.serverPID)
	if memErr != nil {
		progress("server memory: %v", memErr)
	}

	// Ramp: start viewers at cfg.ramp per second, at most cfg.maxPending
	// negotiating at once.
	viewers := make([]*viewer, 0, cfg.viewers)
	rampStart := time.Now()
	var joinWG sync.WaitGroup
	var connected, failed atomic.Int64
	pending := make(chan struct{}, cfg.maxPending)
	interval := time.Duration(float64(time.Second) / cfg.ramp)
	maxFrames := maxFrameRate * int((cfg.duration+time.Duration(float64(cfg.viewers)/cfg.ramp*float64(time.Second))+10*time.Minute)/time.Second)
	tick := time.NewTicker(interval)
	lastProgress := time.Now()
ramp:
	for i := range cfg.viewers {
		if i > 0 {
			select {
			case <-tick.C:
			case <-ctx.Done():
				break ramp
			}
		}
		select {
		case pending <- struct{}{}:
		case <-ctx.Done():
			break ramp
		}
		vw := &viewer{id: i, maxFrames: maxFrames}
		viewers = append(viewers, vw)
		joinWG.Go(func() {
			defer func() { <-pending }()
			vw.play(ctx, cfg, whep, log, httpClient, rel)
			if vw.err != nil {
				failed.Add(1)
			} else {
				connected.Add(1)
			}
		})
		if time.Since(lastProgress) >= progressEvery/2 {
			lastProgress = time.Now()
			progress("ramp: %d/%d started, %d connected, %d failed", i+1, cfg.viewers, connected.Load(), failed.Load())
		}
	}
	tick.Stop()
	joinWG.Wait()
	rep.Ramp.Seconds = time.Since(rampStart).Seconds()
	progress("ramp done in %.1fs: %d connected, %d failed", rep.Ramp.Seconds, connected.Load(), failed.Load())

	// Measurement window.
	t0 := time.Now()
	cpu0, srv0, sys0 := selfCPU(), serverCPU(cfg.serverPID), readSystemCPU()
	toolDrops0, srvDrops0, rcvbuf0 := udpDrops(os.Getpid()), udpDrops(cfg.serverPID), udpRcvbufErrors()
	pub0 := pub.Stats()
	metricsURL := strings.TrimRight(cfg.base, "/") + "/metrics"
	fwd0, fwdErr0 := scrapeForwarding(ctx, httpClient, metricsURL)
	stopProfile, err := startProfile(cfg.cpuProfile)
	if err != nil {
		return err
	}
	var probe *wakeupProbe
	if cfg.wakeupProbe {
		if probe, err = startWakeupProbe(ctx); err != nil {
			rep.Notes = append(rep.Notes, "wakeup probe: "+err.Error())
		}
	}
	window := time.NewTimer(cfg.duration)
	prog := time.NewTicker(progressEvery)
	interrupted := ctx.Err() != nil
	for done := interrupted; !done; {
		select {
		case <-prog.C:
			s := pub.Stats()
			progress("window %4.0fs: publisher frames=%d plis=%d | tool cpu %.2f cores", time.Since(t0).Seconds(),
				s.FramesSent, s.PLIsReceived, (selfCPU()-cpu0).Seconds()/time.Since(t0).Seconds())
		case <-window.C:
			done = true
		case <-pub.Done():
			rep.Notes = append(rep.Notes, "publisher connection ended during the window")
			done = true
		case <-ctx.Done():
			interrupted = true
			done = true
		}
	}
	window.Stop()
	prog.Stop()
	stopProfile()
	if probe != nil {
		if w, err := probe.stop(); err != nil {
			rep.Notes = append(rep.Notes, err.Error())
		} else {
			rep.Resources.Wakeup = &w
		}
	}
	t1 := time.Now()
	cpu1, srv1, sys1 := selfCPU(), serverCPU(cfg.serverPID), readSystemCPU()
	toolDrops1, srvDrops1, rcvbuf1 := udpDrops(os.Getpid()), udpDrops(cfg.serverPID), udpRcvbufErrors()
	pub1 := pub.Stats()
	fwd1, fwdErr1 := scrapeForwarding(context.Background(), httpClient, metricsURL)
	memAfter, memErr2 := readRSS(cfg.serverPID)
	for _, vw := range viewers {
		if vw.v != nil {
			select {
			case <-vw.v.Done():
				vw.dropped = true
			default:
			}
		}
	}
	rep.Interrupted = interrupted
	rep.WindowSeconds = t1.Sub(t0).Seconds()

	// Close every viewer (each sends DELETE), then the publisher.
	closeStart := time.Now()
	closeAll(viewers)
	closePub()
	rep.CloseSeconds = time.Since(closeStart).Seconds()
	progress("closed %d viewers and the publisher in %.1fs", len(viewers), rep.CloseSeconds)

	// Resource use.
	wall := t1.Sub(t0).Seconds()
	rep.Resources.ToolCPUCores = (cpu1 - cpu0).Seconds() / wall
	rep.Resources.ToolRSSMB = float64(mustRSS(os.Getpid())) / (1 << 20)
	rep.Resources.CPUs = runtime.NumCPU()
	if sys0.ok && sys1.ok && sys1.Total > sys0.Total {
		rep.Resources.MachineBusyPct = 100 * float64(sys1.Busy-sys0.Busy) / float64(sys1.Total-sys0.Total)
		rep.Resources.StealPct = 100 * float64(sys1.Steal-sys0.Steal) / float64(sys1.Total-sys0.Total)
		rep.Resources.OtherCPUCores = rep.Resources.MachineBusyPct/100*float64(rep.Resources.CPUs) - rep.Resources.ToolCPUCores
	}
	if toolDrops0 >= 0 && toolDrops1 >= 0 {
		rep.Resources.ToolUDPDrops = toolDrops1 - toolDrops0
	}
	if rcvbuf0 >= 0 && rcvbuf1 >= 0 {
		rep.Resources.MachineUDPRcvbufErrors = rcvbuf1 - rcvbuf0
	}
	if cfg.serverPID > 0 {
		if srv0 >= 0 && srv1 >= 0 {
			rep.Resources.ServerCPUCores = (srv1 - srv0).Seconds() / wall
			rep.Resources.OtherCPUCores -= rep.Resources.ServerCPUCores
		}
		if srvDrops0 >= 0 && srvDrops1 >= 0 {
			rep.Resources.ServerUDPDrops = srvDrops1 - srvDrops0
		}
		switch {
		case memErr != nil:
			rep.Resources.ServerMemError = memErr.Error()
		case memErr2 != nil:
			rep.Resources.ServerMemError = memErr2.Error()
		default:
			rep.Resources.ServerRSSBeforeMB = float64(memBefore) / (1 << 20)
			rep.Resources.ServerRSSAfterMB = float64(memAfter) / (1 << 20)
			if n := connected.Load(); n > 0 {
				rep.Resources.ServerMBPerViewer = float64(memAfter-memBefore) / (1 << 20) / float64(n)
			}
		}
	}
	rep.Publisher = publisherReport{
		FramesSent: pub1.FramesSent, FramesInWindow: pub1.FramesSent - pub0.FramesSent,
		PLIsTotal: pub1.PLIsReceived, PLIsInWindow: pub1.PLIsReceived - pub0.PLIsReceived,
		FIRsTotal: pub1.FIRsReceived, NACKsTotal: pub1.NACKsReceived,
		RequestedKeyframes: pub1.RequestedKeyframes, WriteErrors: pub1.WriteErrors,
	}
	if sendOverflow > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("send log full: %d frames not logged", sendOverflow))
	}

	analyze(&rep, cfg, viewers, sends, rel(t0), rel(t1))
	if d := video.Duration().Seconds(); d > 0 {
		rep.Delivery.DueFrames = int((t1.Sub(t0) - cfg.tail).Seconds() * float64(len(video.Frames)) / d)
	}
	if cfg.yield {
		rep.Config.PublisherThread = y.publisherPolicy()
	}
	if err := errors.Join(fwdErr0, fwdErr1); err != nil {
		rep.Notes = append(rep.Notes, "server forwarding histogram in the window: "+err.Error())
	} else {
		rep.ServerForwarding = windowForwarding(fwd0, fwd1)
	}
	if f, err := serverForwarding(context.Background(), httpClient, strings.TrimRight(cfg.base, "/")+"/api/streams"); err == nil {
		rep.Notes = append(rep.Notes, f)
	}

	if cfg.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	rep.print(os.Stdout)
	return nil
}

// play connects the viewer; it records, never returns, the error.
func (vw *viewer) play(ctx context.Context, cfg config, whep string, log *slog.Logger, hc *http.Client, rel func(time.Time) time.Duration) {
	setup, cancel := context.WithTimeout(ctx, cfg.setupTimeout)
	defer cancel()
	begin := time.Now()
	vw.v, vw.err = client.Play(setup, client.PlayConfig{
		URL: whep, Token: cfg.viewerToken, Loopback: cfg.loopback, Logger: log, HTTPClient: hc,
		RequestKeyframes: cfg.pli, Lean: cfg.lean, ReceiveBuffer: cfg.rcvbuf, KernelTimestamps: cfg.stamps, GRO: cfg.gro,
		OnFrame: func(f client.VideoFrame) {
			if len(vw.frames) >= vw.maxFrames {
				vw.overflow++
				return
			}
			var kernel []int64
			if len(f.KernelAt) > 0 {
				kernel = make([]int64, len(f.KernelAt))
				for i, t := range f.KernelAt {
					if !t.IsZero() {
						kernel[i] = t.UnixNano()
					}
				}
			}
			vw.frames = append(vw.frames, recvRec{
				first: rel(f.FirstPacketAt), done: rel(f.ReceivedAt), kernel: kernel, fp: f.Fingerprint, ts: f.Timestamp,
				complete: f.Complete, decodable: f.Decodable, keyframe: f.Keyframe,
			})
		},
	})
	vw.playedAt = time.Now()
	vw.playTook = vw.playedAt.Sub(begin)
}

// closeAll closes the connected viewers, closeParallel at a time, and waits.
func closeAll(viewers []*viewer) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, closeParallel)
	for _, vw := range viewers {
		if vw.v == nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			vw.closeErr = vw.v.Close()
			vw.stats = vw.v.Stats()
		})
	}
	wg.Wait()
}

// Report is the tool's result; -json prints it as is.
type Report struct {
	Config        reportConfig `json:"config"`
	Interrupted   bool         `json:"interrupted"`
	WindowSeconds float64      `json:"window_seconds"`
	CloseSeconds  float64      `json:"close_seconds"`
	Ramp          struct {
		Seconds float64 `json:"seconds"`
	} `json:"ramp"`
	Viewers             viewersReport   `json:"viewers"`
	Delivery            deliveryReport  `json:"delivery"`
	Latency             latencyReport   `json:"latency"`
	Publisher           publisherReport `json:"publisher"`
	Resources           resourceReport  `json:"resources"`
	PublisherCloseError string          `json:"publisher_close_error,omitempty"`
	// ServerForwarding is the server's own forwarding latency during the
	// window, from its /metrics histograms.
	ServerForwarding *serverForwardingReport `json:"server_forwarding,omitempty"`
	Notes            []string                `json:"notes,omitempty"`
}

type reportConfig struct {
	URL           string  `json:"url"`
	Stream        string  `json:"stream"`
	Viewers       int     `json:"viewers"`
	Ramp          float64 `json:"ramp_per_second"`
	Pace          float64 `json:"pace_factor"`
	DurationS     float64 `json:"duration_seconds"`
	Video         string  `json:"video"`
	Audio         string  `json:"audio,omitempty"`
	TailMS        float64 `json:"tail_ms"`
	MatchWindowMS float64 `json:"match_window_ms"`
	// Yield: the viewers ran at SCHED_IDLE (-yield); PublisherThread is
	// the scheduling the publisher's send thread got then.
	Yield           bool   `json:"yield,omitempty"`
	PublisherThread string `json:"publisher_thread,omitempty"`
	// GRO: the viewers' sockets took UDP GRO (-gro).
	GRO bool `json:"gro"`
}

type viewersReport struct {
	Started           int            `json:"started"`
	Connected         int            `json:"connected"`
	Failed            int            `json:"failed"`
	FailReasons       map[string]int `json:"fail_reasons,omitempty"`
	Dropped           int            `json:"dropped_during_window"`
	NoVideo           int            `json:"no_video"`
	NotKeyframeStart  int            `json:"first_packet_not_keyframe_start"`
	LateFirstKeyframe int            `json:"first_keyframe_after_window_start"`
	CloseErrors       map[string]int `json:"close_errors,omitempty"`
	Connect           percentiles    `json:"connect_ms"`
	FirstKeyframe     percentiles    `json:"first_keyframe_after_connect_ms"`
	PacketsLost       uint64         `json:"video_packets_lost"`
	PacketsLate       uint64         `json:"video_packets_late"`
	AudioLost         uint64         `json:"audio_packets_lost"`
	PLIsSent          uint64         `json:"plis_sent"`
	FrameLogOverflow  int            `json:"frame_log_overflow,omitempty"`
}

type deliveryReport struct {
	WindowFrames int `json:"publisher_frames_in_window"`
	// DueFrames is how many frames the clip's rate puts in the window: a
	// publisher that did not get the CPU in time sent fewer, and the load
	// was lighter than asked.
	DueFrames           int     `json:"publisher_frames_due"`
	Expected            int     `json:"expected"`
	Complete            int     `json:"complete"`
	Decodable           int     `json:"decodable"`
	OverallPct          float64 `json:"overall_complete_pct"`
	OverallDecodablePct float64 `json:"overall_decodable_pct"`
	MinPct              float64 `json:"min_viewer_complete_pct"`
	MedianPct           float64 `json:"median_viewer_complete_pct"`
	MinDecodablePct     float64 `json:"min_viewer_decodable_pct"`
	ViewersBelow99      int     `json:"viewers_below_99pct"`
	Unmatched           int     `json:"unmatched_complete_frames"`
}

type latencyReport struct {
	// FirstPacket is the publisher writing a frame's first packet to the
	// viewer receiving that frame's first packet: the forwarding path.
	FirstPacket percentiles `json:"first_packet_ms"`
	// Frame is the publisher writing a frame's first packet to the viewer
	// holding the whole frame: forwarding plus the frame's burst.
	Frame percentiles `json:"frame_complete_ms"`
	// Keyframe is Frame for keyframes only (the largest bursts).
	Keyframe percentiles `json:"keyframe_complete_ms"`
	// Socket is, for every video packet of the complete frames, the
	// publisher writing it to the kernel receiving it at the viewer's
	// socket (SO_TIMESTAMPNS, -kernel-stamps): the server's added latency
	// plus the publisher's and the loopback's, without the viewers' wait
	// for the CPU. Frames whose packet count differs from the sent one are
	// left out.
	Socket              percentiles `json:"packet_to_socket_ms"`
	SocketWithin10msPct float64     `json:"packet_to_socket_within_10ms_pct"`
	// ViewerMedianP50 and ViewerMedianMax are the median and largest
	// per-viewer median of Frame.
	ViewerMedianP50 float64 `json:"viewer_median_frame_ms_p50"`
	ViewerMedianMax float64 `json:"viewer_median_frame_ms_max"`
}

type publisherReport struct {
	FramesSent         uint64 `json:"frames_sent"`
	FramesInWindow     uint64 `json:"frames_in_window"`
	PLIsTotal          uint64 `json:"plis_total"`
	PLIsInWindow       uint64 `json:"plis_in_window"`
	FIRsTotal          uint64 `json:"firs_total"`
	NACKsTotal         uint64 `json:"nacks_total"`
	RequestedKeyframes uint64 `json:"requested_keyframes"`
	WriteErrors        uint64 `json:"write_errors"`
}

type resourceReport struct {
	CPUs         int     `json:"cpus"`
	ToolCPUCores float64 `json:"tool_cpu_cores"`
	// OtherCPUCores is the machine's busy time not spent in the tool or
	// the server: other processes and unattributed kernel work.
	OtherCPUCores float64 `json:"other_cpu_cores"`
	// ToolUDPDrops and ServerUDPDrops count datagrams the kernel dropped at
	// the process's UDP sockets during the window (/proc/net/udp "drops");
	// MachineUDPRcvbufErrors is the machine-wide RcvbufErrors delta.
	ToolUDPDrops           int64   `json:"tool_udp_drops"`
	ServerUDPDrops         int64   `json:"server_udp_drops"`
	MachineUDPRcvbufErrors int64   `json:"machine_udp_rcvbuf_errors"`
	ToolRSSMB              float64 `json:"tool_rss_mb"`
	ServerCPUCores         float64 `json:"server_cpu_cores,omitempty"`
	MachineBusyPct         float64 `json:"machine_busy_pct"`
	// StealPct is the share of the CPUs' time the hypervisor gave to
	// other guests (/proc/stat steal): neither busy nor idle for us, and
	// every bit of it delays whatever was due to run.
	StealPct float64 `json:"steal_pct"`
	// Wakeup is the wakeup probe's measure (-wakeup-probe).
	Wakeup            *wakeupReport `json:"wakeup_ms,omitempty"`
	ServerRSSBeforeMB float64       `json:"server_rss_before_mb,omitempty"`
	ServerRSSAfterMB  float64       `json:"server_rss_after_mb,omitempty"`
	ServerMBPerViewer float64       `json:"server_mb_per_viewer,omitempty"`
	ServerMemError    string        `json:"server_mem_error,omitempty"`
}

type percentiles struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func newPercentiles(d []time.Duration) percentiles {
	if len(d) == 0 {
		return percentiles{}
	}
	slices.Sort(d)
	at := func(q float64) float64 { return ms(nearestRank(d, q)) }
	return percentiles{N: len(d), P50: at(0.5), P90: at(0.9), P99: at(0.99), Max: ms(d[len(d)-1])}
}

// nearestRank returns the q quantile of d, sorted and not empty.
func nearestRank(d []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(d))+0.999999) - 1
	return d[max(0, min(i, len(d)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// sendIndex finds sends by fingerprint and by RTP timestamp.
type sendIndex struct {
	sends []sentRec
	byFP  map[uint64][]int // ascending send sequence numbers
	byTS  map[uint32]int   // publisher RTP timestamps never repeat within 13 h
	match time.Duration
}

// viewerMatcher pairs one viewer's frames with sends. The server rewrites
// RTP timestamps by a constant offset per source, so once the offset is
// known from frames matched by fingerprint within the match window, a frame
// is paired with the send of timestamp (received - offset), however late it
// is and whichever loop of the clip it came from.
type viewerMatcher struct {
	x         *sendIndex
	offset    uint32
	hasOffset bool
}

func newViewerMatcher(x *sendIndex, frames []recvRec) *viewerMatcher {
	votes := map[uint32]int{}
	for _, r := range frames {
		if !r.complete || r.fp == 0 {
			continue
		}
		if s, ok := x.find(r.fp, r.first); ok {
			votes[r.ts-x.sends[s].ts]++
		}
	}
	m := &viewerMatcher{x: x}
	best := 0
	for off, n := range votes {
		if n > best || n == best && off < m.offset {
			m.offset, m.hasOffset, best = off, true, n
		}
	}
	return m
}

// find returns the send of r, preferring the timestamp match.
func (m *viewerMatcher) find(r recvRec) (int, bool) {
	if m.hasOffset {
		if s, ok := m.x.byTS[r.ts-m.offset]; ok && m.x.sends[s].fp == r.fp {
			return s, true
		}
	}
	return m.x.find(r.fp, r.first)
}

// find returns the latest send of fp at or before first, if it is at most
// the match window earlier.
func (x *sendIndex) find(fp uint64, first time.Duration) (int, bool) {
	seqs := x.byFP[fp]
	for i := len(seqs) - 1; i >= 0; i-- {
		s := x.sends[seqs[i]]
		if s.at <= first {
			return seqs[i], first-s.at <= x.match
		}
	}
	return 0, false
}

func analyze(rep *Report, cfg config, viewers []*viewer, sends []sentRec, t0, t1 time.Duration) {
	x := &sendIndex{sends: sends, byFP: map[uint64][]int{}, byTS: map[uint32]int{}, match: cfg.match}
	for i, s := range sends {
		x.byFP[s.fp] = append(x.byFP[s.fp], i)
		x.byTS[s.ts] = i
	}
	// The window's sends: [w0, wEnd].
	w0, _ := slices.BinarySearchFunc(sends, t0, func(s sentRec, t time.Duration) int { return cmpDur(s.at, t) })
	wEnd, _ := slices.BinarySearchFunc(sends, t1-cfg.tail+1, func(s sentRec, t time.Duration) int { return cmpDur(s.at, t) })
	wEnd-- // last send at or before t1 - tail
	d := &rep.Delivery
	d.WindowFrames = max(0, wEnd-w0+1)

	vr := &rep.Viewers
	vr.Started = len(viewers)
	vr.FailReasons = map[string]int{}
	vr.CloseErrors = map[string]int{}
	var connectD, firstKeyD, allFirst, allFrame, allKey, allSocket, viewerMedians []time.Duration
	var pcts, decPcts []float64
	got := make([]bool, d.WindowFrames)
	gotDec := make([]bool, d.WindowFrames)
	for _, vw := range viewers {
		if vw.err != nil {
			vr.Failed++
			addReason(vr.FailReasons, vw.err.Error(), "")
			continue
		}
		vr.Connected++
		connectD = append(connectD, vw.playTook)
		if vw.closeErr != nil {
			addReason(vr.CloseErrors, vw.closeErr.Error(), vw.v.Location())
		}
		if vw.dropped {
			vr.Dropped++
		}
		vr.FrameLogOverflow += vw.overflow
		vs := vw.stats.Video
		vr.PacketsLost += vs.Lost
		vr.PacketsLate += vs.Late
		vr.AudioLost += vw.stats.Audio.Lost
		vr.PLIsSent += vs.PLIsSent
		if vs.Packets == 0 {
			vr.NoVideo++
		} else if !vs.FirstPacketKeyframe {
			vr.NotKeyframeStart++
		}
		if !vs.FirstKeyframeAt.IsZero() {
			firstKeyD = append(firstKeyD, vs.FirstKeyframeAt.Sub(vw.playedAt))
		}

		// The viewer's first complete keyframe, as a send sequence number.
		m := newViewerMatcher(x, vw.frames)
		firstKey := -1
		for _, r := range vw.frames {
			if r.complete && r.keyframe {
				if s, ok := m.find(r); ok {
					firstKey = s
				}
				break
			}
		}
		from := w0
		if firstKey > w0 {
			from = firstKey
			vr.LateFirstKeyframe++
		}
		clear(got)
		clear(gotDec)
		var lat []time.Duration
		for _, r := range vw.frames {
			if !r.complete || r.fp == 0 {
				continue
			}
			s, ok := m.find(r)
			if !ok {
				d.Unmatched++
				continue
			}
			if s < w0 || s > wEnd {
				continue
			}
			at := sends[s].at
			if pk := sends[s].pkts; len(r.kernel) == len(pk) {
				for k, kt := range r.kernel {
					if kt != 0 && pk[k] != 0 {
						allSocket = append(allSocket, time.Duration(kt-pk[k]))
					}
				}
			}
			allFirst = append(allFirst, r.first-at)
			allFrame = append(allFrame, r.done-at)
			lat = append(lat, r.done-at)
			if sends[s].keyframe {
				allKey = append(allKey, r.done-at)
			}
			if s >= from {
				got[s-w0] = true
				gotDec[s-w0] = gotDec[s-w0] || r.decodable
			}
		}
		expected := max(0, wEnd-from+1)
		c, dc := 0, 0
		for i := from - w0; i >= 0 && i < len(got); i++ {
			if got[i] {
				c++
			}
			if gotDec[i] {
				dc++
			}
		}
		d.Expected += expected
		d.Complete += c
		d.Decodable += dc
		if expected > 0 {
			p := 100 * float64(c) / float64(expected)
			pcts = append(pcts, p)
			decPcts = append(decPcts, 100*float64(dc)/float64(expected))
			if p < 99 {
				d.ViewersBelow99++
			}
		}
		if len(lat) > 0 {
			viewerMedians = append(viewerMedians, newPercentilesMedian(lat))
		}
	}
	if d.Expected > 0 {
		d.OverallPct = 100 * float64(d.Complete) / float64(d.Expected)
		d.OverallDecodablePct = 100 * float64(d.Decodable) / float64(d.Expected)
	}
	if len(pcts) > 0 {
		slices.Sort(pcts)
		slices.Sort(decPcts)
		d.MinPct, d.MedianPct, d.MinDecodablePct = pcts[0], pcts[len(pcts)/2], decPcts[0]
	}
	vr.Connect = newPercentiles(connectD)
	vr.FirstKeyframe = newPercentiles(firstKeyD)
	rep.Latency.FirstPacket = newPercentiles(allFirst)
	rep.Latency.Frame = newPercentiles(allFrame)
	rep.Latency.Keyframe = newPercentiles(allKey)
	rep.Latency.Socket = newPercentiles(allSocket)
	if len(allSocket) > 0 {
		in := 0
		for _, d := range allSocket {
			if d <= 10*time.Millisecond {
				in++
			}
		}
		rep.Latency.SocketWithin10msPct = 100 * float64(in) / float64(len(allSocket))
	}
	if p := newPercentiles(viewerMedians); p.N > 0 {
		rep.Latency.ViewerMedianP50, rep.Latency.ViewerMedianMax = p.P50, p.Max
	}
}

func newPercentilesMedian(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

func cmpDur(a, b time.Duration) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// addReason counts an error message, with the session URL replaced so that
// the same failure of many viewers is one entry.
func addReason(m map[string]int, msg, location string) {
	if location != "" {
		msg = strings.ReplaceAll(msg, location, "<session>")
	}
	if len(msg) > maxErrorKeySize {
		msg = msg[:maxErrorKeySize] + "…"
	}
	if _, ok := m[msg]; !ok && len(m) >= maxErrorKinds {
		msg = "(other errors)"
	}
	m[msg]++
}

func (r *Report) print(w io.Writer) {
	bw := bufio.NewWriter(w)
	defer func() { _ = bw.Flush() }() // stdout: nothing to do on error
	p := func(format string, a ...any) { fmt.Fprintf(bw, format+"\n", a...) }
	pct := func(q percentiles) string {
		if q.N == 0 {
			return "no samples"
		}
		return fmt.Sprintf("p50 %.1f  p90 %.1f  p99 %.1f  max %.1f ms  (n=%d)", q.P50, q.P90, q.P99, q.Max, q.N)
	}
	c := r.Config
	p("=== hybridcast load report ===")
	p("server            %s  stream %q", c.URL, c.Stream)
	p("media             %s + %s", c.Video, c.Audio)
	if c.Pace > 0 {
		p("publisher pacing  %.1f x the clip's mean bitrate", c.Pace)
	} else {
		p("publisher pacing  none: each frame's packets in one burst")
	}
	if c.Yield {
		p("scheduling        -yield: viewers at SCHED_IDLE, the publisher's send thread %s", c.PublisherThread)
	}
	if c.GRO {
		p("viewer sockets    -gro: UDP GRO, the server's segmented sends arrive whole (on loopback the kernel's per-datagram delivery is charged to the server)")
	} else {
		p("viewer sockets    no GRO: the kernel cuts the server's segmented sends apart on delivery, at the server's expense on loopback")
	}
	p("viewers           %d requested, ramp %.0f/s took %.1fs; window %.1fs (asked %.0fs)%s; close took %.1fs",
		c.Viewers, c.Ramp, r.Ramp.Seconds, r.WindowSeconds, c.DurationS, map[bool]string{true: " INTERRUPTED"}[r.Interrupted], r.CloseSeconds)
	p("")
	v := r.Viewers
	p("-- viewers --")
	p("connected         %d of %d started, failed %d, dropped during window %d, no video %d", v.Connected, v.Started, v.Failed, v.Dropped, v.NoVideo)
	for msg, n := range sortedReasons(v.FailReasons) {
		p("  failed x%-5d   %s", n, msg)
	}
	p("connect (POST→DTLS up)          %s", pct(v.Connect))
	p("first keyframe after connect    %s", pct(v.FirstKeyframe))
	p("first packet not keyframe start %d viewers (want 0)", v.NotKeyframeStart)
	p("first keyframe inside window    %d viewers (their expected frames start there)", v.LateFirstKeyframe)
	p("video packets lost %d, late %d; audio packets lost %d; PLIs sent by viewers %d", v.PacketsLost, v.PacketsLate, v.AudioLost, v.PLIsSent)
	for msg, n := range sortedReasons(v.CloseErrors) {
		p("  close error x%-5d %s", n, msg)
	}
	p("")
	d := r.Delivery
	p("-- frames delivered (sent in [max(T0, viewer's first keyframe), T1-%.0fms]) --", c.TailMS)
	p("publisher frames in window  %d of %d due", d.WindowFrames, d.DueFrames)
	if d.DueFrames > 0 && float64(d.WindowFrames) < 0.97*float64(d.DueFrames) {
		p("  WARNING: the publisher fell behind (its thread did not get the CPU in time): the load was lighter than asked")
	}
	p("complete    overall %.2f%%  (%d/%d)   min viewer %.2f%%   median viewer %.2f%%   viewers <99%%: %d",
		d.OverallPct, d.Complete, d.Expected, d.MinPct, d.MedianPct, d.ViewersBelow99)
	p("decodable   overall %.2f%%  (%d/%d)   min viewer %.2f%%", d.OverallDecodablePct, d.Decodable, d.Expected, d.MinDecodablePct)
	p("unmatched complete frames   %d (neither the viewer's timestamp offset nor a send of the fingerprint within %.0f ms fits)", d.Unmatched, c.MatchWindowMS)
	p("")
	l := r.Latency
	p("-- added latency, all viewers, frames sent in the window --")
	p("first packet   %s", pct(l.FirstPacket))
	p("  (publisher writes a frame's first packet → viewer receives that frame's first packet: the forwarding path)")
	p("frame complete %s", pct(l.Frame))
	p("  (publisher writes first packet → viewer has the frame's last packet: forwarding + the frame's burst)")
	p("keyframes only %s", pct(l.Keyframe))
	p("per-viewer median frame latency: median %.1f ms, worst %.1f ms", l.ViewerMedianP50, l.ViewerMedianMax)
	if l.Socket.N > 0 {
		p("every packet   %s; %.2f%% within 10 ms", pct(l.Socket), l.SocketWithin10msPct)
		p("  (publisher writes the packet → the kernel has it at the viewer's socket: the server's added latency, without the viewers' wait for the CPU)")
	}
	p("")
	pb := r.Publisher
	p("-- publisher --")
	p("frames sent %d (%d in window); PLIs received %d (%d in window); FIRs %d; NACKs %d; keyframes sent early for PLI/FIR %d; write errors %d",
		pb.FramesSent, pb.FramesInWindow, pb.PLIsTotal, pb.PLIsInWindow, pb.FIRsTotal, pb.NACKsTotal, pb.RequestedKeyframes, pb.WriteErrors)
	p("")
	rs := r.Resources
	if f := r.ServerForwarding; f != nil {
		p("-- server-side forwarding latency in the window (its /metrics histograms, bucket bounds) --")
		p("arrival → viewer SRTP   %s", f.ToSRTP)
		p("send queue → kernel     %s", f.SendWait)
		if f.Ingress != nil {
			p("  of which kernel → track (ingress) %s", *f.Ingress)
		}
		p("")
	}
	p("-- resources during the window --")
	p("load tool CPU     %.2f cores (getrusage); tool RSS %.0f MB", rs.ToolCPUCores, rs.ToolRSSMB)
	if rs.ServerCPUCores > 0 {
		p("server CPU        %.2f cores (/proc/PID/stat)", rs.ServerCPUCores)
	}
	other := "other processes + unattributed kernel"
	if rs.ServerCPUCores == 0 {
		other += " (server included: no -server-pid)"
	}
	p("machine busy      %.1f%% of %d CPUs (/proc/stat); %s: %.2f cores", rs.MachineBusyPct, rs.CPUs, other, rs.OtherCPUCores)
	p("hypervisor steal  %.1f%% of the CPUs' time (taken by the host, so neither busy nor idle above)", rs.StealPct)
	if w := rs.Wakeup; w != nil {
		p("machine wakeups   a 1 ms timer (own process, %s priority) woke late by p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f ms (n=%d)",
			w.Policy, w.P50, w.P90, w.P99, w.P999, w.Max, w.N)
		p("  (the machine's floor: a packet is handed between threads several times in the server, and each hand-over can wait this long)")
	}
	p("UDP drops         %d at the tool's sockets, %d at the server's, %d RcvbufErrors machine-wide (kernel receive buffers full)",
		rs.ToolUDPDrops, rs.ServerUDPDrops, rs.MachineUDPRcvbufErrors)
	switch {
	case rs.ServerMemError != "":
		p("server memory     %s", rs.ServerMemError)
	case rs.ServerRSSAfterMB > 0:
		p("server RSS        %.1f MB before viewers → %.1f MB after window: %.3f MB per connected viewer",
			rs.ServerRSSBeforeMB, rs.ServerRSSAfterMB, rs.ServerMBPerViewer)
	}
	if r.PublisherCloseError != "" {
		p("publisher close error: %s", r.PublisherCloseError)
	}
	for _, n := range r.Notes {
		p("note: %s", n)
	}
}

// sortedReasons yields reasons by falling count.
func sortedReasons(m map[string]int) func(func(string, int) bool) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	return func(yield func(string, int) bool) {
		for _, k := range keys {
			if !yield(k, m[k]) {
				return
			}
		}
	}
}

// progress prints a timestamped line to stderr.
func progress(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, a...))
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// serverCPU is the user + system CPU time of pid from /proc/PID/stat, or
// -1. Linux reports it in clock ticks, 100 per second on every common
// configuration.
func serverCPU(pid int) time.Duration {
	if pid <= 0 {
		return -1
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// The command name may hold spaces; fields start after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 { // f[0] is field 3 (state); utime is 14, stime 15
		return -1
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return time.Duration(ut+st) * time.Second / clkTck
}

// systemCPU is the machine's CPU time; ok is false without /proc/stat.
type systemCPU struct {
	procstat.CPU
	ok bool
}

func readSystemCPU() systemCPU {
	c, ok := procstat.Read()
	return systemCPU{c, ok}
}

// readRSS returns VmRSS of pid in bytes; pid 0 means not asked.
func readRSS(pid int) (uint64, error) {
	if pid <= 0 {
		return 0, nil
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read VmRSS: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse VmRSS %q: %w", rest, err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read VmRSS: %w", err)
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

func mustRSS(pid int) uint64 {
	n, _ := readRSS(pid)
	return n
}

// udpDrops sums the kernel's drop counters (/proc/net/udp{,6}, last
// column) over pid's UDP sockets, or returns -1.
func udpDrops(pid int) int64 {
	if pid <= 0 {
		return -1
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return -1
	}
	inodes := make(map[string]bool, len(ents))
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if in, ok := strings.CutPrefix(l, "socket:["); ok {
			inodes[strings.TrimSuffix(in, "]")] = true
		}
	}
	var total int64
	for _, name := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		for i, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if i == 0 || len(f) < 13 || !inodes[f[9]] {
				continue
			}
			if n, err := strconv.ParseInt(f[len(f)-1], 10, 64); err == nil {
				total += n
			}
		}
	}
	return total
}

// udpRcvbufErrors reads Udp RcvbufErrors from /proc/net/snmp, or -1.
func udpRcvbufErrors() int64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return -1
	}
	var head []string
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		for i, h := range head {
			if h == "RcvbufErrors" && i < len(f) {
				n, err := strconv.ParseInt(f[i], 10, 64)
				if err != nil {
					return -1
				}
				return n
			}
		}
		return -1
	}
	return -1
}

// serverForwarding reads the server's own forwarding-latency figures from
// its API (cumulative since it started): they exclude this tool's receive
// side, which shares the machine.
func serverForwarding(ctx context.Context, hc *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	res, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer func() { _ = res.Body.Close() }()
	var body struct {
		Forwarding struct {
			ToSRTP   sfu.LatencySummary `json:"arrival_to_srtp"`
			SendWait sfu.LatencySummary `json:"send_queue_wait"`
			Ingress  sfu.LatencySummary `json:"kernel_to_track"`
		} `json:"forwarding"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		return "", err
	}
	f := body.Forwarding
	return fmt.Sprintf("server-side forwarding latency (since start): arrival → viewer SRTP p50 %.1f p90 %.1f p99 %.1f max %.1f ms (of which kernel → track p50 %.1f p90 %.1f p99 %.1f max %.1f ms); send queue → kernel p50 %.1f p90 %.1f p99 %.1f max %.1f ms",
		f.ToSRTP.P50, f.ToSRTP.P90, f.ToSRTP.P99, f.ToSRTP.Max, f.Ingress.P50, f.Ingress.P90, f.Ingress.P99, f.Ingress.Max,
		f.SendWait.P50, f.SendWait.P90, f.SendWait.P99, f.SendWait.Max), nil
}

// The server's forwarding histograms on /metrics.
const (
	metricForwarding = "hybridcast_webrtc_forwarding_latency_seconds"
	metricSendWait   = "hybridcast_webrtc_send_queue_seconds"
	// metricIngress is optional: servers before it lack it.
	metricIngress = "hybridcast_ingress_latency_seconds"
)

// histSample is one scrape of a histogram: the count and the cumulative
// count per upper bound (seconds).
type histSample struct {
	count uint64
	le    map[float64]uint64
}

// scrapeForwarding reads the server's forwarding histograms.
func scrapeForwarding(ctx context.Context, hc *http.Client, url string) (map[string]histSample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	res, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = res.Body.Close() }()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, res.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", url, err)
	}
	out := map[string]histSample{}
	for _, name := range []string{metricForwarding, metricSendWait, metricIngress} {
		f := families[name]
		if f == nil || len(f.GetMetric()) == 0 || f.GetMetric()[0].GetHistogram() == nil {
			if name == metricIngress {
				continue
			}
			return nil, fmt.Errorf("%s has no histogram %s (a server older than this tool?)", url, name)
		}
		h := f.GetMetric()[0].GetHistogram()
		hs := histSample{count: h.GetSampleCount(), le: map[float64]uint64{}}
		for _, b := range h.GetBucket() {
			hs.le[b.GetUpperBound()] = b.GetCumulativeCount()
		}
		out[name] = hs
	}
	return out, nil
}

// serverForwardingReport is the server's forwarding latency in the window.
type serverForwardingReport struct {
	ToSRTP   windowLatency `json:"arrival_to_srtp"`
	SendWait windowLatency `json:"send_queue_wait"`
	// Ingress is the share of ToSRTP from the kernel's receive time to the
	// track; nil when the server does not export it.
	Ingress *windowLatency `json:"kernel_to_track,omitempty"`
}

// windowLatency summarises a histogram's growth over the window. The
// quantiles are bucket upper bounds in ms (the value is at most that), or
// -1 when above the largest bound.
type windowLatency struct {
	Packets       uint64  `json:"packets"`
	Within10msPct float64 `json:"within_10ms_pct"`
	P50MS         float64 `json:"p50_at_most_ms"`
	P90MS         float64 `json:"p90_at_most_ms"`
	P99MS         float64 `json:"p99_at_most_ms"`
}

func windowForwarding(a, b map[string]histSample) *serverForwardingReport {
	r := &serverForwardingReport{ToSRTP: windowOf(a[metricForwarding], b[metricForwarding]), SendWait: windowOf(a[metricSendWait], b[metricSendWait])}
	if i0, ok := a[metricIngress]; ok {
		if i1, ok := b[metricIngress]; ok {
			w := windowOf(i0, i1)
			r.Ingress = &w
		}
	}
	return r
}

func windowOf(a, b histSample) windowLatency {
	w := windowLatency{Packets: b.count - a.count}
	bounds := slices.Sorted(maps.Keys(b.le))
	quantile := func(q float64) float64 {
		want := q * float64(w.Packets)
		for _, ub := range bounds {
			if !math.IsInf(ub, 1) && float64(b.le[ub]-a.le[ub]) >= want {
				return ub * 1000
			}
		}
		return -1
	}
	if w.Packets > 0 {
		w.Within10msPct = 100 * float64(b.le[0.01]-a.le[0.01]) / float64(w.Packets)
		w.P50MS, w.P90MS, w.P99MS = quantile(0.5), quantile(0.9), quantile(0.99)
	}
	return w
}

func (w windowLatency) String() string {
	at := func(v float64) string {
		if v < 0 {
			return "> 50"
		}
		return fmt.Sprintf("≤ %g", v)
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s ms; %.2f%% within 10 ms  (n=%d)", at(w.P50MS), at(w.P90MS), at(w.P99MS), w.Within10msPct, w.Packets)
}

// startProfile starts a CPU profile into path (none when path is empty);
// the returned function stops it and closes the file.
func startProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "load: -cpuprofile:", err)
		}
	}, nil
}
