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
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segment-webhook-operator/segment-webhook-operator/hack/images/imagebuild"
)

// 'make images' builds the two images with Go (hack/images) instead of from the Dockerfile. The
// test assembles them from stand-in binaries and checks they are what the Dockerfile's targets
// describe: user, working directory, entrypoint, exposed ports, title and source labels, the
// binary at the root and, in place of gcr.io/distroless/static:nonroot, a base with the files
// and environment that image gives a program.

// distrolessStatic is what gcr.io/distroless/static:nonroot holds that a program may use:
// distroless builds it from base-files, netbase, tzdata and ca-certificates, with its own
// passwd, group, nsswitch.conf and /tmp. (It also has /etc/os-release, /etc/services,
// /etc/protocols and dpkg records, which the binaries do not read.)
var distrolessStatic = []string{
	"/etc/passwd",
	"/etc/group",
	"/etc/nsswitch.conf",
	"/etc/ssl/certs/ca-certificates.crt",
	"/usr/share/zoneinfo",
	"/usr/share/zoneinfo/UTC",
	"/tmp",
	"/home/nonroot",
}

// distrolessEnv is the environment distroless static sets and the Dockerfile inherits.
var distrolessEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
}

func TestDockerfileMatchesGoImages(t *testing.T) {
	byName := map[string]stage{}
	for _, s := range parseDockerfile(t) {
		byName[s.name] = s
	}
	zoneinfo, err := imagebuild.ZoneinfoZip()
	if err != nil {
		t.Fatal(err)
	}
	base, err := imagebuild.BaseLayer(zoneinfo)
	if err != nil {
		t.Fatal(err)
	}
	meta := imagebuild.Meta{Revision: "test", Version: "0.0.0", Created: time.Unix(0, 0)}
	specs := map[string]imagebuild.Spec{"manager": imagebuild.Manager, "receiver": imagebuild.Receiver}
	for _, target := range slices.Sorted(maps.Keys(specs)) {
		spec := specs[target]
		s, ok := byName[target]
		if !ok {
			t.Errorf("Dockerfile has no %s target", target)
			continue
		}
		binaries := map[string]string{}
		for _, p := range imagebuild.Platforms {
			f := filepath.Join(t.TempDir(), target)
			if err := os.WriteFile(f, []byte("stand-in "+target+" "+p.Architecture), 0o755); err != nil {
				t.Fatal(err)
			}
			binaries[p.Architecture] = f
		}
		idx, err := spec.Index(binaries, base, meta)
		if err != nil {
			t.Fatal(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		if len(im.Manifests) != len(imagebuild.Platforms) {
			t.Fatalf("%s: %d images in the index", target, len(im.Manifests))
		}
		for _, d := range im.Manifests {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			c := cf.Config
			where := target + " " + d.Platform.String()

			if want := last(instruction(s, "USER")); c.User != want {
				t.Errorf("%s: user %q, Dockerfile USER %q", where, c.User, want)
			}
			if want := last(instruction(s, "WORKDIR")); c.WorkingDir != want {
				t.Errorf("%s: working dir %q, Dockerfile WORKDIR %q", where, c.WorkingDir, want)
			}
			var entrypoint []string
			if err := json.Unmarshal([]byte(last(instruction(s, "ENTRYPOINT"))), &entrypoint); err != nil {
				t.Fatalf("%s: Dockerfile ENTRYPOINT: %v", where, err)
			}
			if !slices.Equal(c.Entrypoint, entrypoint) || c.Cmd != nil {
				t.Errorf("%s: entrypoint %q cmd %q, Dockerfile ENTRYPOINT %q", where, c.Entrypoint, c.Cmd, entrypoint)
			}
			var exposed []string
			for _, e := range instruction(s, "EXPOSE") {
				for _, port := range strings.Fields(e) {
					if !strings.Contains(port, "/") {
						port += "/tcp"
					}
					exposed = append(exposed, port)
				}
			}
			if got := slices.Sorted(maps.Keys(c.ExposedPorts)); !slices.Equal(got, slices.Sorted(slices.Values(exposed))) {
				t.Errorf("%s: exposed ports %v, Dockerfile EXPOSE %v", where, got, exposed)
			}
			labels := dockerfileLabels(s)
			for _, key := range []string{imagebuild.LabelTitle, imagebuild.LabelSource} {
				if labels[key] == "" || c.Labels[key] != labels[key] {
					t.Errorf("%s: label %s %q, Dockerfile %q", where, key, c.Labels[key], labels[key])
				}
			}
			if !slices.Equal(c.Env, distrolessEnv) {
				t.Errorf("%s: env %v, distroless static sets %v", where, c.Env, distrolessEnv)
			}

			files, err := imagebuild.Files(img)
			if err != nil {
				t.Fatal(err)
			}
			if h, ok := files[entrypoint[0]]; !ok || h.Mode&0o111 == 0 {
				t.Errorf("%s: no executable %s (the ENTRYPOINT)", where, entrypoint[0])
			}
			for _, f := range distrolessStatic {
				if _, ok := files[f]; !ok {
					t.Errorf("%s: no %s, which distroless static has", where, f)
				}
			}
			if h := files["/home/nonroot"]; h != nil && (h.Uid != 65532 || h.Gid != 65532) {
				t.Errorf("%s: /home/nonroot owned %d:%d, want the USER's 65532:65532", where, h.Uid, h.Gid)
			}
			if h := files["/tmp"]; h != nil && h.Mode != 0o1777 {
				t.Errorf("%s: /tmp mode %o, want 1777", where, h.Mode)
			}
		}
	}
}

func last(values []string) string {
	if len(values) == 0 {
		return ""
	}
	return values[len(values)-1]
}

// dockerfileLabels reads a stage's LABEL key="value" pairs.
func dockerfileLabels(s stage) map[string]string {
	labels := map[string]string{}
	for _, l := range instruction(s, "LABEL") {
		for _, m := range regexp.MustCompile(`([\w.-]+)="([^"]*)"`).FindAllStringSubmatch(l, -1) {
			labels[m[1]] = m[2]
		}
	}
	return labels
}
