//go:build linux && race

package cdn

// raceEnabled: this test binary has the race detector, which makes the
// origin several times slower; the origin process is then a build without
// it (see originBinary).
const raceEnabled = true
