package rtc

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hybridcast/hybridcast/sfu"
	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// The direct send path: a viewer's RTP goes from its downtracks straight
// to the media socket's batched writers, encrypted with an SRTP context of
// our own, instead of through pion's per-packet write path (track writer,
// SRTP session, DTLS/SRTP demultiplexer, ICE candidate pair, UDP mux),
// which at 200 viewers took about a third of the server's CPU and as much
// lock traffic per packet as the forwarding itself.
//
// pion keeps everything else: ICE (checks, consent, keepalives), DTLS,
// RTCP in both directions (our sender reports go through its SRTCP
// session, a separate context), and the SSRCs it never sends RTP on
// itself (viewer APIs carry no interceptors). The SRTP keys come from the
// DTLS handshake, which pion does not expose: the viewer's API records
// the handshake's randoms, cipher suite and SRTP profile (from the
// ServerHello it sends) and its master secret (from the key log that
// pion's DTLS writes for every handshake), and derives the keys exactly
// as RFC 5764 §4.2 and pion do (checked against pion's own export in
// TestDTLSKeysMatchPion).
//
// That needs us to be the DTLS server, which a viewer's offer
// (setup:actpass, or setup:active) lets us be. Whenever something does not
// fit (the viewer insisted on setup:passive, the path is ICE-TCP, a
// cipher suite or profile we do not know), the viewer stays on pion's
// write path, which works as before.

// DirectSend is one viewer's key capture and, once its PeerConnection is
// connected, the source of its direct writers.
type DirectSend struct {
	e *Engine

	mu           sync.Mutex
	serverRandom [32]byte
	suite        uint16
	profile      extension.SRTPProtectionProfile
	hello        bool // serverRandom, suite and profile are set
	clientRandom [32]byte
	master       []byte
}

// NewViewer returns an API for the PeerConnection that answers a viewer's
// offer, and the DirectSend that captures its SRTP keys. The API shares
// the viewer codecs and settings of ViewerAPI, answers as the DTLS server,
// and records the handshake for DirectSend. An offer with
// a=setup:passive (the viewer wants to be the DTLS server) gets ViewerAPI
// itself, which answers active, and a nil DirectSend: pion's answering
// role is a fixed setting, not a preference, and passive on both ends
// would never connect.
func (e *Engine) NewViewer(offer string) (*webrtc.API, *DirectSend) {
	if strings.Contains(offer, "a=setup:passive") {
		return e.viewer, nil
	}
	d := &DirectSend{e: e}
	se := e.se
	se.SetDTLSKeyLogWriter(d)
	se.SetDTLSServerHelloMessageHook(d.onServerHello)
	if err := se.SetAnsweringDTLSRole(webrtc.DTLSRoleServer); err != nil {
		return e.viewer, nil // refused only for roles other than client and server
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(e.viewerMedia), webrtc.WithInterceptorRegistry(e.viewerInterceptors),
		webrtc.WithSettingEngine(se)), d
}

func (d *DirectSend) onServerHello(m handshake.MessageServerHello) handshake.Message {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.serverRandom = m.Random.MarshalFixed()
	d.suite, d.profile, d.hello = 0, 0, false
	if m.CipherSuiteID != nil {
		d.suite = *m.CipherSuiteID
	}
	for _, ext := range m.Extensions {
		if u, ok := ext.(*extension.UseSRTP); ok && len(u.ProtectionProfiles) == 1 {
			d.profile = u.ProtectionProfiles[0]
		}
	}
	d.hello = d.suite != 0 && d.profile != 0
	return &m
}

