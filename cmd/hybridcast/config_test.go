package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestConfigDefaults(t *testing.T) {
	cfg, err := LoadConfig(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != ":8080" || cfg.WebRTCUDPAddr != ":8189" || cfg.PublishToken != "" || cfg.ViewerPublisherWait != 30*time.Second ||
		cfg.MaxWebRTCViewers != 3000 || cfg.MaxWebRTCViewersTotal != 0 {
		t.Fatalf("defaults = %+v", cfg)
	}
}

func TestConfigLayers(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	yaml := "http_addr: \":9000\"\nwebrtc_udp_addr: \":9001\"\npublish_token: fromfile\nlog_level: debug\npublic_ips: [203.0.113.7]\n" +
		"max_webrtc_viewers: 10\nmax_webrtc_viewers_total: 20\nweb_dir: /from/file\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig([]string{"--config", file, "--publish-token", "fromflag", "--max-webrtc-viewers", "12"},
		env(map[string]string{"HYBRIDCAST_WEBRTC_UDP_ADDR": ":9002", "HYBRIDCAST_PUBLISH_TOKEN": "fromenv",
			"HYBRIDCAST_MAX_WEBRTC_VIEWERS": "11", "HYBRIDCAST_MAX_WEBRTC_VIEWERS_TOTAL": "21", "HYBRIDCAST_WEB_DIR": "/from/env"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// file < env < flags
	if cfg.HTTPAddr != ":9000" || cfg.WebRTCUDPAddr != ":9002" || cfg.PublishToken != "fromflag" ||
		cfg.LogLevel != "debug" || len(cfg.PublicIPs) != 1 || cfg.MaxWebRTCViewers != 12 || cfg.MaxWebRTCViewersTotal != 21 ||
		cfg.WebDir != "/from/env" {
		t.Fatalf("cfg = %+v", cfg)
	}
}

func TestConfigUnknownKeyAndAllErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(file, []byte("http_adr: \":1\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig([]string{"--config", file, "--http-addr", "nope", "--public-ip", "1.2.3.4,x",
		"--ice-server", "http://a", "--ice-server", "turn:t:3478", "--log-level", "loud", "--max-webrtc-viewers", "-1"},
		env(map[string]string{"HYBRIDCAST_MAX_WEBRTC_VIEWERS_TOTAL": "many"}), io.Discard)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"field http_adr not found", "http_addr \"nope\"", "\"x\" is not an IP", "scheme must be stun",
		"TURN server needs", "log_level \"loud\"", "max_webrtc_viewers must be 0 (no cap) or more, got -1",
		"HYBRIDCAST_MAX_WEBRTC_VIEWERS_TOTAL: \"many\" is not an integer"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestICEServerLink(t *testing.T) {
	srv, err := parseICEServer("turn:turn.example.net:3478?transport=udp;username=u;credential=p")
	if err != nil {
		t.Fatal(err)
	}
	if srv.URLs[0] != "turn:turn.example.net:3478?transport=udp" || srv.Username != "u" || srv.Credential != "p" {
		t.Fatalf("%+v", srv)
	}
}
