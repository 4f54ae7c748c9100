package rtc

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// TestDTLSKeysMatchPion runs real DTLS handshakes over loopback UDP with
// pion's DTLS, the server capturing its handshake as a viewer's API does,
// and checks that the SRTP keys DirectSend derives are the ones pion's
// own export gives the server (which its SRTP session sends with) and the
// client (which decrypts with them), for every cipher suite pion offers
// and every SRTP profile it negotiates.
func TestDTLSKeysMatchPion(t *testing.T) {
	ecdsaCert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaCert, err := selfsign.SelfSign(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	suites := []struct {
		id   dtls.CipherSuiteID
		cert tls.Certificate
	}{
		{dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, ecdsaCert},
		{dtls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, ecdsaCert},
		{dtls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, ecdsaCert},
		{dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, ecdsaCert},
		{dtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, rsaCert},
		{dtls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, rsaCert},
		{dtls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, rsaCert},
		{dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, rsaCert},
	}
	profiles := []dtls.SRTPProtectionProfile{
		dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AEAD_AES_256_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80,
	}
	for _, s := range suites {
		for _, p := range profiles {
			t.Run(fmt.Sprintf("%v/%#04x", s.id, uint16(p)), func(t *testing.T) {
				checkDirectKeys(t, s.id, s.cert, p)
			})
		}
	}
}

func checkDirectKeys(t *testing.T, suite dtls.CipherSuiteID, cert tls.Certificate, profile dtls.SRTPProtectionProfile) {
	t.Helper()
	sc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	d := &DirectSend{}
	server, err := dtls.ServerWithOptions(sc, cc.LocalAddr(),
		dtls.WithCertificates(cert), dtls.WithCipherSuites(suite), dtls.WithSRTPProtectionProfiles(profile),
		dtls.WithKeyLogWriter(d), dtls.WithServerHelloMessageHook(d.onServerHello),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret))
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close() //nolint:errcheck
	client, err := dtls.ClientWithOptions(cc, sc.LocalAddr(),
		dtls.WithCertificates(cert), dtls.WithCipherSuites(suite), dtls.WithSRTPProtectionProfiles(profile),
		dtls.WithInsecureSkipVerify(true), dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close() //nolint:errcheck
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- client.HandshakeContext(ctx) }()
	if err := server.HandshakeContext(ctx); err != nil {
		t.Fatal("server handshake:", err)
	}
	if err := <-done; err != nil {
		t.Fatal("client handshake:", err)
	}

	key, salt, gotProfile, err := d.keys()
	if err != nil {
		t.Fatal(err)
	}
	if gotProfile != srtp.ProtectionProfile(profile) {
		t.Fatalf("profile %v, negotiated %v", gotProfile, profile)
	}
	for _, side := range []struct {
		name     string
		conn     *dtls.Conn
		isClient bool
	}{{"server", server, false}, {"client", client, true}} {
		st, ok := side.conn.ConnectionState()
		if !ok {
			t.Fatal("no connection state")
		}
		cfg := srtp.Config{Profile: srtp.ProtectionProfile(profile)}
		if err := cfg.ExtractSessionKeysFromDTLS(&st, side.isClient); err != nil {
			t.Fatal(err)
		}
		wantKey, wantSalt := cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt
		if side.isClient {
			wantKey, wantSalt = cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt
		}
		if !bytes.Equal(key, wantKey) || !bytes.Equal(salt, wantSalt) {
			t.Errorf("%s: derived key %x salt %x, pion's %x %x", side.name, key, salt, wantKey, wantSalt)
		}
	}
}

// BenchmarkDirectWriter measures one packet of a viewer's video through
// the direct send path: marshal, SRTP (AES-128-GCM) in place, queued on a
// real batched socket on loopback, and sent by its writers to a socket
// nobody reads (the kernel drops what overflows it). The writers'
// sendmmsg runs on their own goroutines, but once their queue is full the
// sender waits for them, so ns/op is the rate the whole path sustains.
func BenchmarkDirectWriter(b *testing.B) {
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close() //nolint:errcheck
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	bc := newBatchConn(c, nil, nil)
	defer bc.Close() //nolint:errcheck
	key, salt := make([]byte, 16), make([]byte, 12)
	ctx, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		b.Fatal(err)
	}
	w := &DirectWriter{b: bc, ctx: ctx}
	addr := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	w.addr.Store(&addr)
	h := &rtp.Header{Version: 2, PayloadType: 102, SSRC: 7, Marker: true}
	payload := make([]byte, 1100)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		h.SequenceNumber++
		h.Timestamp += 3000
		if _, err := w.WriteRTP(h, payload); err != nil {
			b.Fatal(err)
		}
	}
}
