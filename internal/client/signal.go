package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/webrtc/v4"
)

// Defaults for the client configs.
const (
	// DefaultConnectTimeout bounds the wait for ICE and DTLS after the
	// answer is set, on top of the caller's context.
	DefaultConnectTimeout = 15 * time.Second
	// DefaultDeleteTimeout bounds the DELETE sent by Close.
	DefaultDeleteTimeout = 5 * time.Second
	// maxAnswerSize bounds the SDP answer read from the server.
	maxAnswerSize = 1 << 20
	// maxErrorBody bounds the response body kept in an HTTPError.
	maxErrorBody = 4 << 10
)

// ErrNoLocation is returned when a 201 response has no Location header,
// which RFC 9725 §4.2 requires.
var ErrNoLocation = errors.New("client: 201 response without Location header")

// ErrConnectionFailed is returned when the PeerConnection fails or closes
// before it connects.
var ErrConnectionFailed = errors.New("client: peer connection failed")

// HTTPError is returned when the server answers an offer or a DELETE with
// an unexpected status.
type HTTPError struct {
	// Method is the request method, "POST" or "DELETE".
	Method string
	// Status is the HTTP status code.
	Status int
	// Body is the start of the response body.
	Body string
	// Header is the response's header (a 503 at a viewer cap carries
	// Retry-After and Link headers to other ways to play).
	Header http.Header
}

// Error implements error.
func (e *HTTPError) Error() string {
	return fmt.Sprintf("client: %s: HTTP status %d: %s", e.Method, e.Status, strings.TrimSpace(e.Body))
}

var discardLogger = slog.New(slog.DiscardHandler)

// newAPI builds a pion API that offers only the given codecs, with pion's
// default interceptors (NACK, RTCP reports, TWCC, header extensions). With
// loopback set, ICE gathers only 127.0.0.1 over UDP and mDNS is off.
func newAPI(video []webrtc.RTPCodecParameters, audio bool, loopback bool) (*webrtc.API, error) {
	return newAPIWith(video, audio, loopback, false, false, false, 0, nil, false)
}

// newAPIWith is newAPI; lean keeps only the interceptors a viewer needs to
// receive well (NACK generation and receiver reports), without pion's
// per-packet stats and TWCC feedback: a load generator's viewers then cost
// less CPU than the server they measure. rtx offers an RTX format (RFC
// 4588) for each video codec, payload type + 1. rcvbuf > 0 asks for that
// kernel receive buffer, and a non-nil stamps is given every RTP packet's
// kernel receive time (see viewerNet). tcp, with loopback, makes ICE
// use TCP instead of UDP.
func newAPIWith(video []webrtc.RTPCodecParameters, audio bool, loopback, tcp, lean, rtx bool, rcvbuf int, stamps *stampTable, gro bool) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	for _, c := range video {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, fmt.Errorf("client: register %s: %w", c.MimeType, err)
		}
		if !rtx {
			continue
		}
		r := webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: fmt.Sprintf("apt=%d", c.PayloadType)},
			PayloadType:        c.PayloadType + 1,
		}
		if err := m.RegisterCodec(r, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, fmt.Errorf("client: register rtx for %s: %w", c.MimeType, err)
		}
	}
	if audio {
		if err := m.RegisterCodec(opusCodec, webrtc.RTPCodecTypeAudio); err != nil {
			return nil, fmt.Errorf("client: register opus: %w", err)
		}
	}
	ir := &interceptor.Registry{}
	if lean {
		gen, err := nack.NewGeneratorInterceptor()
		if err != nil {
			return nil, fmt.Errorf("client: nack interceptor: %w", err)
		}
		ir.Add(gen)
		rr, err := report.NewReceiverInterceptor()
		if err != nil {
			return nil, fmt.Errorf("client: report interceptor: %w", err)
		}
		ir.Add(rr)
	} else if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, fmt.Errorf("client: register interceptors: %w", err)
	}
	se := webrtc.SettingEngine{}
	if rcvbuf > 0 || stamps != nil || gro {
		n, err := newViewerNet(rcvbuf, stamps, gro)
		if err != nil {
			return nil, fmt.Errorf("client: network: %w", err)
		}
		se.SetNet(n)
	}
	if loopback {
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
		network := webrtc.NetworkTypeUDP4
		if tcp {
			network = webrtc.NetworkTypeTCP4
		}
		se.SetNetworkTypes([]webrtc.NetworkType{network})
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

var videoFeedback = []webrtc.RTCPFeedback{
	{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"},
}

func h264Codec(pt webrtc.PayloadType, profileLevelID string) webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType:     webrtc.MimeTypeH264,
			ClockRate:    90000,
			SDPFmtpLine:  "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + profileLevelID,
			RTCPFeedback: videoFeedback,
		},
		PayloadType: pt,
	}
}

