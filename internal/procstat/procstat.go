// Package procstat reads the machine's CPU times from Linux's /proc/stat,
// for the load tool and the benchmarks that report how busy the machine
// was and how much of it the hypervisor took (steal).
package procstat

import (
	"os"
	"strconv"
	"strings"
)

// CPU is the machine's CPU time since boot, all cores together, in clock
// ticks.
type CPU struct {
	// Busy is user, nice, system, irq and softirq time (guest time is
	// already inside user and nice).
	Busy uint64
	// Steal is time the hypervisor gave this VM's CPUs to other guests:
	// neither busy nor idle for us.
	Steal uint64
	// Total is Busy, Steal, idle and iowait.
	Total uint64
}

// Read reads /proc/stat; ok is false where there is none (not Linux).
func Read() (c CPU, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPU{}, false
	}
	return Parse(string(b))
}

// Parse reads the aggregate line of a /proc/stat text: "cpu user nice
// system idle iowait irq softirq steal guest guest_nice".
func Parse(stat string) (c CPU, ok bool) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return CPU{}, false
	}
	for i, v := range f[1:] {
		if i >= 8 { // guest, guest_nice: already in user, nice
			break
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return CPU{}, false
		}
		c.Total += n
		switch i {
		case 3, 4: // idle, iowait
		case 7:
			c.Steal += n
		default:
			c.Busy += n
		}
	}
	return c, true
}
