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
	"reflect"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestKustomizeDefault: 'make deploy' installs this; every object passes a server-side dry-run.
func TestKustomizeDefault(t *testing.T) {
	objs := kustomizeBuild(t, "config/default")
	for _, kind := range []string{
		"Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
		"Role", "RoleBinding", "Service", "Deployment",
	} {
		if len(find(objs, kind)) == 0 {
			t.Errorf("config/default has no %s", kind)
		}
	}
	for _, o := range objs {
		if ns := o.GetNamespace(); ns != "" && ns != releaseNS {
			t.Errorf("%s %s is in namespace %s, want %s", o.GetKind(), o.GetName(), ns, releaseNS)
		}
	}
	nsObj := one(t, objs, "Namespace")
	if nsObj.GetName() != releaseNS || nsObj.GetLabels()["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("Namespace %s labels %v, want %s enforcing restricted", nsObj.GetName(), nsObj.GetLabels(), releaseNS)
	}
	dryRunApply(t, objs)

	dep := toDeployment(t, one(t, objs, "Deployment"))
	if dep.Name != "segment-webhook-operator-controller-manager" {
		t.Errorf("Deployment name %q", dep.Name)
	}
	c := managerContainer(t, dep)
	managerImage, receiverImage := defaultImages(t)
	if c.Image != managerImage {
		// 'make deploy IMG=...' rewrites config/manager/kustomization.yaml; only warn then.
		t.Logf("manager image %q differs from the Makefile default %q (changed by 'make deploy'?)", c.Image, managerImage)
	}
	var env string
	for _, e := range c.Env {
		if e.Name == "RECEIVER_IMAGE" {
			env = e.Value
		}
	}
	if env != receiverImage {
		t.Errorf("RECEIVER_IMAGE %q, want the Makefile's RECEIVER_IMG default %q", env, receiverImage)
	}
	for _, a := range []string{"--leader-elect", "--metrics-bind-address=:8443", "--health-probe-bind-address=:8081"} {
		if !slices.Contains(c.Args, a) {
			t.Errorf("manager args %v lack %s", c.Args, a)
		}
	}
	checkManagerDeployment(t, dep)
	checkPodSecurity(t, dep)

	// Every binding names the ServiceAccount the Deployment runs as, in its namespace.
	for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
		for _, b := range find(objs, kind) {
			subjects, _, _ := unstructured.NestedSlice(b.Object, "subjects")
			for _, s := range subjects {
				s := s.(map[string]any)
				if s["name"] != dep.Spec.Template.Spec.ServiceAccountName || s["namespace"] != releaseNS {
					t.Errorf("%s %s binds %v, not the manager's ServiceAccount", kind, b.GetName(), s)
				}
			}
		}
	}

	// The metrics Service selects the manager pods and targets its metrics port.
	svc := one(t, objs, "Service")
	selector, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector")
	for k, v := range selector {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("metrics Service selector %v does not select the manager pods %v", selector, dep.Spec.Template.Labels)
		}
	}
}

// TestKustomizePrometheus builds config/prometheus the way config/default would include it
// (same namespace and name prefix) and dry-runs it against the real ServiceMonitor CRD.
func TestKustomizePrometheus(t *testing.T) {
	dir := t.TempDir()
	base, err := filepath.Rel(dir, filepath.Join(repoRoot, "config", "prometheus")) // kustomize wants it relative
	if err != nil {
		t.Fatal(err)
	}
	overlay := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n" +
		"namespace: " + releaseNS + "\nnamePrefix: segment-webhook-operator-\nresources:\n- " +
		base + "\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(overlay), 0o644); err != nil {
		t.Fatal(err)
	}
	objs := kustomizeBuild(t, dir)
	dryRunApply(t, objs)
	sm := one(t, objs, "ServiceMonitor")

	svc := one(t, kustomizeBuild(t, "config/default"), "Service")
	matchLabels, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	for k, v := range matchLabels {
		if svc.GetLabels()[k] != v {
			t.Errorf("ServiceMonitor selector %v does not match the metrics Service labels %v", matchLabels, svc.GetLabels())
		}
	}
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	if len(endpoints) != 1 || len(ports) != 1 ||
		endpoints[0].(map[string]any)["port"] != ports[0].(map[string]any)["name"] {
		t.Errorf("ServiceMonitor endpoints %v do not name the metrics Service port %v", endpoints, ports)
	}
}

