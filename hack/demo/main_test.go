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
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDemo runs 'make demo' in-process, so the demo cannot rot: every step and check it prints
// must pass against the current operator, receiver and config/samples.
func TestDemo(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal("KUBEBUILDER_ASSETS must name the envtest binaries: run 'make test', " +
			"or KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh) go test ./hack/demo")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	// Building the receiver and kubectl-swh cold takes minutes on a small, busy machine: allow all
	// of the test binary's time but the last 30 s, which the cleanup needs.
	timeout := 10 * time.Minute
	if deadline, ok := t.Deadline(); ok {
		timeout = time.Until(deadline) - 30*time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	var out bytes.Buffer
	start := time.Now()
	err = run(ctx, &out, options{Root: root, BinDir: t.TempDir()})
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatalf("the demo failed after %s: %v", time.Since(start).Round(time.Second), err)
	}
	for _, want := range []string{"[10/10] Metrics", "Demo passed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the demo output lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "✗") {
		t.Error("the demo printed a failed check")
	}
}
