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
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// The annotations that name the image in index.json: the OCI one (podman, skopeo, Docker) and
// containerd's, which 'ctr images import' (and so 'kind load image-archive') takes as the image
// name as it is; it applies ref.name alone only with a matching --base-name.
const (
	AnnotationRefName        = "org.opencontainers.image.ref.name"
	AnnotationContainerdName = "io.containerd.image.name"
)

// ArchiveTime is the modification time of the archive's entries (the blobs are addressed by
// content; their file times mean nothing).
var ArchiveTime = time.Unix(0, 0).UTC()

// WriteArchive writes idx as an OCI image layout in a tar file at file, named ref: the
// annotations above on its index.json entry. Entries are sorted, with fixed times and modes.
func WriteArchive(file string, idx v1.ImageIndex, ref string) (err error) {
	dir, err := os.MkdirTemp("", "oci-layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		AnnotationRefName:        ref,
		AnnotationContainerdName: ref,
	})); err != nil {
		return err
	}

	var names []string
	if err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if d.IsDir() {
			rel += "/"
		}
		names = append(names, filepath.ToSlash(rel))
		return err
	}); err != nil {
		return err
	}
	slices.Sort(names)

	tmp := file + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	tw := tar.NewWriter(f)
	for _, name := range names {
		hdr := &tar.Header{Name: name, Mode: 0o644, ModTime: ArchiveTime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if name[len(name)-1] == '/' {
			hdr.Mode, hdr.Typeflag = 0o755, tar.TypeDir
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			continue
		}
		src, err := os.Open(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			return err
		}
		info, err := src.Stat()
		if err == nil {
			hdr.Size = info.Size()
			err = tw.WriteHeader(hdr)
		}
		if err == nil {
			_, err = io.Copy(tw, src)
		}
		src.Close()
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// Archive is an OCI layout archive unpacked into a temporary directory.
type Archive struct {
	Index v1.ImageIndex // the image index the archive names
	Ref   string        // its org.opencontainers.image.ref.name
	dir   string
}

// Close removes the unpacked layout.
func (a *Archive) Close() error { return os.RemoveAll(a.dir) }

// ReadArchive unpacks an archive WriteArchive wrote (or any OCI layout tar with one index).
func ReadArchive(file string) (*Archive, error) {
	dir, err := os.MkdirTemp("", "oci-layout-")
	if err != nil {
		return nil, err
	}
	a := &Archive{dir: dir}
	if err := a.read(file); err != nil {
		a.Close()
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return a, nil
}

func (a *Archive) read(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return err
		}
		name := path.Clean(hdr.Name)
		if !isLocal(name) {
			return fmt.Errorf("entry %q leaves the archive", hdr.Name)
		}
		dst := filepath.Join(a.dir, filepath.FromSlash(name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			out, err := os.Create(dst)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("entry %q: type %q is not a file or directory", hdr.Name, hdr.Typeflag)
		}
	}
	outer, err := layout.ImageIndexFromPath(a.dir)
	if err != nil {
		return err
	}
	m, err := outer.IndexManifest()
	if err != nil {
		return err
	}
	if len(m.Manifests) != 1 || !m.Manifests[0].MediaType.IsIndex() {
		return fmt.Errorf("index.json should list one image index, lists %d entries", len(m.Manifests))
	}
	a.Ref = m.Manifests[0].Annotations[AnnotationRefName]
	a.Index, err = outer.ImageIndex(m.Manifests[0].Digest)
	return err
}
