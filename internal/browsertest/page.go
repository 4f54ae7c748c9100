package browsertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/media"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// pollInterval is the time between two reads of the statistics in WaitFor.
const pollInterval = 100 * time.Millisecond

// Page is a browser tab on the embedded page. A page can publish once and play
// once at the same time. Do not use a Page from several goroutines at once.
type Page struct {
	t      testing.TB
	name   string
	ctx    context.Context //nolint:containedctx // chromedp ties the tab to this context for its whole life
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool // set before the tab closes, so that onEvent stops logging

	closeOnce sync.Once
}

// Close closes the tab. The WHIP and WHEP sessions of the page end without a
// DELETE; call Stop first to delete them. Close can be called more than once.
func (p *Page) Close() {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.cancel()
	})
}

// onEvent logs the console messages and the uncaught exceptions of the page
// to the test log.
func (p *Page) onEvent(ev any) {
	var msg string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		args := make([]string, 0, len(ev.Args))
		for _, a := range ev.Args {
			var str string
			if a.Type == runtime.RemoteObjectTypeString && json.Unmarshal(a.Value, &str) == nil {
				args = append(args, str)
			} else if len(a.Value) > 0 {
				args = append(args, string(a.Value))
			} else {
				args = append(args, a.Description)
			}
		}
		msg = fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " "))
	case *runtime.EventExceptionThrown:
		msg = "exception: " + exceptionText(ev.ExceptionDetails)
	case *media.EventPlayerMessagesLogged:
		// Chromium's media log (chrome://media-internals): what its
		// demuxer and decoders say about appended data, which the
		// players never see. Warnings and errors only, unless
		// HYBRIDCAST_MEDIA_LOG=all.
		all := os.Getenv("HYBRIDCAST_MEDIA_LOG") == "all"
		var lines []string
		for _, m := range ev.Messages {
			if all || m.Level == media.PlayerMessageLevelWarning || m.Level == media.PlayerMessageLevelError {
				lines = append(lines, fmt.Sprintf("%s: %s", m.Level, m.Message))
			}
		}
		if len(lines) == 0 {
			return
		}
		msg = "media log: " + strings.Join(lines, "; ")
	case *media.EventPlayerErrorsRaised:
		parts := make([]string, 0, len(ev.Errors))
		for _, e := range ev.Errors {
			parts = append(parts, fmt.Sprintf("%s %d %s", e.ErrorType, e.Code, e.Data))
		}
		msg = "media error: " + strings.Join(parts, "; ")
	default:
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.t.Logf("browsertest: %s %s: %s", time.Now().Format("05.000"), p.name, msg)
	}
}

func exceptionText(d *runtime.ExceptionDetails) string {
	if d == nil {
		return ""
	}
	if d.Exception != nil && d.Exception.Description != "" {
		return d.Exception.Description
	}
	return d.Text
}

// evaluate runs the JavaScript expression expr in the page, waits for the
// promise that it returns, and decodes the result into T. It gives up when ctx
// ends; the tab stays open then.
func evaluate[T any](ctx context.Context, p *Page, expr string) (T, error) {
	// The chromedp context of the tab must stay the parent, so that the
	// action runs in this tab; ctx only cancels the call.
	rctx, cancel := context.WithCancelCause(p.ctx)
	defer cancel(nil)
	stop := context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
	defer stop()

	v, err := chromedp.Run(rctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		if cerr := context.Cause(ctx); cerr != nil {
			return v, cerr
		}
		var exc *chromedp.ExceptionError
		if errors.As(err, &exc) {
			// The description holds the message of the JavaScript
			// Error, such as "Error: WHIP POST ...: HTTP 401: ...".
			return v, errors.New(exceptionText(exc.ExceptionDetails))
		}
	}
	return v, err
}

// call builds the JavaScript expression that calls the function fn with args.
// The arguments are JSON, so any string is safe.
func call(fn string, args ...any) (string, error) {
	parts := make([]string, len(args))
	for i, a := range args {
		b, err := json.Marshal(a)
		if err != nil {
			return "", fmt.Errorf("browsertest: argument %d of %s: %w", i, fn, err)
		}
		parts[i] = string(b)
	}
	return fn + "(" + strings.Join(parts, ", ") + ")", nil
}

