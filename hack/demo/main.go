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

// Command demo runs the product's main job on this machine, with no cluster: a local control
// plane (envtest's kube-apiserver and etcd), the operator, the sample SegmentWebhook from
// config/samples, and the real receiver binary run with exactly the config the operator rendered,
// receiving signed Segment events and forwarding them to a local sink. It rotates the shared
// secret the way a user would, and exits non-zero when anything is not as expected.
//
//	make demo        (or: KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh) go run ./hack/demo)
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(2)
	}
	err = run(ctx, os.Stdout, options{Root: root, BinDir: filepath.Join(root, "bin")})
	switch {
	case err == nil:
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(os.Stderr, "\ndemo interrupted; everything it started has been stopped")
		os.Exit(130)
	default:
		fmt.Fprintf(os.Stderr, "\ndemo FAILED: %v\n", err)
		os.Exit(1)
	}
}

// repoRoot walks up from the working directory to the directory holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the demo inside the repository (no go.mod found)")
		}
		dir = parent
	}
}

// options say where things are; tests build the receiver into a temporary directory.
type options struct {
	// Root is the repository root (config/, cmd/receiver).
	Root string
	// BinDir receives the receiver binary, like 'make build' (bin/).
	BinDir string
	// Assets is the envtest binary directory; empty means KUBEBUILDER_ASSETS, then
	// hack/envtest-assets.sh.
	Assets string
}

// run is the whole demo; it returns an error when any step's result is not what is expected,
// and stops everything it started before returning, on success, failure or cancellation.
func run(ctx context.Context, out io.Writer, opts options) error {
	d := &demo{out: out, opts: opts}
	defer d.cleanup()
	return d.run(ctx)
}
