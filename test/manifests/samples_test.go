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
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const samplesNS = "samples"

// TestSamplesAreAccepted creates the samples for real: the CRD's OpenAPI schema and CEL rules
// accept them.
func TestSamplesAreAccepted(t *testing.T) {
	objs := kustomizeBuild(t, "config/samples")
	if len(find(objs, "SegmentWebhook")) != 1 || len(find(objs, "Secret")) == 0 {
		t.Fatalf("config/samples should hold a SegmentWebhook and its Secrets, got %d objects", len(objs))
	}
	ns := fmt.Sprintf("%s-%d", samplesNS, time.Now().UnixNano()) // unique, so -count=N works
	ensureNamespace(t, ns, nil)
	ctx := context.Background()
	for _, o := range objs {
		o = o.DeepCopy()
		o.SetNamespace(ns)
		if err := k8sClient.Create(ctx, o); err != nil {
			t.Errorf("creating sample %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	// Every Secret key the sample references is in the sample Secrets.
	swh := one(t, objs, "SegmentWebhook")
	have := map[string]bool{}
	for _, s := range find(objs, "Secret") {
		data, _, _ := unstructured.NestedStringMap(s.Object, "stringData")
		for k := range data {
			have[s.GetName()+"/"+k] = true
		}
	}
	for _, ref := range secretRefs(swh.Object) {
		if !have[ref] {
			t.Errorf("the sample SegmentWebhook references %s, which config/samples does not define", ref)
		}
	}
}

// secretRefs finds every {name, key} pair under a secretRefs list or a secretKeyRef.
func secretRefs(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			switch k {
			case "secretKeyRef", "bearerTokenSecretRef":
				if m, ok := child.(map[string]any); ok {
					out = append(out, m["name"].(string)+"/"+m["key"].(string))
				}
			case "secretRefs":
				for _, r := range child.([]any) {
					m := r.(map[string]any)
					out = append(out, m["name"].(string)+"/"+m["key"].(string))
				}
			default:
				out = append(out, secretRefs(child)...)
			}
		}
	case []any:
		for _, child := range v {
			out = append(out, secretRefs(child)...)
		}
	}
	return out
}

// TestSampleVariantsAreRefused: the API server (CEL) really checks what the sample shows, so
// the acceptance above means something.
func TestSampleVariantsAreRefused(t *testing.T) {
	ensureNamespace(t, samplesNS, nil)
	base := one(t, kustomizeBuild(t, "config/samples"), "SegmentWebhook")
	for name, mutate := range map[string]func(spec map[string]any){
		"duplicate target names": func(spec map[string]any) {
			targets := spec["targets"].([]any)
			targets[1].(map[string]any)["name"] = targets[0].(map[string]any)["name"]
		},
		"budget of 5s": func(spec map[string]any) {
			spec["delivery"].(map[string]any)["budget"] = "5s"
		},
		"HMAC without secretRefs": func(spec map[string]any) { delete(spec, "secretRefs") },
		"replicas and autoscaling": func(spec map[string]any) {
			spec["autoscaling"] = map[string]any{"minReplicas": int64(2), "maxReplicas": int64(4)}
		},
		"a target URL that is not http(s)": func(spec map[string]any) {
			spec["targets"].([]any)[0].(map[string]any)["http"].(map[string]any)["url"] = "ftp://example.com/x"
		},
	} {
		t.Run(name, func(t *testing.T) {
			o := base.DeepCopy()
			o.SetNamespace(samplesNS)
			o.SetName("refused")
			mutate(o.Object["spec"].(map[string]any))
			if err := k8sClient.Create(context.Background(), o, client.DryRunAll); err == nil {
				t.Errorf("the API server accepted a SegmentWebhook with %s", name)
			}
		})
	}
}

// TestREADMEShowsTheSample: the annotated SegmentWebhook in README.md is config/samples.
func TestREADMEShowsTheSample(t *testing.T) {
	readme := string(readFile(t, "README.md"))
	_, section, ok := strings.Cut(readme, "\n## A SegmentWebhook")
	if !ok {
		t.Fatal(`README.md has no "## A SegmentWebhook" section`)
	}
	block := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindStringSubmatch(section)
	if block == nil {
		t.Fatal(`README.md's "A SegmentWebhook" section has no yaml block`)
	}
	fromREADME := decode(t, []byte(block[1]))
	fromSamples := kustomizeBuild(t, "config/samples")
	key := func(o *unstructured.Unstructured) string { return o.GetKind() + "/" + o.GetName() }
	samples := map[string]*unstructured.Unstructured{}
	for _, o := range fromSamples {
		samples[key(o)] = o
	}
	if len(fromREADME) != len(fromSamples) {
		t.Errorf("README.md shows %d objects, config/samples has %d", len(fromREADME), len(fromSamples))
	}
	for _, o := range fromREADME {
		s, ok := samples[key(o)]
		if !ok {
			t.Errorf("README.md shows %s, which config/samples lacks", key(o))
			continue
		}
		for _, field := range []string{"spec", "stringData"} {
			if !reflect.DeepEqual(o.Object[field], s.Object[field]) {
				t.Errorf("%s %s in README.md differs from config/samples", key(o), field)
			}
		}
	}
}
