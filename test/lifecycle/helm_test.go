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
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	helmRelease = "swo"
	helmNS      = "swo-system"
	chartDir    = "charts/segment-webhook-operator"
)

// TestHelmLifecycle runs the real helm binary against a real API server: install into a new
// namespace, upgrade to watched namespaces (the manager's ClusterRole becomes a Role in each) and
// back, upgrade with the same values (nothing is written), uninstall (the CRD and the users'
// SegmentWebhooks stay). At each step every object of the release is checked on the server, and
// nothing else carries the release's name.
func TestHelmLifecycle(t *testing.T) {
	c := newCluster(t)
	helm := tool(t, "helm")
	helmArgs := func(args ...string) []string {
		return append(args, "--namespace", helmNS, "--kubeconfig", c.kubeconfig)
	}
	release := func() []ref {
		return c.refs(t, decode(t, run(t, helm, helmArgs("get", "manifest", helmRelease)...)), helmNS)
	}
	values := func(content string) string {
		path := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	scopedValues := values("watchNamespaces: [team-a, team-b]\n")
	// helm upgrade without values keeps the release's previous ones: the way back is explicit.
	allValues := values("watchNamespaces: []\n")

	t.Log("helm install into a new namespace")
	run(t, helm, helmArgs("install", helmRelease, chartDir, "--create-namespace")...)
	c.waitEstablished(t)
	installed := release()
	c.requireRelease(t, installed)
	c.requireClusterWide(t)
	if len(find(installed, "Deployment")) != 1 || len(find(installed, "ServiceAccount")) != 1 {
		t.Errorf("want one manager Deployment and ServiceAccount, release has %v", installed)
	}

	c.createNamespace(t, "team-a")
	c.createNamespace(t, "team-b")
	userObjects := c.createUserWebhook(t, "team-a")

	t.Log("helm upgrade --values watchNamespaces=[team-a, team-b]")
	run(t, helm, helmArgs("upgrade", helmRelease, chartDir, "--values", scopedValues)...)
	scoped := release()
	c.requireRelease(t, scoped)
	c.requireGone(t, diff(installed, scoped))
	rbac := c.managerRBAC(t)
	if len(rbac.clusterRoles) != 0 || len(rbac.clusterRoleBindings) != 0 {
		t.Errorf("watchNamespaces set, yet the manager still has cluster-wide RBAC: %+v", rbac)
	}
	if got := namespacesOf(rbac.roles); !slices.Equal(got, []string{"team-a", "team-b"}) {
		t.Errorf("manager Roles in %v, want team-a and team-b", got)
	}
	if got := namespacesOf(rbac.roleBindings); !slices.Contains(got, "team-a") || !slices.Contains(got, "team-b") {
		t.Errorf("manager RoleBindings in %v, want team-a and team-b", got)
	}
	if args := c.managerArgs(t, scoped); !slices.Contains(args, "--namespaces=team-a,team-b") {
		t.Errorf("manager args %v lack --namespaces=team-a,team-b", args)
	}

	t.Log("helm upgrade --values watchNamespaces=[] (all namespaces again)")
	run(t, helm, helmArgs("upgrade", helmRelease, chartDir, "--values", allValues)...)
	back := release()
	c.requireRelease(t, back)
	c.requireGone(t, diff(scoped, back))
	c.requireClusterWide(t)
	if !slices.Equal(refNames(back), refNames(installed)) {
		t.Errorf("after upgrading back the release has\n %v\nwant what install made\n %v", back, installed)
	}

	t.Log("helm upgrade with the same values: no object changes")
	before := c.resourceVersions(t, back, userObjects)
	run(t, helm, helmArgs("upgrade", helmRelease, chartDir, "--values", allValues)...)
	same := release()
	c.requireRelease(t, same)
	if after := c.resourceVersions(t, same, userObjects); !maps.Equal(before, after) {
		for k, v := range after {
			if before[k] != v {
				t.Errorf("%s changed (resourceVersion %s -> %s) on an upgrade with the same values", k, before[k], v)
			}
		}
		if len(after) != len(before) {
			t.Errorf("objects before %v, after %v", slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)))
		}
	}

	t.Log("helm uninstall")
	run(t, helm, helmArgs("uninstall", helmRelease)...)
	c.requireGone(t, same)
	if left := c.labelled(t, same); len(left) > 0 {
		t.Errorf("objects of the release left after uninstall: %v", left)
	}
	if !c.crdEstablished(t) {
		t.Errorf("helm uninstall removed the CRD %s; users' SegmentWebhooks would go with it", crdName)
	}
	for _, o := range userObjects {
		if !c.exists(t, o) {
			t.Errorf("%T %s/%s was removed by helm uninstall", o, o.GetNamespace(), o.GetName())
		}
	}
	var releases corev1.SecretList
	if err := c.client.List(context.Background(), &releases, client.InNamespace(helmNS), client.MatchingLabels{"owner": "helm"}); err != nil {
		t.Fatal(err)
	}
	if len(releases.Items) != 0 {
		t.Errorf("helm's release records remain after uninstall: %d Secrets", len(releases.Items))
	}
}

