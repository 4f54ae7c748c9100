//go:build linux

package cdn

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	loadPlayers  = flag.Int("cdn.players", 200, "simulated LL-HLS players in the load tests and benchmark")
	loadDuration = flag.Duration("cdn.duration", 30*time.Second, "how long the players play")
)

// TestNginxLoad plays -cdn.players LL-HLS players through nginx with the
// shipped configuration: each keeps up with the live edge, and the origin
// sees each part and each blocking playlist URL once, but for a few (at
// most 1 %) that nginx lets through twice: a request that arrives just as
// the lock holder's response completes can miss both the lock and the
// cached copy (one blocking playlist in one of four 30 s runs, 2026-12-02).
func TestNginxLoad(t *testing.T) {
	o := startOrigin(t)
	testLoad(t, o, startNginx(t, o.addr), 0.01)
}

// TestVarnishLoad is TestNginxLoad through Varnish with the shipped VCL,
// which lets no URL through twice.
func TestVarnishLoad(t *testing.T) {
	o := startOrigin(t)
	testLoad(t, o, startVarnish(t, o.addr), 0)
}

// testLoad runs the load test; twice is the share of the URLs the origin
// may serve twice (never more).
func testLoad(t *testing.T, o *originProc, e *edge, twice float64) {
	r := runPlayers(t, o, e, *loadPlayers, *loadDuration)
	t.Log(r)
	if len(r.errors) > 0 {
		t.Errorf("%d player errors, first: %s", len(r.errors), r.errors[0])
	}
	// 200 ms parts: a player that keeps up gets about five a second.
	if min := int(loadDuration.Seconds() * 5 * 0.7); r.partsPerPlayer < min {
		t.Errorf("a player got only %d parts in %v (want ≥ %d)", r.partsPerPlayer, *loadDuration, min)
	}
	// Keeping up: the last part a player has is within about 1 s of the
	// origin's (a player's median over the run).
	if r.behindMax > time.Second {
		t.Errorf("a player was %v behind the live edge (median over the run)", r.behindMax)
	}
	checkOriginCounts(t, r.stats, *loadDuration, twice)
}

// checkOriginCounts asserts that the cache asked the origin at most once
// per URL and cache lifetime: parts, segments, init segments (immutable)
// and blocking playlists (12 s, and players ask for each only while it is
// the next part) once; plain playlists (1 s) about once a second.
func checkOriginCounts(t *testing.T, st originStats, d time.Duration, twice float64) {
	t.Helper()
	var parts, blocking, plain int
	var doubled []string // URLs served twice
	defer func() {
		if allowed := int(twice * float64(parts+blocking)); len(doubled) > allowed {
			t.Errorf("origin served %d URLs twice (at most %d allowed): %v", len(doubled), allowed, doubled)
		} else if len(doubled) > 0 {
			t.Logf("origin served %d URLs twice (at most %d allowed): %v", len(doubled), allowed, doubled)
		}
	}()
	once := func(key string, n int) { // a URL the origin should serve once
		switch {
		case n == 2:
			doubled = append(doubled, key)
		case n > 2:
			t.Errorf("origin served %s %d times", key, n)
		}
	}
	for key, n := range st.Requests {
		path, query, _ := strings.Cut(key, "?")
		switch {
		case strings.HasSuffix(path, ".m4s") || strings.HasSuffix(path, ".mp4"):
			parts++
			once(key, n)
		case strings.Contains(query, "_HLS_msn="):
			blocking++
			once(key, n)
		case strings.HasSuffix(path, ".m3u8"):
			plain++
			if limit := int(d.Seconds()) + 3; n > limit {
				t.Errorf("origin served %s %d times in %v (1 s TTL: at most %d)", key, n, d, limit)
			}
		}
	}
	if st.Cookies > 0 {
		t.Errorf("%d origin requests carried a Cookie", st.Cookies)
	}
	t.Logf("origin: %d part URLs, %d blocking playlist URLs, %d plain playlist URLs", parts, blocking, plain)
}

