//go:build !unix

package main

import "time"

// selfCPU is 0: getrusage is Unix's, so the report shows no tool CPU.
func selfCPU() time.Duration { return 0 }
