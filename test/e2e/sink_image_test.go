//go:build e2e

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

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/segment-webhook-operator/segment-webhook-operator/hack/images/imagebuild"
)

// sinkImage is the test's downstream target, built as make images builds the product's images.
const sinkImage = "localhost/segment-webhook-operator/e2e-sink:v1"

var sinkSpec = imagebuild.Spec{Binary: "sink", Title: "segment-webhook-operator-e2e-sink",
	Ports: []string{"8080/tcp"}, User: "65532:65532", Base: true}

func buildSinkImage(archive string) error {
	work, err := os.MkdirTemp("", "e2e-sink-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	// For this machine's architecture only: the node runs it.
	out := filepath.Join(work, "sink")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./sink")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./sink: %w: %s", err, b)
	}
	binaries := map[string]string{runtime.GOARCH: out}
	zoneinfo, err := imagebuild.ZoneinfoZip()
	if err != nil {
		return err
	}
	base, err := imagebuild.BaseLayer(zoneinfo)
	if err != nil {
		return err
	}
	idx, err := sinkSpec.Index(binaries, base, imagebuild.Meta{Created: time.Unix(0, 0)})
	if err != nil {
		return err
	}
	return imagebuild.WriteArchive(archive, idx, sinkImage)
}
