package signal

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pion/ice/v4"
)

// Fragment is an application/trickle-ice-sdpfrag body (RFC 8840 §9).
type Fragment struct {
	Ufrag, Pwd string
	// Candidates maps each candidate line's value ("candidate:…") to the mid
	// of its media section.
	Candidates      []FragmentCandidate
	EndOfCandidates bool
}

// FragmentCandidate is one a=candidate line and its section.
type FragmentCandidate struct {
	Mid       string
	Candidate string // without the leading "a="
}

// ufragHolder is implemented by sessions that know the remote ICE ufrag.
type ufragHolder interface{ RemoteUfrag() string }

// ICERestart reports whether the fragment carries ICE credentials other
// than the session's: an ICE restart.
func (f Fragment) ICERestart(s Session) bool {
	h, ok := s.(ufragHolder)
	return ok && f.Ufrag != "" && f.Ufrag != h.RemoteUfrag()
}

// maxCandidates bounds the candidates in one fragment.
const maxCandidates = 64

// ParseFragment parses a trickle-ice-sdpfrag body. Every candidate line is
// checked with pion's candidate parser.
func ParseFragment(body string) (Fragment, error) {
	var f Fragment
	mid := ""
	for line := range strings.SplitSeq(body, "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" {
			continue
		}
		key, val, _ := strings.Cut(line, ":")
		switch key {
		case "a=ice-ufrag":
			f.Ufrag = val
		case "a=ice-pwd":
			f.Pwd = val
		case "a=mid":
			mid = val
		case "a=end-of-candidates":
			f.EndOfCandidates = true
		case "a=candidate":
			cand := strings.TrimPrefix(line, "a=")
			if _, err := ice.UnmarshalCandidate(cand); err != nil {
				return f, fmt.Errorf("bad candidate %q: %w", truncate(cand, 120), err)
			}
			if len(f.Candidates) == maxCandidates {
				return f, fmt.Errorf("more than %d candidates in one fragment", maxCandidates)
			}
			f.Candidates = append(f.Candidates, FragmentCandidate{Mid: mid, Candidate: cand})
		default:
			if !strings.HasPrefix(line, "a=") && !strings.HasPrefix(line, "m=") && !strings.HasPrefix(line, "c=") {
				return f, errors.New("not an SDP fragment: " + truncate(line, 80))
			}
		}
	}
	return f, nil
}