// Write takes pion's DTLS key log: "CLIENT_RANDOM <client random> <master
// secret>", hex, one line per handshake.
func (d *DirectSend) Write(p []byte) (int, error) {
	f := strings.Fields(string(p))
	if len(f) != 3 || f[0] != "CLIENT_RANDOM" {
		return len(p), nil
	}
	cr, err1 := hex.DecodeString(f[1])
	ms, err2 := hex.DecodeString(f[2])
	if err1 != nil || err2 != nil || len(cr) != 32 || len(ms) != 48 {
		return len(p), nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	copy(d.clientRandom[:], cr)
	d.master = ms
	return len(p), nil
}

// prfHash is the PRF hash of the cipher suites pion's DTLS offers (TLS
// 1.2: SHA-256 unless the suite names another).
func prfHash(suite uint16) (prf.HashFunc, bool) {
	switch dtls.CipherSuiteID(suite) {
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		dtls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, dtls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, dtls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA:
		return func() hash.Hash { return sha256.New() }, true
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:
		return func() hash.Hash { return sha512.New384() }, true
	}
	return nil, false
}

// exporter is RFC 5705's keying material exporter for the captured
// handshake, as the DTLS server.
type exporter struct {
	master         []byte
	client, server [32]byte
	hash           prf.HashFunc
}

func (x exporter) ExportKeyingMaterial(label string, context []byte, length int) ([]byte, error) {
	if len(context) != 0 {
		return nil, errors.New("rtc: exporter context not supported")
	}
	seed := append(append([]byte(label), x.client[:]...), x.server[:]...)
	return prf.PHash(x.master, seed, length, x.hash)
}

// keys derives the server's SRTP master key and salt.
func (d *DirectSend) keys() (key, salt []byte, profile srtp.ProtectionProfile, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.hello || d.master == nil {
		return nil, nil, 0, errors.New("handshake not captured")
	}
	h, ok := prfHash(d.suite)
	if !ok {
		return nil, nil, 0, fmt.Errorf("cipher suite %#04x not known", d.suite)
	}
	profile = srtp.ProtectionProfile(d.profile)
	cfg := srtp.Config{Profile: profile}
	x := exporter{master: d.master, client: d.clientRandom, server: d.serverRandom, hash: h}
	if err := cfg.ExtractSessionKeysFromDTLS(x, false); err != nil {
		return nil, nil, 0, err
	}
	clear(d.master) // not needed again: the keys are derived once
	d.master = nil
	return cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, profile, nil
}

// DirectWriter sends one viewer's RTP on the direct path. It implements
// webrtc.TrackLocalWriter; one writer serves all the viewer's tracks.
type DirectWriter struct {
	b    *batchConn
	mu   sync.Mutex // guards ctx and hdr
	ctx  *srtp.Context
	hdr  rtp.Header
	addr atomic.Pointer[netip.AddrPort]
	lost atomic.Bool // the path left the UDP socket: sends fail
}

var _ webrtc.TrackLocalWriter = (*DirectWriter)(nil)

// errNotDirect says why a viewer stays on pion's write path.
var errNotDirect = errors.New("direct send not possible")

// Writer returns the connected PeerConnection's direct writer, or an error
// saying why the viewer must stay on pion's write path. If ICE later moves
// the viewer to a path that is not our UDP socket (ICE-TCP), the writer's
// sends fail and lost is called: the session must end, since pion's own
// SRTP context could not carry on where ours stopped.
func (d *DirectSend) Writer(pc *webrtc.PeerConnection, lost func()) (*DirectWriter, error) {
	if d == nil {
		return nil, fmt.Errorf("%w: the viewer offered setup:passive", errNotDirect)
	}
	sctp := pc.SCTP()
	if sctp == nil || sctp.Transport() == nil {
		return nil, fmt.Errorf("%w: no DTLS transport", errNotDirect)
	}
	dt := sctp.Transport()
	if dt.State() != webrtc.DTLSTransportStateConnected {
		return nil, fmt.Errorf("%w: DTLS not connected", errNotDirect)
	}
	if ld := pc.CurrentLocalDescription(); ld == nil || !strings.Contains(ld.SDP, "a=setup:passive") {
		return nil, fmt.Errorf("%w: we are not the DTLS server", errNotDirect)
	}
	rd := pc.CurrentRemoteDescription()
	if rd == nil {
		return nil, fmt.Errorf("%w: no remote description", errNotDirect)
	}
	// RFC 9335 header encryption: pion encrypts our headers too when the
	// viewer declares it can receive that (a=cryptex, the session's or
	// every media section's: pion refuses a mix), and so do we.
	var opts []srtp.ContextOption
	if strings.Contains(rd.SDP, "\na=cryptex") {
		opts = append(opts, srtp.Cryptex(srtp.CryptexModeEnabled))
	}
	ice := dt.ICETransport()
	pair, err := ice.GetSelectedCandidatePair()
	if err != nil || pair == nil {
		return nil, fmt.Errorf("%w: no selected candidate pair", errNotDirect)
	}
	addr, ok := udpAddr(pair)
	if !ok {
		return nil, fmt.Errorf("%w: path is %s, not UDP", errNotDirect, pair.Local.Protocol)
	}
	key, salt, profile, err := d.keys()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNotDirect, err)
	}
	ctx, err := srtp.CreateContext(key, salt, profile, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNotDirect, err)
	}
	w := &DirectWriter{b: d.e.batch, ctx: ctx}
	w.addr.Store(&addr)
	ice.OnSelectedCandidatePairChange(func(p *webrtc.ICECandidatePair) {
		if a, ok := udpAddr(p); ok {
			w.addr.Store(&a)
			return
		}
		if !w.lost.Swap(true) {
			lost()
		}
	})
	// The pair may have changed between the read above and the callback.
	if p, err := ice.GetSelectedCandidatePair(); err == nil && p != nil {
		if a, ok := udpAddr(p); ok {
			w.addr.Store(&a)
		} else {
			w.lost.Store(true)
			return nil, fmt.Errorf("%w: path is %s, not UDP", errNotDirect, p.Local.Protocol)
		}
	}
	return w, nil
}

