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

// Package imagebuild assembles the project's container images without a Docker engine: a
// distroless-static-like base layer made here, one layer with the binary, the image config the
// Dockerfile describes, one OCI image index for linux/amd64 and linux/arm64, written as an OCI
// image layout tar. Every byte follows from the inputs (binaries, metadata, pinned modules and
// the Go toolchain), so the same commit gives the same digests. hack/images is its command.
package imagebuild

import (
	"fmt"
	"maps"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Source is the org.opencontainers.image.source label, as in the Dockerfile.
const Source = "https://github.com/segment-webhook-operator/segment-webhook-operator"

// OCI label keys set on every image.
const (
	LabelTitle    = "org.opencontainers.image.title"
	LabelSource   = "org.opencontainers.image.source"
	LabelRevision = "org.opencontainers.image.revision"
	LabelVersion  = "org.opencontainers.image.version"
)

// Distroless static's environment (Go reads SSL_CERT_FILE too; it names the standard path).
var (
	EnvPath    = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	EnvSSLCert = "SSL_CERT_FILE=" + CertFile
)

// Spec describes one image: what the Dockerfile target says, or the pause image.
type Spec struct {
	Binary string   // the file at the image root and the entrypoint, "/" + Binary
	Title  string   // org.opencontainers.image.title
	Ports  []string // exposed ports, "8080/tcp"
	User   string
	Base   bool // on the distroless-like base layer (else the binary alone, like pause)
}

// The Dockerfile's two targets, and the test cluster's pause image (user 65535 as Kubernetes'
// pause, no base layer).
var (
	Manager = Spec{Binary: "manager", Title: "segment-webhook-operator",
		Ports: []string{"8080/tcp", "8081/tcp"}, User: "65532:65532", Base: true}
	Receiver = Spec{Binary: "receiver", Title: "segment-webhook-receiver",
		Ports: []string{"8080/tcp", "9090/tcp"}, User: "65532:65532", Base: true}
	Pause = Spec{Binary: "pause", Title: "segment-webhook-operator-pause", User: "65535:65535"}
)

// Platforms are the platforms of every image index, in index order.
var Platforms = []v1.Platform{
	{OS: "linux", Architecture: "amd64"},
	{OS: "linux", Architecture: "arm64", Variant: "v8"},
}

// Meta is what varies between builds: the commit and the version.
type Meta struct {
	Revision string    // the git commit, org.opencontainers.image.revision
	Version  string    // org.opencontainers.image.version
	Created  time.Time // the image creation time and the binary's mtime (SOURCE_DATE_EPOCH)
}

// Config is the image config the spec gives on a platform.
func (s Spec) Config(p v1.Platform, m Meta) *v1.ConfigFile {
	env := []string{EnvPath}
	if s.Base {
		env = append(env, EnvSSLCert)
	}
	ports := map[string]struct{}{}
	for _, port := range s.Ports {
		ports[port] = struct{}{}
	}
	labels := map[string]string{LabelTitle: s.Title, LabelSource: Source}
	if m.Revision != "" {
		labels[LabelRevision] = m.Revision
	}
	if m.Version != "" {
		labels[LabelVersion] = m.Version
	}
	return &v1.ConfigFile{
		Architecture: p.Architecture,
		OS:           p.OS,
		Variant:      p.Variant,
		Created:      v1.Time{Time: m.Created.UTC()},
		Config: v1.Config{
			User:         s.User,
			WorkingDir:   "/",
			Entrypoint:   []string{"/" + s.Binary},
			Env:          env,
			ExposedPorts: ports,
			Labels:       labels,
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
}

// Image assembles the spec's image for one platform from its binary; base is BaseLayer's layer
// (nil when the spec has no base).
func (s Spec) Image(p v1.Platform, binary string, base v1.Layer, m Meta) (v1.Image, error) {
	app, err := BinaryLayer(s.Binary, binary, m.Created)
	if err != nil {
		return nil, err
	}
	return s.image(p, app, base, m)
}

func (s Spec) image(p v1.Platform, app, base v1.Layer, m Meta) (v1.Image, error) {
	if s.Base != (base != nil) {
		return nil, fmt.Errorf("image %s: base layer given: %v, spec wants one: %v", s.Binary, base != nil, s.Base)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, s.Config(p, m))
	if err != nil {
		return nil, err
	}
	var adds []mutate.Addendum
	if base != nil {
		adds = append(adds, mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{
			Created:   v1.Time{Time: BaseTime},
			CreatedBy: "hack/images: distroless static:nonroot equivalent",
		}})
	}
	adds = append(adds, mutate.Addendum{Layer: app, MediaType: types.OCILayer, History: v1.History{
		Created:   v1.Time{Time: m.Created.UTC()},
		CreatedBy: "COPY " + s.Binary + " /" + s.Binary,
	}})
	return mutate.Append(img, adds...)
}

// Index assembles the multi-platform image: binaries maps architectures of Platforms to the
// binary built for each (all of them for a release; one where only this machine runs it).
func (s Spec) Index(binaries map[string]string, base v1.Layer, m Meta) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	used := 0
	for _, p := range Platforms {
		binary, ok := binaries[p.Architecture]
		if !ok {
			continue
		}
		used++
		img, err := s.Image(p, binary, base, m)
		if err != nil {
			return nil, fmt.Errorf("image %s for %s: %w", s.Binary, p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &p},
		})
	}
	if used == 0 || used != len(binaries) {
		return nil, fmt.Errorf("image %s: binaries for %v, want some of %v", s.Binary, slices.Sorted(maps.Keys(binaries)), Platforms)
	}
	return idx, nil
}
