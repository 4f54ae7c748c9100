package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The names under which Assets serves the players, without a leading slash.
const (
	// HLSJS is hls.js, which defines the global Hls.
	HLSJS = "hls.min.js"
	// DashJS is dash.js with all its modules, which defines the global
	// dashjs.
	DashJS = "dash.all.min.js"
)

// ModulePath is the module whose go.mod FindDir looks for.
const ModulePath = "github.com/hybridcast/hybridcast"

// InstallCommand installs the players, run from the repository root.
const InstallCommand = "npm ci --prefix web"

// ErrNotInstalled is returned, wrapped with the missing file and the fix,
// when the players are not installed in the directory given to Assets.
var ErrNotInstalled = errors.New("web: players not installed")

// Cache-Control values. A URL with the version of the file (see
// Handler.Path) names one content forever, so the browser and any CDN may
// keep it for a year without asking again. A URL without it must follow an
// upgrade of the npm packages, so it is kept an hour, then revalidated with
// the ETag (a 304 when nothing changed).
const (
	cacheVersioned   = "public, max-age=31536000, immutable"
	cacheUnversioned = "public, max-age=3600"
)

// versionParam is the query parameter that carries the version of a file.
const versionParam = "v"

// sources lists the served files: URL name, npm package, path inside the
// package. A new major version of a package may move its dist files; the
// tests of this package check these paths against the installed packages.
var sources = []struct{ name, pkg, rel string }{
	{HLSJS, "hls.js", "dist/hls.min.js"},
	{DashJS, "dashjs", "dist/modern/umd/dash.all.min.js"},
}

// File describes one served file.
type File struct {
	// Name is the URL name, such as HLSJS.
	Name string
	// Package and Version are the npm package and its installed version
	// (from its package.json; empty if unreadable).
	Package string
	Version string
	// Path is the path of the file on disk.
	Path string
	// Size is the length of the file in bytes.
	Size int
	// Hash is the hex SHA-256 of the content, shortened; the ETag and the
	// version in Handler.Path derive from it.
	Hash string
}

type asset struct {
	File
	body    []byte
	etag    string
	modTime time.Time
}

// Handler serves the players. It reads them once, in Assets: a later npm ci
// reaches the clients after a restart. It answers GET and HEAD on
// /hls.min.js and /dash.all.min.js (see Path for the versioned URLs) with
// ETag, Last-Modified, ranges and conditional requests; other paths get 404.
// Mount it with http.StripPrefix.
type Handler struct {
	byName map[string]*asset
	files  []File
}

// Assets reads the installed players below dir, the web directory of the
// repository (see FindDir), and returns a handler that serves them. When a
// file is missing, the error wraps ErrNotInstalled and tells to run
// InstallCommand.
func Assets(dir string) (*Handler, error) {
	h := &Handler{byName: make(map[string]*asset, len(sources))}
	for _, s := range sources {
		pkgDir := filepath.Join(dir, "node_modules", s.pkg)
		path := filepath.Join(pkgDir, filepath.FromSlash(s.rel))
		body, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%w: %s (npm package %s): %w; install them with `%s` from the repository root, or scripts/setup",
				ErrNotInstalled, s.name, s.pkg, err, InstallCommand)
		}
		st, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("web: %s: %w", path, err)
		}
		sum := sha256.Sum256(body)
		hash := hex.EncodeToString(sum[:8])
		a := &asset{
			File: File{
				Name: s.name, Package: s.pkg, Version: packageVersion(pkgDir),
				Path: path, Size: len(body), Hash: hash,
			},
			body:    body,
			etag:    `"` + hash + `"`,
			modTime: st.ModTime(),
		}
		h.byName[s.name] = a
		h.files = append(h.files, a.File)
	}
	return h, nil
}

// packageVersion returns the version in the package.json of an npm package,
// or "".
func packageVersion(pkgDir string) string {
	b, err := os.ReadFile(filepath.Join(pkgDir, "package.json"))
	if err != nil {
		return ""
	}
	var p struct {
		Version string `json:"version"`
	}
	if json.Unmarshal(b, &p) != nil {
		return ""
	}
	return p.Version
}

// Files describes the served files, in a fixed order.
func (h *Handler) Files() []File {
	return append([]File(nil), h.files...)
}

// Path returns the path, relative to the handler's root, under which a page
// should load the file name: the name with its version, such as
// "hls.min.js?v=3f2a…". That URL changes when the file does, so the handler
// lets browsers and caches keep it for a year. It returns name unchanged for
// an unknown name.
func (h *Handler) Path(name string) string {
	a, ok := h.byName[name]
	if !ok {
		return name
	}
	return name + "?" + versionParam + "=" + a.Hash
}

// ServeHTTP serves the file named by the request path.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a, ok := h.byName[strings.TrimPrefix(r.URL.Path, "/")]
	if !ok {
		http.Error(w, "not found: the players are "+HLSJS+" and "+DashJS, http.StatusNotFound)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/javascript; charset=utf-8")
	hdr.Set("X-Content-Type-Options", "nosniff")
	// Pages on other origins (a CDN's) may load the players with
	// crossorigin="anonymous" to see their errors.
	hdr.Set("Access-Control-Allow-Origin", "*")
	hdr.Set("ETag", a.etag)
	if r.URL.Query().Get(versionParam) == a.Hash {
		hdr.Set("Cache-Control", cacheVersioned)
	} else {
		// No version, or the one of another content (a page from before
		// an upgrade): this content must not be kept under that URL.
		hdr.Set("Cache-Control", cacheUnversioned)
	}
	http.ServeContent(w, r, a.Name, a.modTime, bytes.NewReader(a.body))
}

// FindDir returns the web directory of the repository: it walks up from the
// working directory to the go.mod of ModulePath, and returns the directory
// "web" beside it. A test's working directory is its package directory, so
// FindDir works from any package of the module.
func FindDir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("web: %w", err)
	}
	return findDir(wd)
}

func findDir(start string) (string, error) {
	dir := start
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && isModule(b) {
			web := filepath.Join(dir, "web")
			if _, err := os.Stat(filepath.Join(web, "package.json")); err != nil {
				return "", fmt.Errorf("web: repository at %s has no web/package.json: %w", dir, err)
			}
			return web, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("web: no go.mod of %s in %s or above it", ModulePath, start)
		}
		dir = parent
	}
}

// isModule tells whether the go.mod content b declares ModulePath.
func isModule(b []byte) bool {
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "module" && strings.Trim(f[1], `"`) == ModulePath {
			return true
		}
	}
	return false
}