// udpAddr returns the viewer's address when the pair runs over UDP.
func udpAddr(p *webrtc.ICECandidatePair) (netip.AddrPort, bool) {
	if p == nil || p.Local == nil || p.Remote == nil || p.Local.Protocol != webrtc.ICEProtocolUDP {
		return netip.AddrPort{}, false
	}
	a, err := netip.ParseAddr(p.Remote.Address)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a, p.Remote.Port), true
}

// WriteRTP encrypts the packet and queues it on the media socket.
func (w *DirectWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	buf, n, err := w.seal(h, payload)
	if err != nil {
		return 0, err
	}
	if err := w.b.queue(buf, n, *w.addr.Load()); err != nil {
		return 0, err
	}
	return len(payload) + h.MarshalSize(), nil
}

// Batcher returns the media socket, which makes the batches WriteRTPTo
// takes (sfu.Batcher).
func (w *DirectWriter) Batcher() sfu.Batcher { return w.b }

// WriteRTPTo is WriteRTP with the datagram left in b, a batch of the
// media socket (Batcher), instead of on the socket's queue. The batch's
// owner sends it.
func (w *DirectWriter) WriteRTPTo(b sfu.Batch, h *rtp.Header, payload []byte) (int, error) {
	sb, ok := b.(*SendBatch)
	if !ok || sb.w.b != w.b {
		return w.WriteRTP(h, payload)
	}
	buf, n, err := w.seal(h, payload)
	if err != nil {
		return 0, err
	}
	sb.put(buf, n, *w.addr.Load())
	return len(payload) + h.MarshalSize(), nil
}

// seal marshals and encrypts the packet into a buffer of the socket's
// pool, n bytes long, which the caller then owns.
func (w *DirectWriter) seal(h *rtp.Header, payload []byte) (buf *[MaxDatagram]byte, n int, err error) {
	if w.lost.Load() {
		return nil, 0, errPathLost
	}
	hl := h.MarshalSize()
	n = hl + len(payload)
	if n+srtpOverhead > MaxDatagram {
		return nil, 0, fmt.Errorf("rtc: RTP packet of %d bytes too large", n)
	}
	buf = w.b.pool.Get().(*[MaxDatagram]byte)
	if _, err := h.MarshalTo(buf[:hl]); err != nil {
		w.b.pool.Put(buf)
		return nil, 0, err
	}
	copy(buf[hl:], payload)
	w.mu.Lock()
	out, err := w.ctx.EncryptRTP(buf[:n], buf[:n], &w.hdr)
	w.mu.Unlock()
	if err != nil || &out[0] != &buf[0] { // in place, so within the buffer
		w.b.pool.Put(buf)
		if err == nil {
			err = errors.New("rtc: SRTP did not encrypt in place")
		}
		return nil, 0, err
	}
	return buf, len(out), nil
}

// Write sends one marshalled RTP packet.
func (w *DirectWriter) Write(b []byte) (int, error) {
	var p rtp.Packet
	if err := p.Unmarshal(b); err != nil {
		return 0, err
	}
	return w.WriteRTP(&p.Header, p.Payload)
}

// srtpOverhead bounds what SRTP adds to a packet: the longest
// authentication tag of the profiles pion offers (16 bytes for AEAD).
const srtpOverhead = 16

var errPathLost = errors.New("rtc: viewer's path left the UDP socket")
