package web

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fakeInstall writes stand-ins for the installed players below dir.
func fakeInstall(t *testing.T, dir string) {
	t.Helper()
	for _, s := range sources {
		pkgDir := filepath.Join(dir, "node_modules", s.pkg)
		path := filepath.Join(pkgDir, filepath.FromSlash(s.rel))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("/* "+s.pkg+" */ var x = 1;\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pkgDir, "package.json"), []byte(`{"name":"`+s.pkg+`","version":"9.8.7"}`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func TestAssetsServe(t *testing.T) {
	dir := t.TempDir()
	fakeInstall(t, dir)
	h, err := Assets(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := h.Files()
	if len(files) != 2 || files[0].Name != HLSJS || files[1].Name != DashJS {
		t.Fatalf("Files() = %+v, want hls.min.js then dash.all.min.js", files)
	}
	for _, f := range files {
		if f.Version != "9.8.7" || f.Size == 0 || f.Hash == "" {
			t.Errorf("file %+v: want version 9.8.7, a size and a hash", f)
		}
	}

	for _, tc := range []struct {
		name, target, wantCache string
	}{
		{"unversioned", "/" + HLSJS, cacheUnversioned},
		{"versioned", "/" + h.Path(HLSJS), cacheVersioned},
		{"versioned dash", "/" + h.Path(DashJS), cacheVersioned},
		{"stale version", "/" + HLSJS + "?v=0000", cacheUnversioned},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := get(t, h, http.MethodGet, tc.target, nil)
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %d %s", tc.target, res.StatusCode, body)
			}
			if got := res.Header.Get("Cache-Control"); got != tc.wantCache {
				t.Errorf("Cache-Control %q, want %q", got, tc.wantCache)
			}
			if got := res.Header.Get("Content-Type"); got != "text/javascript; charset=utf-8" {
				t.Errorf("Content-Type %q", got)
			}
			if res.Header.Get("ETag") == "" || res.Header.Get("Last-Modified") == "" {
				t.Errorf("want ETag and Last-Modified, got %v", res.Header)
			}
			if !strings.Contains(string(body), "var x = 1;") {
				t.Errorf("body %q", body)
			}
		})
	}

	// A revalidation with the ETag gets 304 without a body.
	etag := get(t, h, http.MethodGet, "/"+HLSJS, nil).Header.Get("ETag")
	res := get(t, h, http.MethodGet, "/"+HLSJS, map[string]string{"If-None-Match": etag})
	if res.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: status %d, want 304", res.StatusCode)
	}
	// HEAD gives the length and no body.
	res = get(t, h, http.MethodHead, "/"+DashJS, nil)
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || len(body) != 0 || res.Header.Get("Content-Length") != strconv.Itoa(files[1].Size) {
		t.Errorf("HEAD: status %d, body %d bytes, Content-Length %q; want 200, 0, %d",
			res.StatusCode, len(body), res.Header.Get("Content-Length"), files[1].Size)
	}
	if res := get(t, h, http.MethodPost, "/"+HLSJS, nil); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d, want 405", res.StatusCode)
	}
	for _, p := range []string{"/", "/hls.js", "/../package.json", "/node_modules/hls.js/dist/hls.min.js"} {
		if res := get(t, h, http.MethodGet, p, nil); res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", p, res.StatusCode)
		}
	}
	if got := h.Path("other.js"); got != "other.js" {
		t.Errorf("Path(other.js) = %q", got)
	}

	// Mounted as the server will mount it.
	mux := http.NewServeMux()
	mux.Handle("/assets/", http.StripPrefix("/assets", h))
	if res := get(t, mux, http.MethodGet, "/assets/"+h.Path(DashJS), nil); res.StatusCode != http.StatusOK {
		t.Errorf("mounted: status %d", res.StatusCode)
	}
}

func TestAssetsMissing(t *testing.T) {
	_, err := Assets(t.TempDir())
	if !errors.Is(err, ErrNotInstalled) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Assets(empty dir): %v; want ErrNotInstalled and ErrNotExist", err)
	}
	if !strings.Contains(err.Error(), InstallCommand) || !strings.Contains(err.Error(), "hls.js") {
		t.Errorf("error %q: want the package and the fix %q", err, InstallCommand)
	}
	t.Log(err)
}

func TestFindDir(t *testing.T) {
	root := t.TempDir()
	deep := filepath.Join(root, "a", "b")
	if err := os.MkdirAll(filepath.Join(root, "web"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	// Another module's go.mod on the way up is passed over.
	if err := os.WriteFile(filepath.Join(root, "a", "go.mod"), []byte("module example.com/other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := findDir(deep); err == nil {
		t.Fatal("findDir without the module's go.mod: no error")
	}
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("// c\nmodule "+ModulePath+"\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := findDir(deep); err == nil || !strings.Contains(err.Error(), "package.json") {
		t.Fatalf("findDir without web/package.json: %v", err)
	}
	if err := os.WriteFile(filepath.Join(root, "web", "package.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := findDir(deep)
	if err != nil || got != filepath.Join(root, "web") {
		t.Fatalf("findDir = %q, %v; want %q", got, err, filepath.Join(root, "web"))
	}
}

// TestInstalled checks the real install: the dist paths in sources must
// exist in the pinned packages. It skips when npm ci has not run, except in
// CI, which must have run it.
func TestInstalled(t *testing.T) {
	dir, err := FindDir()
	if err != nil {
		t.Fatal(err)
	}
	h, err := Assets(dir)
	if errors.Is(err, ErrNotInstalled) {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatalf("%v; CI must install them (scripts/test does)", err)
		}
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range h.Files() {
		t.Logf("%s: %s %s, %d bytes, %s", f.Name, f.Package, f.Version, f.Size, f.Path)
		if f.Version == "" || f.Size < 100_000 {
			t.Errorf("%s: version %q, %d bytes: not the expected dist file", f.Name, f.Version, f.Size)
		}
	}
	// The pinned majors: hls.js 1.x, dashjs 5.x (whose dist layout this
	// package knows).
	if v := h.Files()[0].Version; !strings.HasPrefix(v, "1.") {
		t.Errorf("hls.js %s, want 1.x", v)
	}
	if v := h.Files()[1].Version; !strings.HasPrefix(v, "5.") {
		t.Errorf("dashjs %s, want 5.x", v)
	}
}
