//go:build linux

package cdn

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hybridcast/hybridcast/internal/browsertest"
)

// partID names a part: segment number and index in the segment.
type partID struct {
	msn  uint64
	part int
}

func (p partID) less(q partID) bool {
	return p.msn < q.msn || p.msn == q.msn && p.part < q.part
}

func (p partID) String() string { return fmt.Sprintf("%d.%d", p.msn, p.part) }

// playlistParts returns the parts a media playlist lists, in order, and
// its preload hint. (Plain string scanning: the players' CPU is what limits
// how many this machine simulates.)
func playlistParts(pl []byte) (parts []partID, hint partID, hasHint bool) {
	for len(pl) > 0 {
		line := pl
		if i := bytes.IndexByte(pl, '\n'); i >= 0 {
			line, pl = pl[:i], pl[i+1:]
		} else {
			pl = nil
		}
		isPart := bytes.HasPrefix(line, []byte("#EXT-X-PART:"))
		isHint := bytes.HasPrefix(line, []byte("#EXT-X-PRELOAD-HINT:TYPE=PART,"))
		if !isPart && !isHint {
			continue
		}
		i := bytes.Index(line, []byte(`URI="`))
		if i < 0 {
			continue
		}
		uri, _, _ := bytes.Cut(line[i+5:], []byte(".m4s"))
		msn, part, _ := bytes.Cut(uri, []byte("."))
		m, err1 := strconv.ParseUint(string(msn), 10, 64)
		n, err2 := strconv.Atoi(string(part))
		if err1 != nil || err2 != nil {
			continue
		}
		if isPart {
			parts = append(parts, partID{m, n})
		} else {
			hint, hasHint = partID{m, n}, true
		}
	}
	return parts, hint, hasHint
}

// received is one part a player got, and when.
type received struct {
	id partID
	at time.Time
}

// playerResult is what a simulated player did.
type playerResult struct {
	parts []received
	errs  []string
}

// play is one LL-HLS player, the way hls.js plays in low-latency mode:
// a plain playlist request to start, then a loop of blocking playlist
// requests for the part after the last one listed (the preload hint's
// _HLS_msn/_HLS_part, as delta updates with _HLS_skip=YES) and fetches of
// each new part, starting three parts (PART-HOLD-BACK) from the edge. It
// plays until ctx ends.
func play(ctx context.Context, c *http.Client, base string) playerResult {
	var res playerResult
	get := func(u string, keep bool) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		r, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		defer r.Body.Close()
		if r.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(r.Body)
			return nil, fmt.Errorf("%s: %s: %s", u, r.Status, strings.TrimSpace(string(b)))
		}
		if !keep {
			_, err = io.Copy(io.Discard, r.Body)
			return nil, err
		}
		return io.ReadAll(r.Body)
	}
	fail := func(err error) bool {
		if ctx.Err() != nil {
			return true
		}
		res.errs = append(res.errs, err.Error())
		return len(res.errs) > 20
	}
	var last partID
	started := false
	next := base + "index.m3u8"
	for ctx.Err() == nil {
		pl, err := get(next, true)
		if err != nil {
			if fail(err) {
				return res
			}
			continue
		}
		parts, hint, hasHint := playlistParts(pl)
		if len(parts) == 0 {
			if fail(fmt.Errorf("no parts in %s", next)) {
				return res
			}
			continue
		}
		from := 0
		if !started {
			from, started = max(0, len(parts)-3), true
			last = partID{}
		}
		for _, id := range parts[from:] {
			if !last.less(id) && last != (partID{}) {
				continue
			}
			if _, err := get(base+strconv.FormatUint(id.msn, 10)+"."+strconv.Itoa(id.part)+".m4s", false); err != nil {
				if fail(err) {
					return res
				}
				break
			}
			res.parts = append(res.parts, received{id, time.Now()})
			last = id
		}
		want := partID{last.msn, last.part + 1}
		if hasHint {
			want = hint
		}
		next = base + "index.m3u8?_HLS_msn=" + strconv.FormatUint(want.msn, 10) + "&_HLS_part=" + strconv.Itoa(want.part) + "&_HLS_skip=YES"
	}
	return res
}