// TestNginxCacheKey checks what the shipped nginx configuration keys and
// forwards: per-viewer query arguments and cookies are dropped, the
// _HLS_* arguments kept, one origin request serves both encodings.
func TestNginxCacheKey(t *testing.T) {
	o := startOrigin(t)
	testCacheKey(t, o, startNginx(t, o.addr))
}

// TestVarnishCacheKey is TestNginxCacheKey through Varnish.
func TestVarnishCacheKey(t *testing.T) {
	o := startOrigin(t)
	testCacheKey(t, o, startVarnish(t, o.addr))
}

type response struct {
	status int
	h      http.Header
	body   []byte
}

func fetch(t *testing.T, c *http.Client, u string, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{res.StatusCode, res.Header, b}
}

var preloadRe = regexp.MustCompile(`#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(\d+)\.(\d+)\.m4s"`)

func testCacheKey(t *testing.T, o *originProc, e *edge) {
	// DisableCompression: this test sets Accept-Encoding itself.
	c := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	pl := fetch(t, c, "http://"+o.addr+"/hls/b/video/index.m3u8")
	m := preloadRe.FindSubmatch(pl.body)
	if m == nil {
		t.Fatalf("no preload hint in\n%s", pl.body)
	}
	msn, part := string(m[1]), string(m[2])

	// A blocking playlist request for the hinted part, with a per-viewer
	// query argument and a cookie, gzip.
	blocking := fmt.Sprintf("%s/hls/b/video/index.m3u8?session=1&_HLS_part=%s&_HLS_msn=%s", e.url, part, msn)
	r1 := fetch(t, c, blocking, "Cookie", "id=viewer1", "Accept-Encoding", "gzip")
	if r1.status != http.StatusOK || r1.h.Get("Content-Encoding") != "gzip" {
		t.Fatalf("blocking playlist: %d, Content-Encoding %q", r1.status, r1.h.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(r1.body))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`URI="%s.%s.m4s"`, msn, part); !bytes.Contains(plain, []byte(want)) {
		t.Errorf("blocking playlist does not list %s:\n%s", want, plain)
	}
	// Another viewer, other arguments in another order, no gzip: the same
	// cached response, unzipped by the cache.
	r2 := fetch(t, c, fmt.Sprintf("%s/hls/b/video/index.m3u8?_HLS_msn=%s&_HLS_part=%s&token=xyz", e.url, msn, part),
		"Cookie", "id=viewer2")
	if r2.status != http.StatusOK || r2.h.Get("Content-Encoding") != "" || !bytes.Equal(r2.body, plain) {
		t.Errorf("second viewer: %d, Content-Encoding %q, same playlist %v", r2.status, r2.h.Get("Content-Encoding"), bytes.Equal(r2.body, plain))
	}
	if x := r2.h.Get("X-Cache"); x != "HIT" {
		t.Errorf("second viewer: X-Cache %q, want HIT", x)
	}
	if cc := r2.h.Get("Cache-Control"); cc != "public, max-age=12" {
		t.Errorf("blocking playlist through the cache: Cache-Control %q", cc)
	}
	// The part, twice, with junk in the query.
	partURL := fmt.Sprintf("/hls/b/video/%s.%s.m4s", msn, part)
	p1 := fetch(t, c, e.url+partURL+"?v=1")
	p2 := fetch(t, c, e.url+partURL+"?v=2", "Range", "bytes=0-99")
	if p1.status != http.StatusOK || len(p1.body) == 0 || p1.h.Get("Cache-Control") != "public, max-age=31536000, immutable" {
		t.Errorf("part: %d, %d bytes, Cache-Control %q", p1.status, len(p1.body), p1.h.Get("Cache-Control"))
	}
	if p2.status != http.StatusPartialContent || !bytes.Equal(p2.body, p1.body[:100]) || p2.h.Get("X-Cache") != "HIT" {
		t.Errorf("part range from the cache: %d, X-Cache %q, %d bytes", p2.status, p2.h.Get("X-Cache"), len(p2.body))
	}
	for _, r := range []response{r1, r2, p1, p2} {
		if sc := r.h.Get("Set-Cookie"); sc != "" {
			t.Errorf("Set-Cookie %q", sc)
		}
	}

	st := o.stats(t)
	for _, k := range []string{
		originKey("/hls/b/video/index.m3u8", url.Values{"_HLS_msn": {msn}, "_HLS_part": {part}}),
		partURL,
	} {
		if n := st.Requests[k]; n != 1 {
			t.Errorf("origin served %s %d times, want 1 (requests: %v)", k, n, st.Requests)
		}
	}
	if st.Cookies > 0 {
		t.Errorf("%d origin requests carried a Cookie", st.Cookies)
	}
}

