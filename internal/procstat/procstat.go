// Package procstat reads a Linux process's memory figures from /proc, for benchmarks and tests
// that report or bound memory.
package procstat

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Memory returns the resident set size and its high-water mark, in bytes, of process pid
// (0 for this process).
func Memory(pid int) (rss, hwm uint64, err error) {
	path := "/proc/self/status"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		field, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch field {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			hwm = kb << 10
		}
	}
	return rss, hwm, nil
}