// loadReport is what a load run measured.
type loadReport struct {
	players        int
	duration       time.Duration
	originRequests int
	originURLs     int     // distinct URLs among them
	maxPerURL      int     // the most requests the origin got for one URL
	originReqRate  float64 // per second
	// behind: how far the players were behind the origin's live edge,
	// each player's median over the run (see runPlayers): the median and
	// the worst player; behindWorst is the worst single instant.
	behindP50, behindMax, behindWorst time.Duration
	// delay: from a part's publication at the origin to a player having it.
	delayP50, delayP99 time.Duration
	partsPerPlayer     int // the fewest parts a player got
	errors             []string
	originCPU, edgeCPU float64 // cores (CPU seconds per second)
	playersCPU         float64 // the simulated players' process
	stats              originStats
}

// playersEnv, when set, makes the test binary a player process (see
// playPlayers): its value is the JSON of a playersJob.
const playersEnv = "HYBRIDCAST_CDN_TEST_PLAYERS"

// playersJob is what a player process plays.
type playersJob struct {
	Base     string        `json:"base"`
	N        int           `json:"n"`
	Duration time.Duration `json:"duration"`
}

// playersOut is what a player process reports.
type playersOut struct {
	Start, End int64   // unix nanoseconds: the players' run
	CPU        float64 // cores the process used during the run
	Players    []playerOut
}

// playerOut is one player's playerResult, as a player process reports it.
type playerOut struct {
	Parts [][3]int64 // msn, part, unix nanoseconds received
	Errs  []string
}