// TestNginxHTTP2 checks that players get HTTP/2 over TLS from the edge.
func TestNginxHTTP2(t *testing.T) {
	o := startOrigin(t)
	e := startNginx(t, o.addr)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.cert)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	r, err := c.Get(e.tlsURL + "/hls/b/video/index.m3u8")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		t.Fatal(err)
	}
	if r.StatusCode != http.StatusOK || r.ProtoMajor != 2 {
		t.Errorf("%s %d, want HTTP/2 200", r.Proto, r.StatusCode)
	}
}

// TestNginxSegmentInProgress fetches the next segment through nginx
// before it begins, from two players at once: nginx must pass it on part
// by part as the origin writes it (LL-DASH players and HLS players without
// parts fetch it so), not after the whole segment, fetch it from the
// origin once and then serve it from the cache. Only the player whose
// request went to the origin gets it streamed: the other waits on the
// cache lock until the segment is complete (logged, not asserted).
func TestNginxSegmentInProgress(t *testing.T) {
	o := startOrigin(t)
	testSegmentInProgress(t, o, startNginx(t, o.addr), false)
}

// TestVarnishSegmentInProgress is TestNginxSegmentInProgress through
// Varnish, which streams the segment to both players.
func TestVarnishSegmentInProgress(t *testing.T) {
	o := startOrigin(t)
	testSegmentInProgress(t, o, startVarnish(t, o.addr), true)
}

// streamed is a response read as it arrived.
type streamed struct {
	body        []byte
	first, last time.Time
	err         error
}

func readStreamed(ctx context.Context, u string) streamed {
	var s streamed
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.err = err
		return s
	}
	defer res.Body.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := res.Body.Read(buf)
		if n > 0 {
			if s.first.IsZero() {
				s.first = time.Now()
			}
			s.last = time.Now()
			s.body = append(s.body, buf[:n]...)
		}
		if err == io.EOF {
			return s
		}
		if err != nil {
			s.err = err
			return s
		}
	}
}

