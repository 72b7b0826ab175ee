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
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// The base layer is what the Dockerfile's gcr.io/distroless/static:nonroot gives the binaries
// (distroless builds it from base-files, netbase, tzdata and ca-certificates):
//
//	/etc/passwd, /etc/group   root (0), nobody (65534) and nonroot (65532, home /home/nonroot)
//	/etc/nsswitch.conf        "hosts: files dns"
//	/etc/ssl/certs/ca-certificates.crt
//	                          the NSS roots of golang.org/x/crypto/x509roots/fallback/bundle,
//	                          at the version go.mod pins (roots NSS constrains, which PEM cannot
//	                          express, are left out)
//	/usr/share/zoneinfo/      the Go toolchain's zoneinfo.zip ($GOROOT/lib/time), unpacked
//	/tmp                      mode 1777
//	/home/nonroot             mode 0700, owned 65532:65532
//	/root                     mode 0700
//
// Distroless also ships /etc/os-release, netbase's /etc/services and /etc/protocols, and dpkg
// status and copyright files; the binaries use none of them, so they are left out.
//
// Its entries carry BaseTime, not the commit time, so the layer's digest changes only when its
// content does and registries and nodes share it across versions and images.

// BaseTime is the modification time of every base layer entry.
var BaseTime = time.Unix(0, 0).UTC()

const (
	nonroot = 65532

	// Passwd and Group are distroless's /etc/passwd and /etc/group.
	Passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	Group = "root:x:0:\n" +
		"nobody:x:65534:\n" +
		"tty:x:5:\n" +
		"staff:x:50:\n" +
		"nonroot:x:65532:\n"
	NSSwitch = "hosts: files dns\n"

	// CertFile is where Go (and OpenSSL, with SSL_CERT_FILE) finds the CA bundle.
	CertFile = "/etc/ssl/certs/ca-certificates.crt"
	// ZoneinfoDir is where Go's time package finds the time zones.
	ZoneinfoDir = "/usr/share/zoneinfo"
)

// entry is one file or directory of a layer.
type entry struct {
	name     string // without a leading slash
	mode     int64
	uid, gid int
	data     []byte // nil for a directory
	open     func() (io.ReadCloser, error)
	size     int64
}

// CABundle is the PEM bundle of the pinned NSS roots without constraints.
func CABundle() []byte {
	var b bytes.Buffer
	for root := range bundle.Roots() {
		if root.Constraint != nil {
			continue // a distrust-after date, which a PEM file cannot carry
		}
		if err := pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: root.Certificate}); err != nil {
			panic(err) // writing to a bytes.Buffer does not fail
		}
	}
	return b.Bytes()
}

// ZoneinfoZip is the time zone database of the Go toolchain that builds the binaries.
func ZoneinfoZip() (string, error) {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOROOT: %w", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "lib", "time", "zoneinfo.zip"), nil
}

// BaseLayer builds the distroless-like base layer; zoneinfoZip is a zoneinfo.zip as Go ships it.
func BaseLayer(zoneinfoZip string) (v1.Layer, error) {
	file := func(name string, data string) entry {
		return entry{name: name, mode: 0o644, data: []byte(data)}
	}
	entries := []entry{
		file("etc/passwd", Passwd),
		file("etc/group", Group),
		file("etc/nsswitch.conf", NSSwitch),
		{name: strings.TrimPrefix(CertFile, "/"), mode: 0o644, data: CABundle()},
		{name: "tmp", mode: 0o1777},
		{name: "root", mode: 0o700},
		{name: "home/nonroot", mode: 0o700, uid: nonroot, gid: nonroot},
	}
	zr, err := zip.OpenReader(zoneinfoZip)
	if err != nil {
		return nil, fmt.Errorf("time zones: %w", err)
	}
	defer zr.Close()
	zoneDir := strings.TrimPrefix(ZoneinfoDir, "/")
	for _, f := range zr.File {
		if f.FileInfo().IsDir() {
			continue
		}
		name := path.Clean(f.Name)
		if !isLocal(name) {
			return nil, fmt.Errorf("time zones: unexpected entry %q in %s", f.Name, zoneinfoZip)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("time zones: %s: %w", f.Name, err)
		}
		entries = append(entries, entry{name: zoneDir + "/" + name, mode: 0o644, data: data})
	}
	if len(entries) < 100 {
		return nil, fmt.Errorf("time zones: %s has only %d zones", zoneinfoZip, len(entries))
	}
	return layer(entries, BaseTime)
}

// BinaryLayer holds one executable at the image root, as the Dockerfile's COPY puts it:
// /<name>, mode 0755, owned by root.
func BinaryLayer(name, binary string, mtime time.Time) (v1.Layer, error) {
	info, err := os.Stat(binary)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", binary)
	}
	return layer([]entry{{
		name: name, mode: 0o755, size: info.Size(),
		open: func() (io.ReadCloser, error) { return os.Open(binary) },
	}}, mtime)
}

func isLocal(name string) bool {
	return name != "." && !path.IsAbs(name) && name != ".." && !strings.HasPrefix(name, "../")
}

// layer writes a gzip-compressed tar with the entries and their parent directories, sorted by
// name, with the given time, numeric owners and no host data, so equal entries give equal
// digests. Parent directories are root-owned 0755.
func layer(entries []entry, mtime time.Time) (v1.Layer, error) {
	byName := map[string]entry{}
	for _, e := range entries {
		if _, dup := byName[e.name]; dup {
			return nil, fmt.Errorf("layer: %s twice", e.name)
		}
		byName[e.name] = e
		for dir := path.Dir(e.name); dir != "."; dir = path.Dir(dir) {
			if _, ok := byName[dir]; !ok {
				byName[dir] = entry{name: dir, mode: 0o755}
			}
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names)

	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf) // no name, no time: the header is constant
	tw := tar.NewWriter(zw)
	mtime = mtime.UTC().Truncate(time.Second)
	for _, n := range names {
		e := byName[n]
		hdr := &tar.Header{
			Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: mtime,
			Typeflag: tar.TypeReg, Format: tar.FormatPAX,
		}
		if e.data == nil && e.open == nil {
			hdr.Typeflag, hdr.Name = tar.TypeDir, e.name+"/"
		} else if e.open == nil {
			hdr.Size = int64(len(e.data))
		} else {
			hdr.Size = e.size
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		switch {
		case e.open != nil:
			rc, err := e.open()
			if err != nil {
				return nil, err
			}
			n, err := io.Copy(tw, rc)
			rc.Close()
			if err != nil {
				return nil, err
			}
			if n != e.size {
				return nil, fmt.Errorf("layer: %s changed while it was read", e.name)
			}
		case e.data != nil:
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	compressed := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(compressed)), nil
	}, tarball.WithMediaType(types.OCILayer))
}