// playPlayers runs a playersJob and writes a playersOut to stdout: the
// players of a race-instrumented test binary, in a process built without
// it (originBinary), since under the race detector 200 players take more
// than a core of a 2-core machine and measure their own starvation (1–1.6
// s "behind" Varnish against 0 s without the race detector, 2026-12-02).
func playPlayers() error {
	var job playersJob
	if err := json.Unmarshal([]byte(os.Getenv(playersEnv)), &job); err != nil {
		return fmt.Errorf("%s: %w", playersEnv, err)
	}
	results, t0, end, cpu := playAll(job.Base, job.N, job.Duration)
	out := playersOut{Start: t0.UnixNano(), End: end.UnixNano(), CPU: cpu}
	out.Players = make([]playerOut, len(results))
	for i, res := range results {
		for _, p := range res.parts {
			out.Players[i].Parts = append(out.Players[i].Parts, [3]int64{int64(p.id.msn), int64(p.id.part), p.at.UnixNano()})
		}
		out.Players[i].Errs = res.errs
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// playAll plays n players of base for d in this process.
func playAll(base string, n int, d time.Duration) (results []playerResult, t0, end time.Time, cpu float64) {
	tr := &http.Transport{MaxIdleConns: 4 * n, MaxIdleConnsPerHost: 4 * n, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	results = make([]playerResult, n)
	var wg sync.WaitGroup
	p0, t0 := cpuTicks(os.Getpid(), false), time.Now()
	// Players join over the first second, as an audience does (a
	// thundering herd of identical first requests is another test).
	for i := range n {
		wg.Go(func() {
			select {
			case <-time.After(time.Duration(i) * time.Second / time.Duration(n)):
			case <-ctx.Done():
				return
			}
			results[i] = play(ctx, c, base)
		})
	}
	<-ctx.Done()
	end = time.Now()
	p1 := cpuTicks(os.Getpid(), false)
	wg.Wait()
	return results, t0, end, float64(p1-p0) / 100 / end.Sub(t0).Seconds()
}

// playElsewhere runs playAll in a player process built without the race
// detector.
func playElsewhere(tb testing.TB, base string, n int, d time.Duration) (results []playerResult, t0, end time.Time, cpu float64) {
	tb.Helper()
	job, _ := json.Marshal(playersJob{Base: base, N: n, Duration: d})
	cmd := exec.Command(originBinary(tb), "-test.run=^$")
	cmd.Env = append(os.Environ(), playersEnv+"="+string(job))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.Output()
	if err != nil {
		tb.Fatalf("player process: %v", err)
	}
	var out playersOut
	if err := json.Unmarshal(stdout, &out); err != nil {
		tb.Fatalf("player process report: %v", err)
	}
	results = make([]playerResult, len(out.Players))
	for i, p := range out.Players {
		for _, x := range p.Parts {
			results[i].parts = append(results[i].parts, received{partID{uint64(x[0]), int(x[1])}, time.Unix(0, x[2])})
		}
		results[i].errs = p.Errs
	}
	return results, time.Unix(0, out.Start), time.Unix(0, out.End), out.CPU
}

// runPlayers plays n players through edgeURL for d and measures.
func runPlayers(tb testing.TB, o *originProc, e *edge, n int, d time.Duration) loadReport {
	tb.Helper()
	base := e.url + "/hls/b/video/"
	before := o.stats(tb)
	o0, e0, w0 := cpuTicks(o.pid, false), cpuTicks(e.pid, true), time.Now()
	var results []playerResult
	var t0, end time.Time
	var playersCPU float64
	if raceEnabled {
		results, t0, end, playersCPU = playElsewhere(tb, base, n, d)
	} else {
		results, t0, end, playersCPU = playAll(base, n, d)
	}
	o1, e1 := cpuTicks(o.pid, false), cpuTicks(e.pid, true)
	elapsed := time.Since(w0).Seconds() // the origin's and edge's CPU: the whole run, the player process's start included
	st := o.stats(tb)

	r := loadReport{players: n, duration: d, stats: st,
		originCPU: float64(o1-o0) / 100 / elapsed, edgeCPU: float64(e1-e0) / 100 / elapsed,
		playersCPU: playersCPU}
	for k, c := range st.Requests {
		if n := c - before.Requests[k]; n > 0 {
			r.originRequests += n
			r.originURLs++
			if n > r.maxPerURL && !strings.HasSuffix(k, "/index.m3u8") { // plain playlists: 1 s TTL
				r.maxPerURL = n
			}
		}
	}
	r.originReqRate = float64(r.originRequests) / end.Sub(t0).Seconds()
	// How far behind the origin's live edge each player was, looked at
	// once a second after a 5 s start: at each instant, the publication
	// times of the origin's last part and of the player's last part apart.
	// A player's figure is its median over the instants (one starved
	// moment of a shared machine does not make a player "behind"); the
	// run's worst instant is reported too.
	pubs := make([]int64, 0, len(st.Published))
	for _, t := range st.Published {
		pubs = append(pubs, t)
	}
	slices.Sort(pubs)
	edgeAt := func(t time.Time) int64 { // the origin's last publication at t
		i, _ := slices.BinarySearch(pubs, t.UnixNano()+1)
		if i == 0 {
			return 0
		}
		return pubs[i-1]
	}
	var instants []time.Time
	for at := t0.Add(5 * time.Second); !at.After(end); at = at.Add(time.Second) {
		instants = append(instants, at)
	}
	var behind, delays []time.Duration
	r.partsPerPlayer = -1
	for _, res := range results {
		r.errors = append(r.errors, res.errs...)
		if r.partsPerPlayer < 0 || len(res.parts) < r.partsPerPlayer {
			r.partsPerPlayer = len(res.parts)
		}
		var mine []time.Duration
		j := -1 // index of the player's last part at the instant
		for _, at := range instants {
			for j+1 < len(res.parts) && !res.parts[j+1].at.After(at) {
				j++
			}
			b := time.Duration(edgeAt(at) - t0.UnixNano()) // nothing yet: behind since the start
			if j >= 0 {
				b = time.Duration(edgeAt(at) - st.Published[res.parts[j].id.String()])
			}
			mine = append(mine, b)
			r.behindWorst = max(r.behindWorst, b)
		}
		if len(mine) > 0 {
			behind = append(behind, browsertest.Median(mine))
		}
		for _, p := range res.parts {
			if pub, ok := st.Published[p.id.String()]; ok {
				delays = append(delays, p.at.Sub(time.Unix(0, pub)))
			}
		}
	}
	slices.Sort(behind)
	if len(behind) > 0 {
		r.behindP50, r.behindMax = behind[len(behind)/2], behind[len(behind)-1]
	}
	slices.Sort(delays)
	if len(delays) > 0 {
		r.delayP50, r.delayP99 = delays[len(delays)/2], delays[len(delays)*99/100]
	}
	return r
}

func (r loadReport) String() string {
	return fmt.Sprintf("%d players, %v: origin %d requests (%.1f/s) for %d URLs, at most %d per part or blocking playlist URL, CPU origin %.3f cores, edge %.3f cores, players %.2f cores; "+
		"behind the origin's edge (player medians) p50 %v max %v, worst instant %v; part delay p50 %v p99 %v; fewest parts %d; %d errors",
		r.players, r.duration, r.originRequests, r.originReqRate, r.originURLs, r.maxPerURL, r.originCPU, r.edgeCPU, r.playersCPU,
		r.behindP50.Round(time.Millisecond), r.behindMax.Round(time.Millisecond), r.behindWorst.Round(time.Millisecond),
		r.delayP50.Round(time.Millisecond), r.delayP99.Round(time.Millisecond), r.partsPerPlayer, len(r.errors))
}
