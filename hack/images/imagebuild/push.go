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
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// PushRef is where an image named ref goes in registry ("host[:port]/path"): the last element
// of ref's repository and its tag under registry, so
// ghcr.io/segment-webhook-operator/segment-webhook-operator-receiver:v0.1.0 pushed to
// localhost:5000/team becomes localhost:5000/team/segment-webhook-operator-receiver:v0.1.0.
func PushRef(registry, ref string) (name.Tag, error) {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image name %q: %w", ref, err)
	}
	registry = strings.TrimSuffix(registry, "/")
	if registry == "" {
		return name.Tag{}, errors.New("no registry given (REGISTRY=host[:port]/path)")
	}
	dst := registry + "/" + path.Base(tag.RepositoryStr()) + ":" + tag.TagStr()
	return name.NewTag(dst, name.StrictValidation)
}

// Push writes the index and its images to dst with the credentials of the Docker config (or
// anonymously). Loopback and private-network registries are spoken to over plain HTTP, as
// go-containerregistry does for them.
func Push(ctx context.Context, dst name.Reference, idx v1.ImageIndex, opts ...remote.Option) error {
	opts = append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, opts...)
	return remote.WriteIndex(dst, idx, opts...)
}

// Files lists an image's file system: every path (with a leading slash, no trailing one) and
// the tar header of its last layer entry. The layers made here have no whiteouts.
func Files(img v1.Image) (map[string]*tar.Header, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	files := map[string]*tar.Header{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, err
		}
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				rc.Close()
				return nil, err
			}
			files[path.Clean("/"+hdr.Name)] = hdr
		}
		rc.Close()
	}
	return files, nil
}
