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

// Package version is what a binary says about its build: the release version and the git commit
// that the build stamps with -ldflags -X, else what the Go toolchain recorded, and the Go version.
//
//	go build -ldflags "-X $(PKG).Version=0.1.0 -X $(PKG).Commit=$(git rev-parse HEAD)" ./cmd/...
//
// where PKG is github.com/segment-webhook-operator/segment-webhook-operator/internal/version.
// It imports the standard library only: the receiver links it and must stay small.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set at link time with -ldflags -X; empty means not stamped.
var (
	// Version is the release version, as in the image tags without the v (make build: $(VERSION)).
	Version string
	// Commit is the git commit the binary was built from, with -dirty for a tree with changes.
	Commit string
)

// Info describes a build.
type Info struct {
	Version   string // the stamped version, else the main module's, else "devel"
	Commit    string // the stamped commit, else vcs.revision (+"-dirty" if vcs.modified), else "unknown"
	GoVersion string // the Go toolchain that built the binary
	Platform  string // GOOS/GOARCH
}

// Get returns this binary's build information.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return get(Version, Commit, bi)
}

func get(version, commit string, bi *debug.BuildInfo) Info {
	info := Info{Version: version, Commit: commit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		if bi.GoVersion != "" {
			info.GoVersion = bi.GoVersion
		}
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		if info.Commit == "" {
			var revision, modified string
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					revision = s.Value
				case "vcs.modified":
					modified = s.Value
				}
			}
			if revision != "" && modified == "true" {
				revision += "-dirty"
			}
			info.Commit = revision
		}
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	return info
}

// String is what a binary prints for --version after "<name> version ":
// "0.1.0 (commit <full sha>, go1.26.8, linux/amd64)".
func (i Info) String() string {
	return fmt.Sprintf("%s (commit %s, %s, %s)", i.Version, i.Commit, i.GoVersion, i.Platform)
}

// Line is the whole --version line of the named program, as cobra prints it for kubectl-swh.
func Line(program string) string { return program + " version " + Get().String() }
