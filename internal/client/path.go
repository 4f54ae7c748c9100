package client

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// LoadClipFile loads a media file for a command-line tool: a relative path
// is taken from the repository root (so ../shared/media/… works from any
// directory of the checkout); an empty path means no clip (nil, nil).
func LoadClipFile(path string) (*Clip, error) {
	if path == "" {
		return nil, nil
	}
	resolved := ResolveFromRepo(path)
	if _, err := os.Stat(resolved); err != nil {
		return nil, fmt.Errorf("media file %s (from %q): %w; pass an existing file, or \"\" to skip", resolved, path, err)
	}
	return LoadClip(resolved)
}

// ResolveFromRepo makes a relative path relative to the repository root,
// found by walking up from the working directory to this module's go.mod.
// Without one it returns path unchanged. The walk ends at the filesystem root.
func ResolveFromRepo(path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	dir, err := os.Getwd()
	if err != nil {
		return path
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/hybridcast/hybridcast") {
			return filepath.Join(dir, path)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return path
		}
		dir = parent
	}
}
