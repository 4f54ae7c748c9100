package procstat

import "testing"

func TestParse(t *testing.T) {
	// The first lines of a 2-CPU VM's /proc/stat.
	const stat = "cpu  1896854 106812 408057 10215874 9325 0 72064 640015 11 12\ncpu0 948427 53406 204028 5107937 4662 0 36032 320007 0 0\n"
	c, ok := Parse(stat)
	want := CPU{
		Busy:  1896854 + 106812 + 408057 + 0 + 72064,
		Steal: 640015,
		Total: 1896854 + 106812 + 408057 + 10215874 + 9325 + 0 + 72064 + 640015,
	}
	if !ok || c != want {
		t.Fatalf("Parse = %+v, %v; want %+v", c, ok, want)
	}
	for _, bad := range []string{"", "intr 1 2 3", "cpu 1 2", "cpu 1 2 x 4 5"} {
		if _, ok := Parse(bad); ok {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	// A kernel without steal (before 2.6.11) still parses.
	if c, ok := Parse("cpu 1 2 3 4 5"); !ok || c.Busy != 6 || c.Total != 15 || c.Steal != 0 {
		t.Errorf("short line: %+v, %v", c, ok)
	}
}
