package main

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
)

// TestPublicIPAndICEServers: --public-ip replaces our host candidates'
// address in answers, and --ice-server is advertised in Link headers. No
// connection is made, so nothing is sent to the documentation address.
func TestPublicIPAndICEServers(t *testing.T) {
	srv := startServer(t, func(c *Config) {
		c.PublicIPs = []string{"203.0.113.5"}
		c.ICEServers = []string{"stun:stun.example.net:3478", "turn:turn.example.net:3478?transport=udp;username=u;credential=p"}
	})
	req, _ := http.NewRequest("POST", srv.URL()+"/whip/pub", strings.NewReader(offerSDP(t, webrtc.RTPTransceiverDirectionSendonly)))
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+testToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 201 {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	var cands []string
	for line := range strings.SplitSeq(string(body), "\r\n") {
		if strings.HasPrefix(line, "a=candidate:") {
			cands = append(cands, line)
		}
	}
	if len(cands) == 0 {
		t.Fatal("answer has no candidates")
	}
	for _, c := range cands {
		if !strings.Contains(c, " 203.0.113.5 ") {
			t.Errorf("candidate does not advertise the public IP: %s", c)
		}
	}
	links := res.Header.Values("Link")
	want := []string{`<stun:stun.example.net:3478>; rel="ice-server"`,
		`<turn:turn.example.net:3478?transport=udp>; rel="ice-server"; username="u"; credential="p"; credential-type="password"`}
	if strings.Join(links, "\n") != strings.Join(want, "\n") {
		t.Fatalf("Link headers:\n%s\nwant:\n%s", strings.Join(links, "\n"), strings.Join(want, "\n"))
	}
}
