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

package imagebuild

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

var testMeta = Meta{
	Revision: "0123456789abcdef0123456789abcdef01234567",
	Version:  "0.1.0",
	Created:  time.Unix(1767225600, 0), // 2026-01-01
}

var (
	baseOnce  sync.Once
	baseLayer v1.Layer
	baseErr   error
)

func testBase(t *testing.T) v1.Layer {
	t.Helper()
	baseOnce.Do(func() {
		zip, err := ZoneinfoZip()
		if err != nil {
			baseErr = err
			return
		}
		baseLayer, baseErr = BaseLayer(zip)
	})
	if baseErr != nil {
		t.Fatal(baseErr)
	}
	return baseLayer
}

// fakeBinaries writes one fake binary per platform into dir, with the given file mode.
func fakeBinaries(t *testing.T, dir string, s Spec, mode os.FileMode) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range Platforms {
		f := filepath.Join(dir, s.Binary+"-"+p.Architecture)
		if err := os.WriteFile(f, []byte("\x7fELF fake "+s.Binary+" for "+p.Architecture), mode); err != nil {
			t.Fatal(err)
		}
		out[p.Architecture] = f
	}
	return out
}

func buildIndex(t *testing.T, s Spec, binaries map[string]string, m Meta) v1.ImageIndex {
	t.Helper()
	var base v1.Layer
	if s.Base {
		zip, err := ZoneinfoZip()
		if err != nil {
			t.Fatal(err)
		}
		if base, err = BaseLayer(zip); err != nil { // a fresh one: it must come out the same
			t.Fatal(err)
		}
	}
	idx, err := s.Index(binaries, base, m)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func digest(t *testing.T, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func fileSHA(t *testing.T, file string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestReproducible: two builds from equal binaries (at other paths, with other host modes and
// times) give the same index digest and byte-identical archives; other inputs do not.
func TestReproducible(t *testing.T) {
	for _, s := range []Spec{Manager, Receiver, Pause} {
		t.Run(s.Binary, func(t *testing.T) {
			dirA, dirB := t.TempDir(), t.TempDir()
			binA := fakeBinaries(t, dirA, s, 0o755)
			binB := fakeBinaries(t, dirB, s, 0o700)
			for _, f := range binB {
				if err := os.Chtimes(f, time.Unix(5, 0), time.Unix(5, 0)); err != nil {
					t.Fatal(err)
				}
			}
			a, b := buildIndex(t, s, binA, testMeta), buildIndex(t, s, binB, testMeta)
			if da, db := digest(t, a), digest(t, b); da != db {
				t.Fatalf("two builds gave index digests %s and %s", da, db)
			}
			ref := "example.com/x/" + s.Binary + ":v1"
			arA, arB := filepath.Join(dirA, "a.tar"), filepath.Join(dirB, "b.tar")
			if err := WriteArchive(arA, a, ref); err != nil {
				t.Fatal(err)
			}
			if err := WriteArchive(arB, b, ref); err != nil {
				t.Fatal(err)
			}
			if fileSHA(t, arA) != fileSHA(t, arB) {
				t.Error("two archives of the same build differ")
			}

			later := testMeta
			later.Created = later.Created.Add(time.Second)
			other := testMeta
			other.Revision = strings.Repeat("f", 40)
			for what, m := range map[string]Meta{"time": later, "revision": other} {
				if digest(t, buildIndex(t, s, binA, m)) == digest(t, a) {
					t.Errorf("another %s gave the same index digest", what)
				}
			}
		})
	}
}

func images(t *testing.T, idx v1.ImageIndex) ([]v1.Descriptor, []v1.Image) {
	t.Helper()
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %s, want %s", m.MediaType, types.OCIImageIndex)
	}
	var imgs []v1.Image
	for _, d := range m.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	return m.Manifests, imgs
}

// TestImageConfig: the index has one OCI image per platform with the spec's config.
func TestImageConfig(t *testing.T) {
	for _, s := range []Spec{Manager, Receiver, Pause} {
		t.Run(s.Binary, func(t *testing.T) {
			idx := buildIndex(t, s, fakeBinaries(t, t.TempDir(), s, 0o755), testMeta)
			descs, imgs := images(t, idx)
			if len(descs) != 2 {
				t.Fatalf("index lists %d images, want 2", len(descs))
			}
			for i, d := range descs {
				want := Platforms[i]
				if d.Platform == nil || !d.Platform.Equals(want) {
					t.Errorf("image %d platform %v, want %v", i, d.Platform, want)
				}
				if d.MediaType != types.OCIManifestSchema1 {
					t.Errorf("image %d media type %s", i, d.MediaType)
				}
				m, err := imgs[i].Manifest()
				if err != nil {
					t.Fatal(err)
				}
				if m.Config.MediaType != types.OCIConfigJSON {
					t.Errorf("config media type %s", m.Config.MediaType)
				}
				wantLayers := 1
				if s.Base {
					wantLayers = 2
				}
				if len(m.Layers) != wantLayers {
					t.Errorf("%d layers, want %d", len(m.Layers), wantLayers)
				}
				for _, l := range m.Layers {
					if l.MediaType != types.OCILayer {
						t.Errorf("layer media type %s", l.MediaType)
					}
				}
				cf, err := imgs[i].ConfigFile()
				if err != nil {
					t.Fatal(err)
				}
				c := cf.Config
				if cf.OS != "linux" || cf.Architecture != want.Architecture || cf.Variant != want.Variant {
					t.Errorf("config platform %s/%s/%s, want %v", cf.OS, cf.Architecture, cf.Variant, want)
				}
				if !cf.Created.Equal(testMeta.Created) {
					t.Errorf("created %v, want %v", cf.Created, testMeta.Created)
				}
				if c.User != s.User || c.WorkingDir != "/" || !slices.Equal(c.Entrypoint, []string{"/" + s.Binary}) || c.Cmd != nil {
					t.Errorf("user %q workdir %q entrypoint %q cmd %q", c.User, c.WorkingDir, c.Entrypoint, c.Cmd)
				}
				var ports []string
				for p := range c.ExposedPorts {
					ports = append(ports, p)
				}
				slices.Sort(ports)
				if !slices.Equal(ports, s.Ports) {
					t.Errorf("exposed ports %v, want %v", ports, s.Ports)
				}
				wantLabels := map[string]string{LabelTitle: s.Title, LabelSource: Source,
					LabelRevision: testMeta.Revision, LabelVersion: testMeta.Version}
				if !mapsEqual(c.Labels, wantLabels) {
					t.Errorf("labels %v, want %v", c.Labels, wantLabels)
				}
				wantEnv := []string{EnvPath}
				if s.Base {
					wantEnv = append(wantEnv, EnvSSLCert)
				}
				if !slices.Equal(c.Env, wantEnv) {
					t.Errorf("env %v, want %v", c.Env, wantEnv)
				}
				if len(cf.History) != wantLayers || len(cf.RootFS.DiffIDs) != wantLayers {
					t.Errorf("%d history entries and %d diff IDs for %d layers", len(cf.History), len(cf.RootFS.DiffIDs), wantLayers)
				}
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestFiles: the base layer has what distroless static:nonroot has, with its owners and modes,
// usable by Go; the binary is /<name>; every entry has a fixed time and numeric owner.
func TestFiles(t *testing.T) {
	bins := fakeBinaries(t, t.TempDir(), Receiver, 0o700)
	idx := buildIndex(t, Receiver, bins, testMeta)
	_, imgs := images(t, idx)
	files, err := Files(imgs[1]) // arm64
	if err != nil {
		t.Fatal(err)
	}
	content := func(file string) []byte {
		t.Helper()
		layers, _ := imgs[1].Layers()
		for _, l := range layers {
			rc, err := l.Uncompressed()
			if err != nil {
				t.Fatal(err)
			}
			tr := tar.NewReader(rc)
			for {
				hdr, err := tr.Next()
				if errors.Is(err, io.EOF) {
					break
				} else if err != nil {
					t.Fatal(err)
				}
				if "/"+strings.TrimSuffix(hdr.Name, "/") == file {
					b, err := io.ReadAll(tr)
					rc.Close()
					if err != nil {
						t.Fatal(err)
					}
					return b
				}
			}
			rc.Close()
		}
		t.Fatalf("%s not in the image", file)
		return nil
	}

	type want struct {
		typ      byte
		mode     int64
		uid, gid int
	}
	for file, w := range map[string]want{
		"/receiver":                            {tar.TypeReg, 0o755, 0, 0},
		"/etc/passwd":                          {tar.TypeReg, 0o644, 0, 0},
		"/etc/group":                           {tar.TypeReg, 0o644, 0, 0},
		"/etc/nsswitch.conf":                   {tar.TypeReg, 0o644, 0, 0},
		CertFile:                               {tar.TypeReg, 0o644, 0, 0},
		"/etc/ssl/certs":                       {tar.TypeDir, 0o755, 0, 0},
		ZoneinfoDir:                            {tar.TypeDir, 0o755, 0, 0},
		ZoneinfoDir + "/UTC":                   {tar.TypeReg, 0o644, 0, 0},
		"/tmp":                                 {tar.TypeDir, 0o1777, 0, 0},
		"/root":                                {tar.TypeDir, 0o700, 0, 0},
		"/home":                                {tar.TypeDir, 0o755, 0, 0},
		"/home/nonroot":                        {tar.TypeDir, 0o700, 65532, 65532},
		"/usr/share/zoneinfo/America/New_York": {tar.TypeReg, 0o644, 0, 0},
	} {
		h, ok := files[file]
		if !ok {
			t.Errorf("%s missing", file)
			continue
		}
		if h.Typeflag != w.typ || h.Mode != w.mode || h.Uid != w.uid || h.Gid != w.gid {
			t.Errorf("%s: type %c mode %o owner %d:%d, want type %c mode %o owner %d:%d",
				file, h.Typeflag, h.Mode, h.Uid, h.Gid, w.typ, w.mode, w.uid, w.gid)
		}
	}
	for file, h := range files {
		wantTime := BaseTime
		if file == "/receiver" {
			wantTime = testMeta.Created
		}
		if !h.ModTime.Equal(wantTime) || h.Uname != "" || h.Gname != "" || len(h.PAXRecords) != 0 {
			t.Errorf("%s: time %v uname %q gname %q pax %v, want time %v and nothing else", file, h.ModTime, h.Uname, h.Gname, h.PAXRecords, wantTime)
		}
	}
	if got := string(content("/receiver")); got != "\x7fELF fake receiver for arm64" {
		t.Errorf("/receiver holds %q, want the arm64 binary", got)
	}
	if got := string(content("/etc/passwd")); !strings.Contains(got, "nonroot:x:65532:65532:nonroot:/home/nonroot:") || !strings.HasPrefix(got, "root:x:0:0:") {
		t.Errorf("/etc/passwd:\n%s", got)
	}
	if got := string(content("/etc/group")); !strings.Contains(got, "\nnonroot:x:65532:\n") || !strings.HasPrefix(got, "root:x:0:") {
		t.Errorf("/etc/group:\n%s", got)
	}
	if got := string(content("/etc/nsswitch.conf")); got != "hosts: files dns\n" {
		t.Errorf("/etc/nsswitch.conf: %q", got)
	}

	// The CA bundle parses as Go would load it, and holds well-known roots.
	pool := x509.NewCertPool()
	rest, n := content(CertFile), 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if !c.IsCA {
			t.Errorf("%s is not a CA", c.Subject)
		}
		pool.AddCert(c)
		n++
	}
	if n < 100 || len(bytes.TrimSpace(rest)) != 0 {
		t.Errorf("%d certificates, then %d bytes that are not PEM", n, len(rest))
	}
	if !strings.Contains(string(content(CertFile)), "-----BEGIN CERTIFICATE-----") {
		t.Error("no PEM certificate")
	}

	// Time zones load with Go's own parser.
	for _, zone := range []string{"Europe/Berlin", "America/New_York", "Asia/Kolkata"} {
		loc, err := time.LoadLocationFromTZData(zone, content(ZoneinfoDir+"/"+zone))
		if err != nil {
			t.Errorf("%s: %v", zone, err)
			continue
		}
		if _, off := time.Date(2026, 7, 1, 0, 0, 0, 0, loc).Zone(); zone == "Europe/Berlin" && off != 2*3600 {
			t.Errorf("Europe/Berlin offset in July %d, want 7200", off)
		}
	}
}

// TestBaseLayerShared: both images and both platforms use one base layer, so it is stored and
// pulled once.
func TestBaseLayerShared(t *testing.T) {
	base := testBase(t)
	want := digest(t, base)
	dir := t.TempDir()
	for _, s := range []Spec{Manager, Receiver} {
		idx, err := s.Index(fakeBinaries(t, dir, s, 0o755), base, testMeta)
		if err != nil {
			t.Fatal(err)
		}
		_, imgs := images(t, idx)
		for _, img := range imgs {
			layers, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			if got := digest(t, layers[0]); got != want {
				t.Errorf("%s: first layer %s, want the base layer %s", s.Binary, got, want)
			}
		}
	}
	if _, err := Pause.Index(fakeBinaries(t, dir, Pause, 0o755), base, testMeta); err == nil {
		t.Error("pause accepted a base layer")
	}
	if _, err := Manager.Index(map[string]string{"amd64": "x"}, base, testMeta); err == nil {
		t.Error("an index with one platform's binary was built")
	}
}

// TestArchive: the layout tar is sorted and timeless, names the image for containerd and OCI
// tools, and reads back to the same index.
func TestArchive(t *testing.T) {
	dir := t.TempDir()
	idx, err := Receiver.Index(fakeBinaries(t, dir, Receiver, 0o755), testBase(t), testMeta)
	if err != nil {
		t.Fatal(err)
	}
	ref := "ghcr.io/segment-webhook-operator/segment-webhook-operator-receiver:v0.1.0"
	file := filepath.Join(dir, "receiver.tar")
	if err := WriteArchive(file, idx, ref); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var names []string
	var indexJSON []byte
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		if !hdr.ModTime.Equal(ArchiveTime) || hdr.Uid != 0 || hdr.Gid != 0 {
			t.Errorf("%s: time %v owner %d:%d", hdr.Name, hdr.ModTime, hdr.Uid, hdr.Gid)
		}
		if hdr.Name == "index.json" {
			indexJSON, _ = io.ReadAll(tr)
		}
	}
	if !slices.IsSorted(names) || !slices.Contains(names, "oci-layout") || !slices.Contains(names, "blobs/sha256/") {
		t.Errorf("archive entries %v: want sorted, with oci-layout and blobs/sha256/", names)
	}
	// 2 images x (manifest, config, base layer shared, binary layer) + the index.
	if blobs := len(names) - 4; blobs != 2*3+1+1 {
		t.Errorf("%d blobs in %v", blobs, names)
	}
	var top v1.IndexManifest
	if err := json.Unmarshal(indexJSON, &top); err != nil {
		t.Fatal(err)
	}
	if len(top.Manifests) != 1 {
		t.Fatalf("index.json: %s", indexJSON)
	}
	d := top.Manifests[0]
	if d.Digest != digest(t, idx) || d.MediaType != types.OCIImageIndex ||
		d.Annotations[AnnotationRefName] != ref || d.Annotations[AnnotationContainerdName] != ref {
		t.Errorf("index.json entry %+v, want the index %s named %s", d, digest(t, idx), ref)
	}

	a, err := ReadArchive(file)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.Ref != ref || digest(t, a.Index) != digest(t, idx) {
		t.Errorf("read back %s %s", a.Ref, digest(t, a.Index))
	}
}

func TestPushRef(t *testing.T) {
	for _, c := range []struct{ registry, ref, want string }{
		{"localhost:5000/team", "ghcr.io/segment-webhook-operator/segment-webhook-operator:v0.1.0",
			"localhost:5000/team/segment-webhook-operator:v0.1.0"},
		{"registry.example.com/a/b/", "ghcr.io/segment-webhook-operator/segment-webhook-operator-receiver:v0.2.0",
			"registry.example.com/a/b/segment-webhook-operator-receiver:v0.2.0"},
		{"127.0.0.1:5000", "x.io/p/pause:v1", "127.0.0.1:5000/pause:v1"},
	} {
		got, err := PushRef(c.registry, c.ref)
		if err != nil || got.String() != c.want {
			t.Errorf("PushRef(%q, %q) = %v, %v; want %s", c.registry, c.ref, got, err, c.want)
		}
	}
	for _, bad := range [][2]string{{"", "x.io/a:v1"}, {"localhost:5000", "x.io/a"}, {"UPPER/x", "x.io/a:v1"}} {
		if got, err := PushRef(bad[0], bad[1]); err == nil {
			t.Errorf("PushRef(%q, %q) = %v, want an error", bad[0], bad[1], got)
		}
	}
}

// TestPush pushes an archive's index to an in-process registry on loopback and pulls it back:
// the same index digest, both platforms, the same layers.
func TestPush(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	dir := t.TempDir()
	idx, err := Manager.Index(fakeBinaries(t, dir, Manager, 0o755), testBase(t), testMeta)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "manager.tar")
	if err := WriteArchive(file, idx, "ghcr.io/segment-webhook-operator/segment-webhook-operator:v0.1.0"); err != nil {
		t.Fatal(err)
	}
	a, err := ReadArchive(file)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	dst, err := PushRef(host+"/team", a.Ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := Push(context.Background(), dst, a.Index); err != nil {
		t.Fatal(err)
	}

	ref, err := name.ParseReference(host + "/team/segment-webhook-operator:v0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := digest(t, pulled), digest(t, idx); got != want {
		t.Fatalf("pulled index %s, pushed %s", got, want)
	}
	for _, p := range Platforms {
		img, err := remote.Image(ref, remote.WithPlatform(p))
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Architecture != p.Architecture {
			t.Errorf("pulled %s image has architecture %s", p.Architecture, cf.Architecture)
		}
		files, err := Files(img)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := files["/manager"]; !ok {
			t.Errorf("pulled %s image has no /manager", p.Architecture)
		}
	}
}
