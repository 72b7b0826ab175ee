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

package version

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"
)

func TestGetFallsBackToBuildInfo(t *testing.T) {
	vcs := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	build := func(mainVersion string, settings []debug.BuildSetting) *debug.BuildInfo {
		return &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: mainVersion}, Settings: settings}
	}
	for _, tc := range []struct {
		name            string
		version, commit string
		bi              *debug.BuildInfo
		want            Info
	}{
		{"stamped wins", "0.1.0", "abc123", build("v9.9.9", vcs("vcs.revision", "def456")),
			Info{Version: "0.1.0", Commit: "abc123", GoVersion: "go1.99.1"}},
		{"vcs stamping", "", "", build("v0.0.0-20260101000000-def456", vcs("vcs.revision", "def456", "vcs.modified", "false")),
			Info{Version: "v0.0.0-20260101000000-def456", Commit: "def456", GoVersion: "go1.99.1"}},
		{"modified tree", "", "", build("(devel)", vcs("vcs.revision", "def456", "vcs.modified", "true")),
			Info{Version: "devel", Commit: "def456-dirty", GoVersion: "go1.99.1"}},
		{"go run, -buildvcs=false", "", "", build("(devel)", nil),
			Info{Version: "devel", Commit: "unknown", GoVersion: "go1.99.1"}},
		{"no build info", "", "", nil,
			Info{Version: "devel", Commit: "unknown", GoVersion: runtime.Version()}},
	} {
		got := get(tc.version, tc.commit, tc.bi)
		tc.want.Platform = runtime.GOOS + "/" + runtime.GOARCH
		if got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestString(t *testing.T) {
	i := Info{Version: "0.1.0", Commit: "abc123", GoVersion: "go1.26.8", Platform: "linux/arm64"}
	if got, want := i.String(), "0.1.0 (commit abc123, go1.26.8, linux/arm64)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// TestStampedBinaries builds the three commands as make build does, with the version and commit
// stamped by -ldflags -X, and runs each with --version.
func TestStampedBinaries(t *testing.T) {
	const pkg = "github.com/segment-webhook-operator/segment-webhook-operator/internal/version"
	dir := t.TempDir()
	build := exec.Command("go", "build", "-trimpath", "-o", dir+string(filepath.Separator),
		"-ldflags", "-X "+pkg+".Version=9.8.7 -X "+pkg+".Commit=0123456789abcdef",
		"../../cmd/manager", "../../cmd/receiver", "../../cmd/kubectl-swh")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	want := " version 9.8.7 (commit 0123456789abcdef, " + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	for _, name := range []string{"manager", "receiver", "kubectl-swh"} {
		out, err := exec.Command(filepath.Join(dir, name), "--version").Output()
		if err != nil {
			t.Errorf("%s --version: %v", name, err)
			continue
		}
		display := name
		if name == "kubectl-swh" {
			display = "kubectl swh"
		}
		if got := string(out); got != display+want {
			t.Errorf("%s --version printed %q, want %q", name, got, display+want)
		}
	}
	out, err := exec.Command(filepath.Join(dir, "kubectl-swh"), "version").Output()
	if err != nil || string(out) != "kubectl swh"+want {
		t.Errorf("kubectl-swh version: %q, %v; want %q", out, err, "kubectl swh"+want)
	}
}
