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

package lifecycle

import (
	"context"
	"maps"
	"os/exec"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const kustomizeDir = "config/default"

// applier installs and removes config/default: with kubectl, or with the same server-side apply
// and deletes made through client-go where kubectl is not installed.
type applier interface {
	apply(t *testing.T, c *cluster)
	delete(t *testing.T, c *cluster)
}

type kubectlApplier struct{ path string }

func (k kubectlApplier) apply(t *testing.T, c *cluster) {
	run(t, k.path, "apply", "--server-side", "-k", kustomizeDir, "--kubeconfig", c.kubeconfig)
}

// delete does not wait for the Namespace: without a namespace controller it stays Terminating.
func (k kubectlApplier) delete(t *testing.T, c *cluster) {
	run(t, k.path, "delete", "-k", kustomizeDir, "--wait=false", "--kubeconfig", c.kubeconfig)
}

// clientGoApplier does what kubectl apply --server-side -k does: kustomize build, then one
// server-side apply per object with kubectl's field manager, in kustomize's order; delete removes
// them in reverse order with background propagation.
type clientGoApplier struct{ objs []*unstructured.Unstructured }

func (a clientGoApplier) apply(t *testing.T, c *cluster) {
	t.Helper()
	t.Logf("server-side apply of %d objects from kustomize build %s (field manager kubectl)", len(a.objs), kustomizeDir)
	for _, o := range a.objs {
		err := c.client.Apply(context.Background(), client.ApplyConfigurationFromUnstructured(o.DeepCopy()), client.FieldOwner("kubectl"))
		if err != nil {
			t.Fatalf("apply %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
}

func (a clientGoApplier) delete(t *testing.T, c *cluster) {
	t.Helper()
	t.Logf("delete of %d objects from kustomize build %s, in reverse order", len(a.objs), kustomizeDir)
	for _, o := range slices.Backward(a.objs) {
		err := c.client.Delete(context.Background(), o.DeepCopy(), client.PropagationPolicy("Background"))
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatalf("delete %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
}

// TestKustomizeLifecycle: kubectl apply --server-side -k config/default creates every object;
// applying again changes nothing; kubectl delete -k config/default removes every object, the CRD
// included, and with it the users' SegmentWebhooks (unlike helm uninstall, which keeps the CRD).
// It runs with kubectl when kubectl is installed, and always through client-go.
func TestKustomizeLifecycle(t *testing.T) {
	objs := decode(t, run(t, tool(t, "kustomize"), "build", kustomizeDir))
	if path, err := exec.LookPath("kubectl"); err == nil {
		t.Logf("kubectl found at %s: running the lifecycle with kubectl, then through client-go", path)
		t.Run("kubectl", func(t *testing.T) { kustomizeLifecycle(t, kubectlApplier{path}, objs) })
	} else {
		t.Log("kubectl is not installed: running the lifecycle through client-go's server-side apply only")
	}
	t.Run("client-go", func(t *testing.T) { kustomizeLifecycle(t, clientGoApplier{objs}, objs) })
}

func kustomizeLifecycle(t *testing.T, a applier, objs []*unstructured.Unstructured) {
	c := newCluster(t)
	var namespaces []string
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			namespaces = append(namespaces, o.GetName())
		}
	}
	if len(namespaces) != 1 {
		t.Fatalf("config/default should create one Namespace, has %v", namespaces)
	}

	t.Log("apply")
	a.apply(t, c)
	c.waitEstablished(t)
	refs := c.refs(t, objs, namespaces[0])
	applied := c.requireExist(t, refs)
	rbac := c.managerRBAC(t)
	if len(rbac.clusterRoles) != 1 || len(rbac.clusterRoleBindings) != 1 {
		t.Errorf("want one manager ClusterRole and binding, got %+v", rbac)
	}
	if len(find(refs, "Deployment")) != 1 {
		t.Errorf("want one manager Deployment, got %v", find(refs, "Deployment"))
	}

	t.Log("apply again: nothing changes")
	a.apply(t, c)
	if again := c.requireExist(t, refs); !maps.Equal(applied, again) {
		for k, v := range again {
			if applied[k] != v {
				t.Errorf("%s changed (resourceVersion %s -> %s) on a repeated apply", k, applied[k], v)
			}
		}
	}

	c.createNamespace(t, "team-a")
	userObjects := c.createUserWebhook(t, "team-a")

	t.Log("delete")
	a.delete(t, c)
	var gone []ref
	for _, r := range refs {
		if r.gvk.Kind != "Namespace" {
			gone = append(gone, r)
		}
	}
	c.requireGone(t, gone)
	ns := &corev1.Namespace{}
	if err := c.client.Get(context.Background(), client.ObjectKey{Name: namespaces[0]}, ns); err == nil && ns.DeletionTimestamp == nil {
		t.Errorf("Namespace %s was not deleted", namespaces[0])
	} else if err == nil {
		t.Logf("Namespace %s is Terminating (envtest runs no namespace controller to finish it)", ns.Name)
	} else if !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	// The CRD went, so its custom resources went with it; the user's Secret stays.
	if c.exists(t, userObjects[1]) {
		t.Error("the SegmentWebhook outlived its CRD")
	}
	if !c.exists(t, userObjects[0]) {
		t.Error("the user's Secret was removed")
	}
}