// Publish publishes the fake camera and microphone of the browser to the WHIP
// endpoint whipURL. A non-empty token goes in the header Authorization:
// Bearer. With simulcast, the video has three encodings with the rids "h"
// (1280x720), "m" (640x360) and "l" (320x180); else one encoding without rid.
// Publish returns when the browser applied the answer; the media flows after
// ICE and DTLS connected, so wait for it with WaitFor. It fails when the
// server does not answer 201 Created with a Location header. When ctx ends
// first, the browser can still finish the exchange; call Stop or Close.
func (p *Page) Publish(ctx context.Context, whipURL, token string, simulcast bool) error {
	expr, err := call("window.whipPublish", whipURL, token, map[string]any{"simulcast": simulcast})
	if err != nil {
		return err
	}
	if _, err := evaluate[string](ctx, p, expr); err != nil {
		return fmt.Errorf("browsertest: %s: WHIP publish to %s: %w", p.name, whipURL, err)
	}
	return nil
}

// Play plays the WHEP endpoint whepURL in the video element of the page. The
// page records the time of the call and of the first decoded frame; see
// Timings. Play returns when the browser applied the answer; wait for the
// frames with WaitFor.
func (p *Page) Play(ctx context.Context, whepURL string, opts ...PlayOption) error {
	o := map[string]any{}
	for _, opt := range opts {
		opt(o)
	}
	expr, err := call("window.whepPlay", whepURL, "", o)
	if err != nil {
		return err
	}
	if _, err := evaluate[string](ctx, p, expr); err != nil {
		return fmt.Errorf("browsertest: %s: WHEP play from %s: %w", p.name, whepURL, err)
	}
	return nil
}

// PlayOption tunes Play.
type PlayOption func(map[string]any)

// WithoutGathering makes the viewer send its offer at once, without waiting
// for its own ICE candidates: the server answers with its candidates and
// learns the browser's address from the connectivity checks. This is how a
// latency-minded WHEP client connects; the default waits up to 3 s for
// gathering to complete.
func WithoutGathering() PlayOption {
	return func(o map[string]any) { o["gatherTimeoutMs"] = 0 }
}

// Stats reads the statistics of the publisher and of the viewer of the page.
func (p *Page) Stats(ctx context.Context) (Stats, error) {
	s, err := evaluate[Stats](ctx, p, "window.stats()")
	if err != nil {
		return Stats{}, fmt.Errorf("browsertest: %s: stats: %w", p.name, err)
	}
	return s, nil
}

// WaitFor reads the statistics of the page every 100 ms until cond returns
// true for them, and returns them. When ctx ends first, it returns the last
// statistics and an error that shows them.
//
// WaitFor polls because the Chrome DevTools Protocol has no event for the
// statistics of a peer connection: getStats is a call, and WebRTC fires no
// event when a counter changes.
func (p *Page) WaitFor(ctx context.Context, cond func(Stats) bool) (Stats, error) {
	return poll(ctx, p.name, p.Stats, cond)
}

// Stop deletes the WHIP and WHEP resources of the page (HTTP DELETE on their
// Location) and closes its peer connections. The tab stays open. Stop returns
// the errors of the DELETE requests; the connections close in any case.
func (p *Page) Stop(ctx context.Context) error {
	errs, err := evaluate[[]string](ctx, p, "window.stopAll()")
	if err != nil {
		return fmt.Errorf("browsertest: %s: stop: %w", p.name, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("browsertest: %s: stop: %s", p.name, strings.Join(errs, "; "))
	}
	return nil
}

// poll reads a state with read every pollInterval until cond returns true
// for it, and returns it. A read error ends the wait; when ctx ends first,
// it returns the last state and an error that shows it.
func poll[T any](ctx context.Context, name string, read func(context.Context) (T, error), cond func(T) bool) (T, error) {
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	var last T
	for {
		s, err := read(ctx)
		if err == nil {
			last = s
			if cond(s) {
				return s, nil
			}
		}
		if ctx.Err() != nil {
			b, _ := json.Marshal(last)
			return last, fmt.Errorf("browsertest: %s: condition not met: %w; last stats: %s", name, context.Cause(ctx), b)
		}
		if err != nil {
			return last, err
		}
		select {
		case <-ctx.Done():
		case <-ticker.C:
		}
	}
}
