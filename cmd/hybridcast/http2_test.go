package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHTTP2 checks that players and caches can use HTTP/2: cleartext (h2c,
// prior knowledge) by default, and over TLS (ALPN) with a certificate.
func TestHTTP2(t *testing.T) {
	t.Run("h2c", func(t *testing.T) {
		srv := startServer(t)
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		c := &http.Client{Transport: &http.Transport{Protocols: &p}}
		res, err := c.Get(srv.URL() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.Proto != "HTTP/2.0" || res.StatusCode != 200 {
			t.Fatalf("h2c: %s %d", res.Proto, res.StatusCode)
		}
	})
	t.Run("tls", func(t *testing.T) {
		cert, key, pool := selfSigned(t)
		srv := startServer(t, func(c *Config) { c.TLSCert, c.TLSKey = cert, key })
		if !strings.HasPrefix(srv.URL(), "https://") {
			t.Fatalf("URL %s is not https", srv.URL())
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
		res, err := c.Get(srv.URL() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.Proto != "HTTP/2.0" || res.StatusCode != 200 {
			t.Fatalf("TLS: %s %d", res.Proto, res.StatusCode)
		}
	})
	t.Run("half a pair", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.TLSCert = "/nonexistent.pem"
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "tls_cert and tls_key go together") {
			t.Fatalf("Validate: %v", err)
		}
	})
}

// selfSigned writes a certificate for 127.0.0.1 and its key to a temp dir.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hybridcast test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return certFile, keyFile, pool
}