var (
	vp8Codec = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: videoFeedback,
		},
		PayloadType: 96,
	}
	vp9Codec = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0", RTCPFeedback: videoFeedback,
		},
		PayloadType: 98,
	}
	av1Codec = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeAV1, ClockRate: 90000, RTCPFeedback: videoFeedback,
		},
		PayloadType: 45,
	}
	opusCodec = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1",
		},
		PayloadType: 111,
	}
)

// session is the signalling half shared by Publisher and Viewer: the
// PeerConnection, the resource URL and how to reach it.
type session struct {
	pc       *webrtc.PeerConnection
	client   *http.Client
	token    string
	location *url.URL
	log      *slog.Logger
	// passive sends the offer with a=setup:passive instead of pion's
	// actpass: the server must then be the DTLS client.
	passive bool

	connected chan struct{} // closed on PeerConnectionStateConnected
	ended     chan struct{} // closed on Failed or Closed
	stateOnce [2]sync.Once
}

func newSession(pc *webrtc.PeerConnection, client *http.Client, token string, log *slog.Logger) *session {
	if client == nil {
		client = http.DefaultClient
	}
	s := &session{pc: pc, client: client, token: token, log: log,
		connected: make(chan struct{}), ended: make(chan struct{})}
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		s.log.Debug("peer connection state", "state", st.String())
		switch st {
		case webrtc.PeerConnectionStateConnected:
			s.stateOnce[0].Do(func() { close(s.connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			s.stateOnce[1].Do(func() { close(s.ended) })
		}
	})
	return s
}

// negotiate creates the offer, waits for ICE gathering (no trickle), POSTs
// the offer, checks for 201 Created with a Location (RFC 9725 §4.2) and
// applies the answer.
func (s *session) negotiate(ctx context.Context, endpoint string) error {
	offer, err := s.pc.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("client: create offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(s.pc)
	if err := s.pc.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("client: set offer: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return fmt.Errorf("client: gather ICE candidates: %w", ctx.Err())
	}
	base, err := url.Parse(endpoint)
	if err != nil {
		return fmt.Errorf("client: endpoint URL: %w", err)
	}
	sdp := s.pc.LocalDescription().SDP
	if s.passive {
		// pion keeps its actpass description and takes the DTLS server
		// role when the answer says active.
		sdp = strings.ReplaceAll(sdp, "a=setup:actpass", "a=setup:passive")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(sdp))
	if err != nil {
		return fmt.Errorf("client: POST %s: %w", endpoint, err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	s.authorize(req)
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("client: POST %s: %w", endpoint, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusCreated {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return &HTTPError{Method: http.MethodPost, Status: resp.StatusCode, Body: string(body), Header: resp.Header}
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return ErrNoLocation
	}
	if s.location, err = base.Parse(loc); err != nil {
		return fmt.Errorf("client: Location %q: %w", loc, err)
	}
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerSize))
	if err != nil {
		return fmt.Errorf("client: read answer: %w", err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/sdp") {
		s.log.Warn("answer has unexpected content type", "content_type", ct)
	}
	s.log.Debug("got answer", "location", s.location.String(), "sdp", string(answer))
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		return fmt.Errorf("client: set answer: %w", err)
	}
	return nil
}

// waitConnected waits until ICE and DTLS are up.
func (s *session) waitConnected(ctx context.Context, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-s.connected:
		return nil
	case <-s.ended:
		return ErrConnectionFailed
	case <-t.C:
		return fmt.Errorf("client: connect: no connection after %v: %w", timeout, context.DeadlineExceeded)
	case <-ctx.Done():
		return fmt.Errorf("client: connect: %w", ctx.Err())
	}
}

func (s *session) authorize(req *http.Request) {
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
}

// teardown sends DELETE to the resource, if there is one, and closes the
// PeerConnection.
func (s *session) teardown() error {
	var errs []error
	if s.location != nil {
		ctx, cancel := context.WithTimeout(context.Background(), DefaultDeleteTimeout)
		errs = append(errs, s.delete(ctx))
		cancel()
	}
	if err := s.pc.Close(); err != nil {
		errs = append(errs, fmt.Errorf("client: close peer connection: %w", err))
	}
	return errors.Join(errs...)
}

func (s *session) delete(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.location.String(), nil)
	if err != nil {
		return fmt.Errorf("client: DELETE %s: %w", s.location, err)
	}
	s.authorize(req)
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("client: DELETE %s: %w", s.location, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if resp.StatusCode/100 != 2 {
		return &HTTPError{Method: http.MethodDelete, Status: resp.StatusCode, Body: string(body), Header: resp.Header}
	}
	return nil
}
