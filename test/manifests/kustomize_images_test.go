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
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

// TestKustomizeImagesSetTheReceiverImage: an overlay's 'images:' mirrors or pins both images,
// the manager's container image and the receiver image the manager reads from RECEIVER_IMAGE.
func TestKustomizeImagesSetTheReceiverImage(t *testing.T) {
	const (
		manager  = "mirror.example.com/platform/manager:v9.9.9"
		receiver = "mirror.example.com/platform/receiver@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	)
	dir := t.TempDir()
	base, err := filepath.Rel(dir, filepath.Join(repoRoot, "config", "default"))
	if err != nil {
		t.Fatal(err)
	}
	repo := makeVar(t, "IMG_REPO")
	overlay := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- " + base + "\n" +
		"images:\n" +
		"- name: " + repo + "\n  newName: mirror.example.com/platform/manager\n  newTag: v9.9.9\n" +
		"- name: " + repo + "-receiver\n  newName: mirror.example.com/platform/receiver\n" +
		"  digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(overlay), 0o644); err != nil {
		t.Fatal(err)
	}
	c := managerContainer(t, toDeployment(t, one(t, kustomizeBuild(t, dir), "Deployment")))
	if c.Image != manager {
		t.Errorf("manager image %q, want %q", c.Image, manager)
	}
	var env []string
	for _, e := range c.Env {
		if e.Name == "RECEIVER_IMAGE" {
			env = append(env, e.Value)
		}
	}
	if len(env) != 1 || env[0] != receiver {
		t.Errorf("RECEIVER_IMAGE %v, want [%s]", env, receiver)
	}
	// The other variables are not mistaken for images.
	for _, e := range c.Env {
		if e.Name == "WATCH_NAMESPACES" && e.Value != "" {
			t.Errorf("WATCH_NAMESPACES became %q", e.Value)
		}
	}
}

// TestUndeployKeepsTheCRD: 'make undeploy' deletes what config/default installs except the
// CRD, whose deletion would take every team's SegmentWebhooks and receivers with it.
func TestUndeployKeepsTheCRD(t *testing.T) {
	m := regexp.MustCompile(`(?m)^undeploy:.*\n\t.*kubectl delete .*-l '([^']+)' -f -$`).FindSubmatch(readFile(t, "Makefile"))
	if m == nil {
		t.Fatal("the Makefile's undeploy target does not delete with a label selector")
	}
	selector, err := labels.Parse(string(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range kustomizeBuild(t, "config/default") {
		deleted := selector.Matches(labels.Set(o.GetLabels()))
		if deleted == (o.GetKind() == "CustomResourceDefinition") {
			t.Errorf("make undeploy deletes %s %s: %v", o.GetKind(), o.GetName(), deleted)
		}
	}
}
