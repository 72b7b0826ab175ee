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
	"context"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestGitOpsSample: config/samples/gitops is accepted by the API server and sets only fields
// that differ from the defaults: removing any one of them changes the stored object (or makes
// it invalid).
func TestGitOpsSample(t *testing.T) {
	const ns = "gitops-sample"
	ensureNamespace(t, ns, nil)
	sample := one(t, kustomizeBuild(t, "config/samples/gitops"), "SegmentWebhook")
	sample.SetNamespace(ns)
	stored := func(o *unstructured.Unstructured) (any, error) {
		o = o.DeepCopy()
		if err := k8sClient.Create(context.Background(), o, client.DryRunAll); err != nil {
			return nil, err
		}
		return o.Object["spec"], nil
	}
	want, err := stored(sample)
	if err != nil {
		t.Fatalf("the API server refuses the GitOps sample: %v", err)
	}
	var leaves func(path []string, v any) [][]string
	leaves = func(path []string, v any) [][]string {
		m, ok := v.(map[string]any)
		if !ok {
			return [][]string{path}
		}
		var out [][]string
		for k, child := range m {
			out = append(out, leaves(append(append([]string(nil), path...), k), child)...)
		}
		return out
	}
	for _, path := range leaves([]string{"spec"}, sample.Object["spec"]) {
		o := sample.DeepCopy()
		unstructured.RemoveNestedField(o.Object, path...)
		if got, err := stored(o); err == nil && reflect.DeepEqual(got, want) {
			t.Errorf("%s is set to its default value: leave it out of the GitOps sample", strings.Join(path, "."))
		}
	}
}
