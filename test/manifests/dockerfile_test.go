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

package manifests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// No Docker engine runs here, so the Dockerfile is checked statically: its stages, the build
// commands, and that its COPY lines and .dockerignore leave every Go package the two binaries
// need in the build context.

const modulePath = "github.com/segment-webhook-operator/segment-webhook-operator"

type stage struct {
	base, name string
	lines      []string // instructions, continuation lines joined
}

func parseDockerfile(t *testing.T) []stage {
	t.Helper()
	var stages []stage
	var current strings.Builder
	flush := func() {
		line := strings.TrimSpace(current.String())
		current.Reset()
		if line == "" {
			return
		}
		fields := strings.Fields(line)
		if strings.EqualFold(fields[0], "FROM") {
			s := stage{}
			args := slices.DeleteFunc(fields[1:], func(f string) bool { return strings.HasPrefix(f, "--") })
			s.base = args[0]
			if len(args) == 3 && strings.EqualFold(args[1], "AS") {
				s.name = args[2]
			}
			stages = append(stages, s)
			return
		}
		if len(stages) == 0 {
			return // ARG before the first FROM
		}
		stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, line)
	}
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, "Dockerfile")))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			current.WriteString(cont + " ")
			continue
		}
		current.WriteString(line)
		flush()
	}
	flush()
	return stages
}

func instruction(s stage, name string) []string {
	var out []string
	for _, l := range s.lines {
		if f := strings.Fields(l); strings.EqualFold(f[0], name) {
			out = append(out, strings.TrimSpace(l[len(f[0]):]))
		}
	}
	return out
}

func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t)
	byName := map[string]stage{}
	for _, s := range stages {
		byName[s.name] = s
	}
	// The Makefile's build commands, which the image build must repeat, version stamp included.
	makeBuild := regexp.MustCompile(`(?m)^\tCGO_ENABLED=0 go build -trimpath -ldflags "\$\(LDFLAGS\)" -o (bin/\w+) (\./cmd/\w+)$`).
		FindAllStringSubmatch(string(readFile(t, "Makefile")), -1)
	if len(makeBuild) != 2 {
		t.Fatalf("the Makefile build target should build two binaries with CGO_ENABLED=0 -trimpath -ldflags \"$(LDFLAGS)\", found %v", makeBuild)
	}

	for _, target := range []string{"manager", "receiver"} {
		s, ok := byName[target]
		if !ok {
			t.Errorf("Dockerfile has no %q target (make docker-build uses --target %s)", target, target)
			continue
		}
		if s.base != "gcr.io/distroless/static:nonroot" {
			t.Errorf("target %s is based on %s, want gcr.io/distroless/static:nonroot", target, s.base)
		}
		if users := instruction(s, "USER"); !slices.Equal(users, []string{"65532:65532"}) {
			t.Errorf("target %s USER %v, want 65532:65532", target, users)
		}
		if ep := instruction(s, "ENTRYPOINT"); !slices.Equal(ep, []string{`["/` + target + `"]`}) {
			t.Errorf("target %s ENTRYPOINT %v, want [\"/%s\"] (the manifests run it as /%s)", target, ep, target, target)
		}
		// The binary comes from a build stage that builds ./cmd/<target> like 'make build'.
		var copied bool
		for _, c := range instruction(s, "COPY") {
			m := regexp.MustCompile(`^--from=(\S+)\s+(\S+)\s+/` + target + `$`).FindStringSubmatch(c)
			if m == nil {
				continue
			}
			copied = true
			from, ok := byName[m[1]]
			if !ok {
				t.Errorf("target %s copies from unknown stage %s", target, m[1])
				continue
			}
			checkBuild(t, from, target, m[2], makeBuild)
		}
		if !copied {
			t.Errorf("target %s does not COPY --from=<build stage> .../%s /%s", target, target, target)
		}
	}
	if last := stages[len(stages)-1]; last.name != "manager" {
		t.Errorf("the last stage is %q; make it manager, so a plain 'docker build .' builds the operator", last.name)
	}
}

