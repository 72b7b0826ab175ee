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

package v1alpha1

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// AddToScheme registers both kinds under the group version, with the meta types a client needs
// for list and watch options.
func TestAddToScheme(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	for _, obj := range []runtime.Object{&SegmentWebhook{}, &SegmentWebhookList{}, &metav1.ListOptions{}} {
		gvks, _, err := s.ObjectKinds(obj)
		if err != nil {
			t.Fatalf("%T: %v", obj, err)
		}
		if gvks[0].GroupVersion() != GroupVersion {
			t.Errorf("%T is registered as %v, want group version %v", obj, gvks[0], GroupVersion)
		}
	}
	if !s.Recognizes(GroupVersion.WithKind("SegmentWebhook")) {
		t.Error("the scheme does not recognize SegmentWebhook")
	}
}
