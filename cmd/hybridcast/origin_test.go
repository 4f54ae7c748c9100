package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	hintRE = regexp.MustCompile(`#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(\d+)\.(\d+)\.m4s"`)
	partRE = regexp.MustCompile(`#EXT-X-PART:DURATION=[0-9.]+,URI="(\d+)\.(\d+)\.m4s"`)
	initRE = regexp.MustCompile(`#EXT-X-MAP:URI="([^"]+)"`)
)

func get(t *testing.T, url string, hdr ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultTransport.RoundTrip(req) // no transparent gzip
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

func body(t *testing.T, res *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHLSOrigin checks what the origin answers for each resource class:
// status, Cache-Control, and the LL-HLS blocking rules.
func TestHLSOrigin(t *testing.T) {
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	publishLadder(ctx, t, srv, "o")
	base := srv.URL() + "/hls/o/"

	res := get(t, base+"video-h/index.m3u8")
	pl := string(body(t, res))
	hint := hintRE.FindStringSubmatch(pl)
	parts := partRE.FindAllStringSubmatch(pl, -1)
	initURI := initRE.FindStringSubmatch(pl)
	if hint == nil || len(parts) == 0 || initURI == nil {
		t.Fatalf("media playlist lacks a preload hint, parts or a map:\n%s", pl)
	}
	lastPart := parts[len(parts)-1]
	seg := regexp.MustCompile(`(?m)^(\d+)\.m4s$`).FindStringSubmatch(pl)[1]

	immutable := "public, max-age=31536000, immutable"
	for _, c := range []struct {
		name, path string
		code       int
		cache      string
	}{
		{"multivariant", "index.m3u8", 200, "public, max-age=2"},
		{"DASH manifest", "/dash/o/manifest.mpd", 200, "public, max-age=2"},
		{"DASH segment", "/dash/o/video-h/" + seg + ".m4s", 200, immutable},
		{"DASH init", "/dash/o/video-h/" + initURI[1], 200, immutable},
		{"media playlist", "video-h/index.m3u8", 200, "public, max-age=1"},
		{"blocking playlist", fmt.Sprintf("video-h/index.m3u8?_HLS_msn=%s&_HLS_part=%s", lastPart[1], lastPart[2]), 200, "public, max-age=12"},
		{"init", "video-h/" + initURI[1], 200, immutable},
		{"segment", "video-h/" + seg + ".m4s", 200, immutable},
		{"part", fmt.Sprintf("video-h/%s.%s.m4s", lastPart[1], lastPart[2]), 200, immutable},
		{"part outside the window", "video-h/1.0.m4s", 404, "no-store"},
		{"unknown rendition", "video-x/index.m3u8", 404, "no-store"},
		{"part without msn", "video-h/index.m3u8?_HLS_part=1", 400, "no-store"},
		{"bad msn", "video-h/index.m3u8?_HLS_msn=abc", 400, "no-store"},
		{"msn too far ahead", fmt.Sprintf("video-h/index.m3u8?_HLS_msn=%s9", hint[1]), 400, "no-store"},
		{"bad skip", "video-h/index.m3u8?_HLS_skip=maybe", 400, "no-store"},
		{"unknown file", "video-h/x.ts", 404, "no-store"},
	} {
		url := base + c.path
		if strings.HasPrefix(c.path, "/") {
			url = srv.URL() + c.path
		}
		res := get(t, url)
		b := body(t, res)
		if res.StatusCode != c.code || res.Header.Get("Cache-Control") != c.cache {
			t.Errorf("%s (%s): %d %q, want %d %q; body %.200s", c.name, c.path, res.StatusCode, res.Header.Get("Cache-Control"), c.code, c.cache, b)
		}
		if res.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: no CORS header", c.name)
		}
		if res.Header.Get("Set-Cookie") != "" {
			t.Errorf("%s sets a cookie", c.name)
		}
	}
	if res := get(t, srv.URL()+"/hls/nostream/index.m3u8"); res.StatusCode != 404 {
		t.Errorf("unknown stream: %d, want 404", res.StatusCode)
	}

	// The hinted part is held until it is written, then served whole; the
	// blocking playlist request for it returns once it exists and lists it.
	type result struct {
		code int
		body []byte
		at   time.Time
	}
	partc, plc := make(chan result, 1), make(chan result, 1)
	start := time.Now()
	go func() {
		res, err := http.Get(fmt.Sprintf("%svideo-h/%s.%s.m4s", base, hint[1], hint[2]))
		if err != nil {
			partc <- result{code: -1}
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		partc <- result{res.StatusCode, b, time.Now()}
	}()
	go func() {
		res, err := http.Get(fmt.Sprintf("%svideo-h/index.m3u8?_HLS_msn=%s&_HLS_part=%s", base, hint[1], hint[2]))
		if err != nil {
			plc <- result{code: -1}
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		plc <- result{res.StatusCode, b, time.Now()}
	}()
	pr, plr := <-partc, <-plc
	if pr.code != 200 || len(pr.body) == 0 {
		t.Fatalf("hinted part: %d, %d bytes", pr.code, len(pr.body))
	}
	if plr.code != 200 || !strings.Contains(string(plr.body), fmt.Sprintf(`URI="%s.%s.m4s"`, hint[1], hint[2])) {
		t.Fatalf("blocking playlist: %d, lacks the part it waited for:\n%s", plr.code, plr.body)
	}
	t.Logf("hinted part served after %v, blocking playlist after %v", pr.at.Sub(start), plr.at.Sub(start))
	again := body(t, get(t, fmt.Sprintf("%svideo-h/%s.%s.m4s", base, hint[1], hint[2])))
	if !bytes.Equal(again, pr.body) {
		t.Error("the part served while it was written differs from the part served after")
	}

	// A segment is its parts back to back.
	segRes := get(t, base+"video-h/"+seg+".m4s")
	segData := body(t, segRes)
	var joined []byte
	for i := 0; ; i++ {
		res := get(t, fmt.Sprintf("%svideo-h/%s.%d.m4s", base, seg, i))
		if res.StatusCode == 404 {
			break
		}
		joined = append(joined, body(t, res)...)
	}
	if !bytes.Equal(joined, segData) {
		t.Errorf("segment %s (%d bytes) is not its parts joined (%d bytes)", seg, len(segData), len(joined))
	}

	// Conditional and range requests on media; gzip on playlists.
	etag := segRes.Header.Get("ETag")
	if res := get(t, base+"video-h/"+seg+".m4s", "If-None-Match", etag); res.StatusCode != 304 {
		t.Errorf("If-None-Match %s: %d, want 304", etag, res.StatusCode)
	}
	if res := get(t, base+"video-h/"+seg+".m4s", "Range", "bytes=0-99"); res.StatusCode != 206 || len(body(t, res)) != 100 {
		t.Errorf("Range: %d, want 206 with 100 bytes", res.StatusCode)
	}
	// The requests above show in /metrics, by class and status; so do the
	// packager's part delays and the blocking responses.
	fam := scrape(t, srv)
	for _, c := range []struct{ class, status string }{{"multivariant", "200"}, {"playlist", "200"}, {"playlist_blocking", "200"},
		{"part", "200"}, {"segment", "200"}, {"init", "200"}, {"part", "404"}, {"playlist", "400"}} {
		if v, ok := sample(fam, "hybridcast_origin_requests_total", "class", c.class, "status", c.status); !ok || v < 1 {
			t.Errorf("origin requests{class=%s,status=%s} = %v, %v", c.class, c.status, v, ok)
		}
	}
	for _, h := range []string{"hybridcast_packager_part_lag_seconds", "hybridcast_hls_blocking_response_lag_seconds"} {
		f := fam[h]
		if f == nil || len(f.GetMetric()) == 0 || f.GetMetric()[0].GetHistogram().GetSampleCount() == 0 {
			t.Errorf("histogram %s has no samples", h)
		}
	}
	res = get(t, base+"video-h/index.m3u8", "Accept-Encoding", "gzip")
	if res.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("playlist not gzipped for a client that accepts it")
	} else if zr, err := gzip.NewReader(res.Body); err != nil {
		t.Error(err)
	} else if b, _ := io.ReadAll(zr); !strings.HasPrefix(string(b), "#EXTM3U") {
		t.Errorf("gzipped playlist does not decode to a playlist: %.40q", b)
	}
}

// TestHLSPublisherRestart stops the publisher and starts a new one on the
// same stream: while nobody publishes the playlists are 404; then the
// window goes on with higher segment numbers after an EXT-X-DISCONTINUITY
// and a new init segment.
func TestHLSPublisherRestart(t *testing.T) {
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	url := srv.URL() + "/whip/r"
	base := srv.URL() + "/hls/r/"
	p1 := publishSimulcast(ctx, t, url, []string{"f", "h", "q"})
	waitVariants(t, base+"index.m3u8", 3)
	before := string(body(t, get(t, base+"video-q/index.m3u8")))
	periodRE := regexp.MustCompile(`<Period id="([^"]+)"`)
	mpdBefore := waitMPD(t, srv.URL()+"/dash/r/manifest.mpd", 3)
	// Layer q stops first and the others go on for two more segments, as
	// when a browser drops a layer before it leaves (or one layer's last
	// packets are late): the restart's first segment number, which all
	// renditions share, leaves q's window short of it.
	p1.silence("q")
	lastMSN := func(rend string) int {
		m := segLineRE.FindAllStringSubmatch(string(body(t, get(t, base+rend+"/index.m3u8"))), -1)
		if len(m) == 0 {
			return 0
		}
		n, _ := strconv.Atoi(m[len(m)-1][1])
		return n
	}
	qLast := lastMSN("video-q")
	for lastMSN("video-f") < qLast+3 {
		if ctx.Err() != nil {
			t.Fatal("video-f did not go on after q stopped")
		}
		time.Sleep(100 * time.Millisecond) // polling: the stream has no event for HTTP clients
	}
	p1.close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		res := get(t, base+"video-q/index.m3u8")
		if res.StatusCode == 404 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("playlist still %d after the publisher left", res.StatusCode)
		}
		time.Sleep(100 * time.Millisecond) // polling: the stream has no event for HTTP clients
	}
	if res := get(t, base+"index.m3u8"); res.StatusCode != 404 {
		t.Errorf("multivariant playlist of a stream that is not live: %d, want 404", res.StatusCode)
	}

	publishSimulcast(ctx, t, url, []string{"f", "h", "q"})
	waitVariants(t, base+"index.m3u8", 3)
	deadline = time.Now().Add(15 * time.Second)
	var after string
	for time.Now().Before(deadline) {
		after = string(body(t, get(t, base+"video-q/index.m3u8")))
		// A segment of the new publication is complete.
		if i := strings.LastIndex(after, "#EXT-X-DISCONTINUITY\n"); i >= 0 && strings.Contains(after[i:], "#EXTINF") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	mpdAfter := waitMPD(t, srv.URL()+"/dash/r/manifest.mpd", 3)
	if a, b := periodRE.FindStringSubmatch(mpdBefore), periodRE.FindStringSubmatch(mpdAfter); a == nil || b == nil || a[1] == b[1] {
		t.Errorf("the DASH Period did not change with the publisher: %v → %v", a, b)
	}
	if !strings.Contains(after, "#EXT-X-DISCONTINUITY\n") {
		t.Fatalf("no discontinuity after the restart:\n%s", after)
	}
	if !strings.Contains(after, "#EXT-X-GAP\n") {
		t.Errorf("no EXT-X-GAP for the numbers q did not reach before the restart:\n%s", after)
	}
	maps := initRE.FindAllStringSubmatch(after, -1)
	if len(maps) < 2 || maps[0][1] == maps[len(maps)-1][1] {
		t.Errorf("want a new init segment after the restart, got maps %v", maps)
	}
	firstBefore := regexp.MustCompile(`#EXT-X-MEDIA-SEQUENCE:(\d+)`).FindStringSubmatch(before)[1]
	firstAfter := regexp.MustCompile(`#EXT-X-MEDIA-SEQUENCE:(\d+)`).FindStringSubmatch(after)[1]
	if firstAfter != firstBefore {
		t.Errorf("the window restarted (%s → %s) instead of going on across the discontinuity; before:\n%s\nafter:\n%s", firstBefore, firstAfter, before, after)
	}
	// Every segment listed is served, before and after the discontinuity;
	// a gap is 404.
	for _, m := range regexp.MustCompile(`(?m)(^#EXT-X-GAP\n#EXTINF:[^\n]*\n)?^(\d+)\.m4s$`).FindAllStringSubmatch(after, -1) {
		want := http.StatusOK
		if m[1] != "" {
			want = http.StatusNotFound
		}
		if res := get(t, base+"video-q/"+m[2]+".m4s"); res.StatusCode != want {
			t.Errorf("segment %s listed (gap %v) but %d", m[2], m[1] != "", res.StatusCode)
		}
	}
}