// checkBuild: the stage runs the Makefile's build command for the binary it gives to target.
func checkBuild(t *testing.T, s stage, target, binary string, makeBuild [][]string) {
	t.Helper()
	workdir := "/"
	if w := instruction(s, "WORKDIR"); len(w) > 0 {
		workdir = w[len(w)-1]
	}
	cgoOff := false
	for _, env := range instruction(s, "ENV") {
		if slices.Contains(strings.Fields(env), "CGO_ENABLED=0") {
			cgoOff = true
		}
	}
	var found bool
	for _, want := range makeBuild {
		out, pkg := want[1], want[2]
		if path.Join(workdir, out) != binary {
			continue
		}
		found = true
		if pkg != "./cmd/"+target {
			t.Errorf("Makefile builds %s from %s, want ./cmd/%s", out, pkg, target)
		}
		re := regexp.MustCompile(`go build -trimpath -ldflags "\$\{?LDFLAGS\}?" -o ` + regexp.QuoteMeta(out) + ` ` + regexp.QuoteMeta(pkg) + `(\s|$)`)
		var built bool
		for _, r := range instruction(s, "RUN") {
			if re.MatchString(r) {
				built = true
				if strings.Contains(r, "CGO_ENABLED=0") {
					cgoOff = true
				}
			}
		}
		if !built {
			t.Errorf("stage %s does not run 'go build -trimpath -ldflags \"$LDFLAGS\" -o %s %s' like 'make build'", s.name, out, pkg)
		}
	}
	if !found {
		t.Errorf("target %s copies %s, which 'make build' does not produce", target, binary)
	}
	if !cgoOff {
		t.Errorf("stage %s builds without CGO_ENABLED=0", s.name)
	}
}

// TestDockerBuildContext: every package (and embedded file) the two binaries are built from is
// copied into the build stage and not excluded by .dockerignore.
func TestDockerBuildContext(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Dir,Module,EmbedFiles", "./cmd/manager", "./cmd/receiver")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var files []string // relative to the repository root
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			ImportPath, Dir string
			Module          *struct{ Path string }
			EmbedFiles      []string
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Module == nil || p.Module.Path != modulePath {
			continue
		}
		rel, err := filepath.Rel(repoRoot, p.Dir)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, filepath.ToSlash(filepath.Join(rel, "x.go")))
		for _, f := range p.EmbedFiles {
			files = append(files, filepath.ToSlash(filepath.Join(rel, f)))
		}
	}
	if len(files) < 4 {
		t.Fatalf("go list found only %v", files)
	}
	files = append(files, "go.mod", "go.sum")

	var copies []string
	for _, s := range parseDockerfile(t) {
		for _, c := range instruction(s, "COPY") {
			f := strings.Fields(c)
			if strings.HasPrefix(f[0], "--from") {
				continue
			}
			for _, src := range f[:len(f)-1] {
				if !strings.HasPrefix(src, "--") {
					copies = append(copies, strings.TrimSuffix(src, "/"))
				}
			}
		}
	}
	ignore := dockerignore(t)
	for _, f := range files {
		copied := slices.ContainsFunc(copies, func(src string) bool {
			return src == "." || f == src || strings.HasPrefix(f, src+"/")
		})
		if !copied {
			t.Errorf("the Dockerfile does not COPY %s into the build stage (copies %v)", path.Dir(f), copies)
		}
		if pattern, ok := ignore(f); ok {
			t.Errorf(".dockerignore pattern %q excludes %s, which the build needs", pattern, f)
		}
	}
}

// dockerignore returns a matcher with .dockerignore's semantics for the patterns used here:
// path.Match per pattern against the path and each of its parents, "**/" prefixes, "!" excepts.
func dockerignore(t *testing.T) func(string) (string, bool) {
	t.Helper()
	var patterns []string
	for _, l := range strings.Split(string(readFile(t, ".dockerignore")), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, strings.TrimSuffix(strings.TrimPrefix(l, "/"), "/"))
		}
	}
	matches := func(pattern, name string) bool {
		parts := strings.Split(name, "/")
		for i := range parts {
			prefix := strings.Join(parts[:i+1], "/")
			if ok, _ := path.Match(pattern, prefix); ok {
				return true
			}
			if sub, ok := strings.CutPrefix(pattern, "**/"); ok {
				for j := 0; j <= i; j++ {
					if ok, _ := path.Match(sub, strings.Join(parts[j:i+1], "/")); ok {
						return true
					}
				}
			}
		}
		return false
	}
	return func(name string) (string, bool) {
		excludedBy := ""
		for _, p := range patterns {
			if neg, ok := strings.CutPrefix(p, "!"); ok {
				if matches(neg, name) {
					excludedBy = ""
				}
			} else if matches(p, name) {
				excludedBy = p
			}
		}
		return excludedBy, excludedBy != ""
	}
}
