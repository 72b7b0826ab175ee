// Package procstat reads a Linux process's memory figures from /proc, for benchmarks and tests
// that report or bound memory.
package procstat

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Status holds the memory figures of /proc/<pid>/status, in bytes.
type Status struct {
	// RSS is the resident set (VmRSS) and HWM its high-water mark (VmHWM).
	RSS, HWM uint64
	// Anon is the resident anonymous memory (RssAnon: heap, stacks), File the resident
	// file-backed memory (RssFile: the binary's pages).
	Anon, File uint64
}

// Read returns the memory figures of process pid (0 for this process).
func Read(pid int) (Status, error) {
	path := "/proc/self/status"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Status{}, err
	}
	var s Status
	fields := map[string]*uint64{"VmRSS": &s.RSS, "VmHWM": &s.HWM, "RssAnon": &s.Anon, "RssFile": &s.File}
	for _, line := range strings.Split(string(b), "\n") {
		field, value, ok := strings.Cut(line, ":")
		if !ok || fields[field] == nil {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return Status{}, fmt.Errorf("%s: %s: %w", path, field, err)
		}
		*fields[field] = kb << 10
	}
	return s, nil
}

// Memory returns the resident set size and its high-water mark, in bytes, of process pid
// (0 for this process).
func Memory(pid int) (rss, hwm uint64, err error) {
	s, err := Read(pid)
	return s.RSS, s.HWM, err
}