func testSegmentInProgress(t *testing.T, o *originProc, e *edge, streamsToAll bool) {
	pl := fetch(t, http.DefaultClient, "http://"+o.addr+"/hls/b/video/index.m3u8")
	m := preloadRe.FindSubmatch(pl.body)
	if m == nil {
		t.Fatalf("no preload hint in\n%s", pl.body)
	}
	var msn uint64
	if _, err := fmt.Sscan(string(m[1]), &msn); err != nil {
		t.Fatal(err)
	}
	// A segment that has not begun: the one after the segment being
	// written, or the hinted one itself when the hint is its first part
	// (the open segment's parts have reached the boundary, or it is
	// complete).
	if string(m[2]) != "0" {
		msn++
	}
	u := fmt.Sprintf("%s/hls/b/video/%d.m4s", e.url, msn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got [2]streamed
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() { got[i] = readStreamed(ctx, u) })
	}
	wg.Wait()
	// A 1 s segment of five 200 ms parts: streamed, its bytes arrive over
	// about 0.8 s; buffered, all at once.
	var spreads [2]time.Duration
	for i, g := range got {
		if g.err != nil {
			t.Fatal(g.err)
		}
		spreads[i] = g.last.Sub(g.first)
		t.Logf("segment %d through the cache, player %d: %d bytes, first to last byte %v", msn, i, len(g.body), spreads[i].Round(time.Millisecond))
	}
	if !bytes.Equal(got[0].body, got[1].body) {
		t.Errorf("the two players got different bytes")
	}
	if fast := max(spreads[0], spreads[1]); fast < 400*time.Millisecond {
		t.Errorf("the segment arrived in %v: the cache buffered it instead of passing parts on", fast)
	}
	if slow := min(spreads[0], spreads[1]); streamsToAll && slow < 400*time.Millisecond {
		t.Errorf("one player got the segment in %v: the cache did not stream it to both", slow)
	}
	again := fetch(t, http.DefaultClient, u)
	if !bytes.Equal(again.body, got[0].body) || again.h.Get("X-Cache") != "HIT" {
		t.Errorf("third fetch: X-Cache %q, same bytes %v", again.h.Get("X-Cache"), bytes.Equal(again.body, got[0].body))
	}
	if n := o.stats(t).Requests[fmt.Sprintf("/hls/b/video/%d.m4s", msn)]; n != 1 {
		t.Errorf("origin served the segment %d times", n)
	}
}

// BenchmarkNginxOriginLoad plays -cdn.players players through nginx for
// -cdn.duration whatever b.N is, and reports the origin's request rate
// and the CPU of the origin and of nginx (all its processes), from /proc:
//
//	go test ./cdn/ -run '^$' -bench NginxOriginLoad -benchtime 1x -args -cdn.players=1
//	go test ./cdn/ -run '^$' -bench NginxOriginLoad -benchtime 1x -args -cdn.players=1000 -cdn.layer=q
//
// (-cdn.layer=q: 1000 players of the 2.5 Mbit/s layer are 2.5 Gbit/s,
// more than the players' side of a 2-core machine reads.)
func BenchmarkNginxOriginLoad(b *testing.B) {
	o := startOrigin(b)
	benchLoad(b, o, startNginx(b, o.addr))
}

// BenchmarkVarnishOriginLoad is BenchmarkNginxOriginLoad through Varnish.
func BenchmarkVarnishOriginLoad(b *testing.B) {
	o := startOrigin(b)
	benchLoad(b, o, startVarnish(b, o.addr))
}

func benchLoad(b *testing.B, o *originProc, e *edge) {
	var r loadReport
	for b.Loop() {
		r = runPlayers(b, o, e, *loadPlayers, *loadDuration)
	}
	b.Log(r)
	b.ReportMetric(r.originReqRate, "origin-req/s")
	b.ReportMetric(float64(r.originRequests)/float64(max(1, r.originURLs)), "origin-req/url")
	b.ReportMetric(r.originCPU*100, "origin-cpu-%")
	b.ReportMetric(r.edgeCPU*100, "edge-cpu-%")
	b.ReportMetric(r.playersCPU*100, "players-cpu-%")
	b.ReportMetric(float64(r.behindMax.Milliseconds()), "behind-max-ms")
	b.ReportMetric(float64(r.behindWorst.Milliseconds()), "behind-worst-ms")
	b.ReportMetric(float64(r.delayP50.Milliseconds()), "part-delay-p50-ms")
	b.ReportMetric(float64(r.delayP99.Milliseconds()), "part-delay-p99-ms")
	b.ReportMetric(float64(len(r.errors)), "errors")
}

// BenchmarkDirectOriginLoad is BenchmarkNginxOriginLoad without the
// cache: the players fetch from the origin itself. It is the baseline
// for the players' side (how many this machine can simulate) and the
// part delay.
func BenchmarkDirectOriginLoad(b *testing.B) {
	o := startOrigin(b)
	benchLoad(b, o, &edge{url: "http://" + o.addr, pid: o.pid})
}