// requireRelease checks that every object of the release exists, and that the objects on the
// server that carry the release's name are exactly those.
func (c *cluster) requireRelease(t *testing.T, release []ref) {
	t.Helper()
	if len(release) == 0 {
		t.Fatal("the release has no objects")
	}
	c.requireExist(t, release)
	if got := c.labelled(t, release); !slices.Equal(refNames(got), refNames(release)) {
		t.Errorf("objects annotated meta.helm.sh/release-name=%s:\n %v\nwant the release's\n %v", helmRelease, got, release)
	}
}

// labelled lists, for every kind in kinds, the objects helm marks as the release's.
func (c *cluster) labelled(t *testing.T, kinds []ref) []ref {
	t.Helper()
	seen := map[string]bool{}
	var out []ref
	for _, k := range kinds {
		if seen[k.gvk.String()] {
			continue
		}
		seen[k.gvk.String()] = true
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(k.gvk.GroupVersion().WithKind(k.gvk.Kind + "List"))
		if err := c.client.List(context.Background(), list); err != nil {
			t.Fatalf("listing %s: %v", k.gvk.Kind, err)
		}
		for _, o := range list.Items {
			if o.GetAnnotations()["meta.helm.sh/release-name"] == helmRelease && o.GetDeletionTimestamp() == nil {
				out = append(out, ref{gvk: k.gvk, namespace: o.GetNamespace(), name: o.GetName()})
			}
		}
	}
	slices.SortFunc(out, func(a, b ref) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// requireClusterWide: without watchNamespaces the manager has one ClusterRole and binding, and
// no Role granting it the same rules.
func (c *cluster) requireClusterWide(t *testing.T) {
	t.Helper()
	rbac := c.managerRBAC(t)
	if len(rbac.clusterRoles) != 1 || len(rbac.clusterRoleBindings) != 1 {
		t.Errorf("want one manager ClusterRole and ClusterRoleBinding, got %+v", rbac)
	}
	if len(rbac.roles) != 0 {
		t.Errorf("manager Roles %v remain with all namespaces watched", rbac.roles)
	}
}

// managerArgs are the args of the release's Deployment's manager container.
func (c *cluster) managerArgs(t *testing.T, release []ref) []string {
	t.Helper()
	deps := find(release, "Deployment")
	if len(deps) != 1 {
		t.Fatalf("want one Deployment in the release, got %v", deps)
	}
	u, err := c.get(deps[0])
	if err != nil {
		t.Fatal(err)
	}
	var dep appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &dep); err != nil {
		t.Fatal(err)
	}
	for _, ctr := range dep.Spec.Template.Spec.Containers {
		if ctr.Name == "manager" {
			return ctr.Args
		}
	}
	t.Fatalf("Deployment %s has no manager container", dep.Name)
	return nil
}

// resourceVersions of the release's objects, the CRD and the users' objects.
func (c *cluster) resourceVersions(t *testing.T, release []ref, users []client.Object) map[string]string {
	t.Helper()
	out := c.requireExist(t, release)
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := c.client.Get(context.Background(), client.ObjectKey{Name: crdName}, crd); err != nil {
		t.Fatal(err)
	}
	out["CRD "+crdName] = crd.ResourceVersion
	for _, o := range users {
		cp := o.DeepCopyObject().(client.Object)
		if err := c.client.Get(context.Background(), client.ObjectKeyFromObject(o), cp); err != nil {
			t.Fatal(err)
		}
		out[fmt.Sprintf("user %T %s/%s", cp, cp.GetNamespace(), cp.GetName())] = cp.GetResourceVersion()
	}
	return out
}

func find(refs []ref, kind string) []ref {
	var out []ref
	for _, r := range refs {
		if r.gvk.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

func refNames(refs []ref) []string {
	var out []string
	for _, r := range refs {
		out = append(out, r.String())
	}
	slices.Sort(out)
	return out
}

// namespacesOf returns the sorted distinct namespaces of "namespace/name" entries.
func namespacesOf(names []string) []string {
	var out []string
	for _, n := range names {
		ns, _, _ := strings.Cut(n, "/")
		if !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	slices.Sort(out)
	return out
}
