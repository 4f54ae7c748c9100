// Package signal is the HTTP side of WHIP (RFC 9725) and WHEP shared by
// ingest and sfu/whep: reading and checking SDP offers, CORS, the session
// resources behind Location URLs, trickle ICE over PATCH, and the Link
// headers that advertise ICE servers.
package signal

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strings"
	"sync"

	"github.com/hybridcast/hybridcast/sfu/rtc"
	"github.com/pion/webrtc/v4"
)

// Error is an HTTP error with a status and a plain-text reason.
type Error struct {
	Status int
	Reason string
	Err    error
	// Header, if set, is added to the response (Retry-After, Link, …).
	Header http.Header
}

func (e *Error) Error() string { return e.Reason }
func (e *Error) Unwrap() error { return e.Err }

// Errorf makes an *Error.
func Errorf(status int, format string, a ...any) *Error {
	err := fmt.Errorf(format, a...)
	return &Error{Status: status, Reason: err.Error(), Err: errors.Unwrap(err)}
}

// WriteError writes err as a plain-text response: its status if it is an
// *Error, 500 otherwise.
func WriteError(w http.ResponseWriter, err error) {
	status, reason := http.StatusInternalServerError, "internal error"
	var he *Error
	if errors.As(err, &he) {
		status, reason = he.Status, he.Reason
		for k, vs := range he.Header {
			for _, v := range vs {
				w.Header().Add(k, v)
			}
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, reason+"\n")
}

var streamName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// StreamName checks a stream name: 1 to 64 of A-Z a-z 0-9 _ -.
func StreamName(name string) error {
	if !streamName.MatchString(name) {
		return Errorf(http.StatusBadRequest, "invalid stream name %q: use 1 to 64 letters, digits, '_' or '-'", truncate(name, 80))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ReadOffer reads and checks an SDP offer body.
func ReadOffer(r *http.Request) (string, *rtc.Offer, error) {
	if err := contentType(r, "application/sdp"); err != nil {
		return "", nil, err
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, rtc.MaxSDPSize+1))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return "", nil, Errorf(http.StatusRequestEntityTooLarge, "SDP offer larger than %d bytes", rtc.MaxSDPSize)
		}
		return "", nil, Errorf(http.StatusBadRequest, "read SDP offer: %w", err)
	}
	offer, err := rtc.ParseOffer(string(body))
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, rtc.ErrNoCommonCodec) {
			status = http.StatusNotAcceptable
		}
		return "", nil, &Error{Status: status, Reason: err.Error(), Err: err}
	}
	return string(body), offer, nil
}

func contentType(r *http.Request, want string) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return Errorf(http.StatusUnsupportedMediaType, "missing Content-Type: want %s", want)
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || !strings.EqualFold(mt, want) {
		return Errorf(http.StatusUnsupportedMediaType, "Content-Type %q not supported: want %s", truncate(ct, 80), want)
	}
	return nil
}

// BearerToken checks the Authorization header against token: 401 when it
// is missing or not a Bearer token, 403 when it is wrong. An empty token
// means no check.
func BearerToken(r *http.Request, token string) error {
	if token == "" {
		return nil
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return Errorf(http.StatusUnauthorized, "missing Authorization: Bearer token")
	}
	scheme, got, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(got) == "" {
		return Errorf(http.StatusUnauthorized, "Authorization must be a Bearer token")
	}
	if !constantTimeEqual(strings.TrimSpace(got), token) {
		return Errorf(http.StatusForbidden, "wrong token")
	}
	return nil
}

func constantTimeEqual(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	var v byte
	for i := range len(a) {
		v |= a[i] ^ b[i]
	}
	return v == 0
}

// NewID returns a random resource identifier.
func NewID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// CORS sets the headers that let a browser page on another origin use the
// endpoint, and answers preflight requests.
func CORS(w http.ResponseWriter, methods string) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", methods)
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
	h.Set("Access-Control-Expose-Headers", "Location, ETag, Link, Accept-Patch, Accept-Post, Retry-After")
	h.Set("Access-Control-Max-Age", "86400")
}

// ICELinks formats ICE servers as RFC 9725 §4.6 Link headers:
//
//	Link: <stun:stun.example.net>; rel="ice-server"
//	Link: <turn:turn.example.net?transport=udp>; rel="ice-server"; username="user"; credential="pass"; credential-type="password"
func ICELinks(servers []webrtc.ICEServer) []string {
	var out []string
	for _, s := range servers {
		for _, u := range s.URLs {
			l := "<" + u + `>; rel="ice-server"`
			if s.Username != "" {
				l += fmt.Sprintf(`; username=%q`, s.Username)
			}
			if c, ok := s.Credential.(string); ok && c != "" {
				l += fmt.Sprintf(`; credential=%q; credential-type="password"`, c)
			}
			out = append(out, l)
		}
	}
	return out
}

// Session is a WHIP or WHEP session behind a resource URL.
type Session interface {
	// ETag identifies the current ICE session (RFC 9725 §4.3.1).
	ETag() string
	// AddCandidates adds trickled remote candidates.
	AddCandidates(frag Fragment) error
	// Close ends the session and waits for its goroutines.
	Close() error
}

// Sessions is a set of live sessions by resource ID.
type Sessions[S Session] struct {
	mu sync.Mutex
	m  map[string]S
}

// NewSessions makes an empty set.
func NewSessions[S Session]() *Sessions[S] { return &Sessions[S]{m: map[string]S{}} }

// Add stores s under id.
func (ss *Sessions[S]) Add(id string, s S) {
	ss.mu.Lock()
	ss.m[id] = s
	ss.mu.Unlock()
}

// Get returns the session with that ID.
func (ss *Sessions[S]) Get(id string) (S, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[id]
	return s, ok
}

// Remove deletes and returns the session with that ID.
func (ss *Sessions[S]) Remove(id string) (S, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[id]
	delete(ss.m, id)
	return s, ok
}

// Len returns how many sessions there are.
func (ss *Sessions[S]) Len() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.m)
}

// All returns a snapshot of the sessions.
func (ss *Sessions[S]) All() []S {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	out := make([]S, 0, len(ss.m))
	for _, s := range ss.m {
		out = append(out, s)
	}
	return out
}

// Patch handles PATCH on a session resource (RFC 9725 §4.3): trickled
// candidates are added (204); an ICE restart is refused with 422, as the RFC
// asks of a session that does not support restarts.
func Patch(w http.ResponseWriter, r *http.Request, s Session) error {
	if err := contentType(r, "application/trickle-ice-sdpfrag"); err != nil {
		return err
	}
	match := r.Header.Get("If-Match")
	if match == "" {
		return Errorf(http.StatusPreconditionRequired, "PATCH needs If-Match with the session's ETag")
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, rtc.MaxSDPSize+1))
	if err != nil {
		return Errorf(http.StatusRequestEntityTooLarge, "SDP fragment larger than %d bytes", rtc.MaxSDPSize)
	}
	frag, err := ParseFragment(string(body))
	if err != nil {
		return Errorf(http.StatusBadRequest, "%w", err)
	}
	if match == "*" || frag.ICERestart(s) {
		return Errorf(http.StatusUnprocessableEntity, "ICE restart is not supported: start a new session")
	}
	if match != s.ETag() {
		return Errorf(http.StatusPreconditionFailed, "If-Match %s does not match the session's ETag", truncate(match, 80))
	}
	if err := s.AddCandidates(frag); err != nil {
		return Errorf(http.StatusBadRequest, "add candidates: %w", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
