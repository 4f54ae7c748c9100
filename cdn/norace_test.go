//go:build linux && !race

package cdn

const raceEnabled = false