// TestKustomizeParts: each base builds on its own ('make install' applies config/crd).
func TestKustomizeParts(t *testing.T) {
	crds := kustomizeBuild(t, "config/crd")
	bases, _ := filepath.Glob(filepath.Join(repoRoot, "config/crd/bases/*.yaml"))
	if len(crds) != len(bases) {
		t.Errorf("config/crd builds %d CRDs, config/crd/bases holds %d files: list them all in config/crd/kustomization.yaml",
			len(crds), len(bases))
	}
	rbac := kustomizeBuild(t, "config/rbac")
	var names []string
	for _, o := range rbac {
		names = append(names, o.GetKind()+"/"+o.GetName())
	}
	slices.Sort(names)
	want := []string{
		"ClusterRole/manager-role", "ClusterRole/metrics-auth-role", "ClusterRole/metrics-reader",
		"ClusterRole/segmentwebhook-editor-role", "ClusterRole/segmentwebhook-viewer-role",
		"ClusterRoleBinding/manager-rolebinding", "ClusterRoleBinding/metrics-auth-rolebinding",
		"Role/leader-election-role", "RoleBinding/leader-election-rolebinding",
		"ServiceAccount/controller-manager",
	}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("config/rbac builds %v, want %v", names, want)
	}
	for _, o := range find(rbac, "Role") {
		rules := rulesOf(t, o)
		if len(rules) == 0 || !slices.Contains(rules[0].APIGroups, "coordination.k8s.io") || !slices.Contains(rules[0].Resources, "leases") {
			t.Errorf("leader election Role rules %v lack coordination.k8s.io leases", rules)
		}
	}
}

// TestKustomizeNamespaceScoped: the namespace-scoped overlay matches the chart's watchNamespaces:
// the manager's rules as a Role in the watched namespace, bound to its ServiceAccount, the
// namespace in WATCH_NAMESPACES, and nothing bound cluster-wide but the metrics authentication.
func TestKustomizeNamespaceScoped(t *testing.T) {
	objs := kustomizeBuild(t, "config/namespace-scoped")
	dryRunApply(t, objs)
	want := generatedRules(t)
	var managerRoles []string
	for _, o := range find(objs, "Role") {
		if o.GetName() == "segment-webhook-operator-manager-role" {
			managerRoles = append(managerRoles, o.GetNamespace())
			if !reflect.DeepEqual(rulesOf(t, o), want) {
				t.Errorf("the overlay's manager Role rules differ from config/rbac/role.yaml")
			}
		}
	}
	if !reflect.DeepEqual(managerRoles, []string{"team-a"}) {
		t.Errorf("manager Role in namespaces %v, want [team-a]", managerRoles)
	}
	for _, o := range find(objs, "ClusterRole") {
		if o.GetName() == "segment-webhook-operator-manager-role" {
			t.Error("the overlay still has the manager ClusterRole")
		}
	}
	for _, b := range find(objs, "ClusterRoleBinding") {
		if b.GetName() != "segment-webhook-operator-metrics-auth-rolebinding" {
			t.Errorf("ClusterRoleBinding %s in the namespace-scoped overlay", b.GetName())
		}
	}
	dep := toDeployment(t, one(t, objs, "Deployment"))
	var watched string
	for _, e := range managerContainer(t, dep).Env {
		if e.Name == "WATCH_NAMESPACES" {
			watched = e.Value
		}
	}
	if watched != "team-a" {
		t.Errorf("WATCH_NAMESPACES=%q, want team-a", watched)
	}
	for _, b := range find(objs, "RoleBinding") {
		if b.GetName() != "segment-webhook-operator-manager-rolebinding" {
			continue
		}
		ref, _, _ := unstructured.NestedStringMap(b.Object, "roleRef")
		subjects, _, _ := unstructured.NestedSlice(b.Object, "subjects")
		if b.GetNamespace() != "team-a" || ref["kind"] != "Role" || ref["name"] != "segment-webhook-operator-manager-role" ||
			len(subjects) != 1 || subjects[0].(map[string]any)["name"] != dep.Spec.Template.Spec.ServiceAccountName {
			t.Errorf("manager RoleBinding %s/%s: roleRef %v, subjects %v", b.GetNamespace(), b.GetName(), ref, subjects)
		}
	}
}
