//go:build linux

package cdn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needTool returns the path of an external program, skipping the test
// without it on a developer machine and failing in CI (scripts/test
// installs it).
func needTool(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/sbin"} { // not on a user's PATH
			if _, serr := os.Stat(filepath.Join(dir, name)); serr == nil {
				return filepath.Join(dir, name)
			}
		}
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s is missing in CI: %v", name, err)
		}
		tb.Skipf("%s not installed", name)
	}
	return p
}

// render fills a template's ${NAME} placeholders; a placeholder left
// unfilled is an error (nginx's own $variables have no braces).
func render(tb testing.TB, tmpl string, vars map[string]string) string {
	tb.Helper()
	b, err := os.ReadFile(tmpl)
	if err != nil {
		tb.Fatal(err)
	}
	s := string(b)
	for k, v := range vars {
		s = strings.ReplaceAll(s, "${"+k+"}", v)
	}
	if m := placeholderRe.FindString(s); m != "" {
		tb.Fatalf("%s: placeholder %s left", tmpl, m)
	}
	return s
}

var placeholderRe = regexp.MustCompile(`\$\{HC_[A-Z_]+\}`)

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitListening waits until addr accepts connections or the process ends.
// nginx and varnishd tell nobody when they listen, so this polls.
func waitListening(tb testing.TB, addr string, exited <-chan struct{}) {
	tb.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			tb.Fatalf("cache exited before listening on %s", addr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("nothing listens on %s after 20 s", addr)
		}
	}
}

// edge is a running cache.
type edge struct {
	url    string // http://127.0.0.1:port
	tlsURL string // https (nginx only)
	cert   []byte // PEM of the self-signed certificate (nginx only)
	pid    int    // master process
	dir    string
}

// run starts a cache process and stops it when the test ends.
func run(tb testing.TB, logf string, name string, args ...string) (*exec.Cmd, <-chan struct{}) {
	tb.Helper()
	cmd := exec.Command(name, args...)
	f, err := os.Create(logf)
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(exited) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if tb.Failed() {
			if b, _ := os.ReadFile(logf); len(b) > 0 {
				tb.Logf("%s output:\n%s", filepath.Base(name), b)
			}
		}
	})
	return cmd, exited
}

// startNginx runs the shipped nginx template in front of originAddr.
func startNginx(tb testing.TB, originAddr string) *edge {
	tb.Helper()
	bin := needTool(tb, "nginx")
	dir := tb.TempDir()
	if os.Geteuid() == 0 {
		// Started as root, nginx runs its workers as "nobody": they must
		// reach the cache and temp directories under the test's dir.
		for d := dir; d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()+"/"); d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				tb.Fatal(err)
			}
		}
	}
	certPEM, keyPEM := selfSigned(tb)
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, certPEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	listen, tlsListen := freeAddr(tb), freeAddr(tb)
	conf := render(tb, filepath.Join("nginx", "nginx.conf.tmpl"), map[string]string{
		"HC_ORIGIN":     originAddr,
		"HC_LISTEN":     listen,
		"HC_TLS_LISTEN": tlsListen,
		"HC_TLS_CERT":   cert,
		"HC_TLS_KEY":    key,
		"HC_CACHE_DIR":  filepath.Join(dir, "cache"),
		"HC_RUN_DIR":    dir,
	})
	// The shipped config logs no requests; the test logs them all, and a
	// failing test prints the slow ones.
	accessLog := filepath.Join(dir, "access.log")
	conf = strings.Replace(conf, "access_log off;", `log_format hc '$msec $request_time $upstream_cache_status $status "$request" upstream=$upstream_response_time';
    access_log `+accessLog+` hc;`, 1)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	// -e: the startup's own error log (before the config is read) goes
	// to the temp dir too, not to /var/log/nginx.
	cmd, exited := run(tb, filepath.Join(dir, "stderr.log"), bin, "-c", confPath, "-e", filepath.Join(dir, "error.log"))
	tb.Cleanup(func() {
		if tb.Failed() {
			if b, _ := os.ReadFile(filepath.Join(dir, "error.log")); len(b) > 0 {
				tb.Logf("nginx error.log:\n%s", b)
			}
			tb.Logf("nginx requests that took 0.5 s or more:\n%s", slowRequests(accessLog, 0.5))
		}
	})
	waitListening(tb, listen, exited)
	waitListening(tb, tlsListen, exited)
	return &edge{url: "http://" + listen, tlsURL: "https://" + tlsListen, cert: certPEM, pid: cmd.Process.Pid, dir: dir}
}

// slowRequests returns the lines of an access log in the test's format
// whose request time is at least min seconds.
func slowRequests(path string, minSeconds float64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	var out strings.Builder
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		if d, err := strconv.ParseFloat(f[1], 64); err == nil && d >= minSeconds {
			out.WriteString(line)
		}
	}
	return out.String()
}

// startVarnish runs the shipped VCL in front of originAddr.
func startVarnish(tb testing.TB, originAddr string) *edge {
	tb.Helper()
	bin := needTool(tb, "varnishd")
	dir := tb.TempDir()
	host, port, err := net.SplitHostPort(originAddr)
	if err != nil {
		tb.Fatal(err)
	}
	vcl := render(tb, filepath.Join("varnish", "hybridcast.vcl.tmpl"), map[string]string{
		"HC_ORIGIN_HOST": host,
		"HC_ORIGIN_PORT": port,
	})
	vclPath := filepath.Join(dir, "hybridcast.vcl")
	if err := os.WriteFile(vclPath, []byte(vcl), 0o644); err != nil {
		tb.Fatal(err)
	}
	listen := freeAddr(tb)
	// -j none: no privilege separation, so the temp dir needs no other
	// owner (the test may run as root or not); -n: the working directory.
	cmd, exited := run(tb, filepath.Join(dir, "varnishd.log"), bin, "-F", "-j", "none",
		"-n", filepath.Join(dir, "work"), "-a", listen, "-f", vclPath, "-s", "malloc,256m",
		"-p", "thread_pool_min=50", "-p", "thread_pools=2")
	waitListening(tb, listen, exited)
	return &edge{url: "http://" + listen, pid: cmd.Process.Pid, dir: dir}
}

// selfSigned makes a certificate for 127.0.0.1 and its key, PEM.
func selfSigned(tb testing.TB) (certPEM, keyPEM []byte) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "hybridcast edge test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// cpuTicks is the user+system CPU time of pid and, with children, of its
// direct children (nginx's workers, varnishd's cache process), in clock
// ticks (1/100 s on Linux).
func cpuTicks(pid int, children bool) int64 {
	t := procTicks(pid)
	if !children {
		return t
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		cpid, err := strconv.Atoi(e.Name())
		if err != nil || cpid == pid {
			continue
		}
		if ppid(cpid) == pid {
			t += procTicks(cpid)
		}
	}
	return t
}

// statFields returns /proc/pid/stat's fields after the command name.
func statFields(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	return strings.Fields(s) // [0] is field 3 (state)
}

func ppid(pid int) int {
	f := statFields(pid)
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

func procTicks(pid int) int64 {
	f := statFields(pid)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64) // field 14, utime
	s, _ := strconv.ParseInt(f[12], 10, 64) // field 15, stime
	return u + s
}
