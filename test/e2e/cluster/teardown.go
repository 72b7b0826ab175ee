/*
Copyright 2026 The segment-webhook-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package cluster

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Teardown removes the cluster recorded in dir: its processes and the containers they started,
// mounts under dir, the links it made, the KUBE-* and CNI-* iptables chains, the kubepods
// cgroups, the sysctls it changed (restored), the fixed paths it created, and dir itself.
// It goes on after a failed step and returns every failure.
func Teardown(dir string, progress io.Writer) error {
	if progress == nil {
		progress = io.Discard
	}
	start := time.Now()
	var st state
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return fmt.Errorf("no cluster recorded in %s: %w", dir, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(dir, stateFile), err)
	}
	var errs []error
	fail := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	// The kubelet first, so it restarts nothing; then the containers and their shims; then the
	// rest in reverse order of start.
	for _, p := range st.Procs {
		if p.Name == "kubelet" {
			terminate(p.Pid, teardownGrace)
		}
	}
	killCgroupProcs()
	killShims(filepath.Join(dir, "containerd.sock"))
	for i := len(st.Procs) - 1; i >= 0; i-- {
		terminate(st.Procs[i].Pid, teardownGrace)
	}
	fail(unmountUnder(dir))
	for _, link := range st.Links {
		if linkExists(link) {
			fail(run("ip", "link", "del", link))
		}
	}
	for _, tool := range []string{"iptables", "ip6tables"} {
		fail(removeChains(tool))
	}
	fail(removeCgroups())
	for key, value := range st.Sysctls {
		fail(os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644))
	}
	for _, p := range st.Created {
		fail(unmountUnder(p))
		fail(os.RemoveAll(p))
	}
	fail(os.RemoveAll(dir))
	fmt.Fprintf(progress, "[cluster] removed in %.1fs\n", time.Since(start).Seconds())
	return errors.Join(errs...)
}

// teardownGrace is how long a component may take to stop before it is killed: nothing it would
// finish matters once the cluster goes.
const teardownGrace = 3 * time.Second

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	// A zombie is not running: it only waits for its parent.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// terminate sends SIGTERM to pid's process group and to pid, and SIGKILL after grace.
func terminate(pid int, grace time.Duration) {
	if !alive(pid) {
		return
	}
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; alive(pid) && i < 50; i++ {
		time.Sleep(100 * time.Millisecond)
	}
}

// cgroupRoots are the kubelet's pod cgroups in every hierarchy (cgroup v1) or the unified one.
func cgroupRoots() []string {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	if _, err := os.Stat("/sys/fs/cgroup/kubepods"); err == nil {
		roots = append(roots, "/sys/fs/cgroup/kubepods")
	}
	return roots
}

// killCgroupProcs kills every process in the kubelet's pod cgroups: the containers.
func killCgroupProcs() {
	for _, root := range cgroupRoots() {
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(path)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			return nil
		})
	}
}

// killShims kills the containerd shims that serve the containerd at socket.
func killShims(socket string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, "containerd-shim") && strings.Contains(cmd, socket) {
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
				terminate(pid, 2*time.Second)
			}
		}
	}
}

// unmountUnder detaches every mount at or under dir, deepest first.
func unmountUnder(dir string) error {
	dir = filepath.Clean(dir)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	slices.SortFunc(points, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	var errs []error
	for _, mp := range points {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeChains deletes the KUBE-* and CNI-* chains the kubelet, kube-proxy and the CNI plugins
// made in every table, and the rules of other chains that jump to them.
func removeChains(tool string) error {
	var errs []error
	ours := func(chain string) bool { return strings.HasPrefix(chain, "KUBE-") || strings.HasPrefix(chain, "CNI-") }
	for _, table := range []string{"filter", "nat", "mangle"} {
		out, err := exec.Command(tool, "-w", "-t", table, "-S").Output()
		if err != nil {
			continue // the table does not exist here
		}
		var chains []string
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) >= 2 && f[0] == "-N" && ours(f[1]):
				chains = append(chains, f[1])
			case len(f) >= 2 && f[0] == "-A" && !ours(f[1]) && jumpsToOurs(f, ours):
				args := append([]string{"-w", "-t", table, "-D"}, unquote(f[1:])...)
				if err := run(tool, args...); err != nil {
					errs = append(errs, err)
				}
			}
		}
		for _, ch := range chains {
			_ = run(tool, "-w", "-t", table, "-F", ch)
		}
		for _, ch := range chains {
			if err := run(tool, "-w", "-t", table, "-X", ch); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func jumpsToOurs(f []string, ours func(string) bool) bool {
	for i := range f {
		if (f[i] == "-j" || f[i] == "-g") && i+1 < len(f) && ours(f[i+1]) {
			return true
		}
	}
	return false
}

// unquote joins the fields of an iptables -S line back into arguments: -S quotes comments that
// hold spaces ("--comment "a b"").
func unquote(f []string) []string {
	var args []string
	for i := 0; i < len(f); i++ {
		if strings.HasPrefix(f[i], `"`) {
			s := f[i]
			for !strings.HasSuffix(s, `"`) || s == `"` {
				if i+1 >= len(f) {
					break
				}
				i++
				s += " " + f[i]
			}
			args = append(args, strings.Trim(s, `"`))
			continue
		}
		args = append(args, f[i])
	}
	return args
}

// removeCgroups removes the kubepods cgroups, deepest first, once their processes are gone.
func removeCgroups() error {
	var errs []error
	for _, root := range cgroupRoots() {
		var dirs []string
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			var err error
			for try := 0; try < 20; try++ {
				if err = syscall.Rmdir(dirs[i]); err == nil || errors.Is(err, syscall.ENOENT) {
					err = nil
					break
				}
				time.Sleep(100 * time.Millisecond) // a killed process leaves its cgroup a moment later
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("rmdir %s: %w", dirs[i], err))
			}
		}
	}
	return errors.Join(errs...)
}
