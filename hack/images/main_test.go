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

package main

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/segment-webhook-operator/segment-webhook-operator/hack/images/imagebuild"
)

func TestMetadata(t *testing.T) {
	m, err := metadata("0.1.0", "abc", "1767225600")
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != "0.1.0" || m.Revision != "abc" || !m.Created.Equal(time.Unix(1767225600, 0)) {
		t.Errorf("metadata: %+v", m)
	}
	if _, err := metadata("", "abc", "yesterday"); err == nil {
		t.Error("a non-numeric epoch was accepted")
	}
	// Without -revision and -epoch they come from git: this repository's HEAD.
	m, err = metadata("", "", "")
	if err != nil {
		t.Fatal(err)
	}
	head, err := git("rev-parse", "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSuffix(m.Revision, "-dirty") != head || m.Created.IsZero() {
		t.Errorf("metadata from git: %+v, HEAD %s", m, head)
	}
}

// The image binaries' --version says the image's version and revision, stamped as make build does.
func TestLdflags(t *testing.T) {
	got := ldflags(imagebuild.Meta{Version: "0.1.0", Revision: "abc-dirty"})
	want := "-X github.com/segment-webhook-operator/segment-webhook-operator/internal/version.Version=0.1.0 " +
		"-X github.com/segment-webhook-operator/segment-webhook-operator/internal/version.Commit=abc-dirty"
	if got != want {
		t.Errorf("ldflags: %q, want %q", got, want)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"load"},
		{"build", "-manager", "a/b:v1", "-receiver", "a/c:v1"}, // no -pause: fails before building
		{"push", "-registry", "localhost:5000"},                // no archives
	} {
		if err := run(args); err == nil {
			t.Errorf("images %v succeeded", args)
		}
	}
}

// TestPushCommand: 'images push' reads archives and pushes each index under the registry path.
func TestPushCommand(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	dir := t.TempDir()
	bins := map[string]string{}
	for _, p := range imagebuild.Platforms {
		bins[p.Architecture] = filepath.Join(dir, "pause-"+p.Architecture)
		if err := os.WriteFile(bins[p.Architecture], []byte("pause "+p.Architecture), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	idx, err := imagebuild.Pause.Index(bins, nil, imagebuild.Meta{Created: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "pause.tar")
	if err := imagebuild.WriteArchive(file, idx, "localhost/segment-webhook-operator/pause:v1"); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"push", "-registry", host + "/ci", file}); err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host + "/ci/pause:v1")
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := idx.Digest()
	if got, _ := pulled.Digest(); got != want {
		t.Errorf("registry has %s, pushed %s", got, want)
	}
}
