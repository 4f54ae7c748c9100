//go:build !race

package cdn

const raceEnabled = false
