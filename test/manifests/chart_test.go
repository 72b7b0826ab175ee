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
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

const allOnValues = chartDir + "/ci/all-on-values.yaml"

// makeVar reads a "NAME ?= value" default from the Makefile.
func makeVar(t *testing.T, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + ` \?= (.+)$`).FindSubmatch(readFile(t, "Makefile"))
	if m == nil {
		t.Fatalf("Makefile has no %s ?= default", name)
	}
	return strings.TrimSpace(string(m[1]))
}

// defaultImages are the Makefile's IMG and RECEIVER_IMG defaults.
func defaultImages(t *testing.T) (manager, receiver string) {
	repo, version := makeVar(t, "IMG_REPO"), makeVar(t, "VERSION")
	return repo + ":v" + version, repo + "-receiver:v" + version
}

func TestHelmLint(t *testing.T) {
	helm := tool(t, "helm")
	run(t, helm, "lint", "--strict", chartDir)
	run(t, helm, "lint", "--strict", chartDir, "--values", allOnValues)
}

func TestChartVersionFollowsMakefile(t *testing.T) {
	var chart struct {
		Version    string `json:"version"`
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(readFile(t, chartDir+"/Chart.yaml"), &chart); err != nil {
		t.Fatal(err)
	}
	version := makeVar(t, "VERSION")
	if chart.Version != version || chart.AppVersion != "v"+version {
		t.Errorf("Chart.yaml version %q / appVersion %q, want %q / %q (Makefile VERSION)",
			chart.Version, chart.AppVersion, version, "v"+version)
	}
	var values struct {
		Image struct {
			Repository string `json:"repository"`
		} `json:"image"`
	}
	if err := yaml.Unmarshal(readFile(t, chartDir+"/values.yaml"), &values); err != nil {
		t.Fatal(err)
	}
	if repo := makeVar(t, "IMG_REPO"); values.Image.Repository != repo {
		t.Errorf("values.yaml image.repository %q, want the Makefile's IMG_REPO %q", values.Image.Repository, repo)
	}
}

// TestChartCRDsMatchConfig: the chart ships exactly the CRDs controller-gen generates.
func TestChartCRDsMatchConfig(t *testing.T) {
	want, _ := filepath.Glob(filepath.Join(repoRoot, "config/crd/bases/*.yaml"))
	got, _ := filepath.Glob(filepath.Join(repoRoot, chartDir, "crds/*.yaml"))
	names := func(paths []string) []string {
		var out []string
		for _, p := range paths {
			out = append(out, filepath.Base(p))
		}
		return out
	}
	if len(want) == 0 || !slices.Equal(names(want), names(got)) {
		t.Fatalf("chart crds/ %v differ from config/crd/bases %v: run 'make sync-chart'", names(got), names(want))
	}
	for _, p := range want {
		rel := "config/crd/bases/" + filepath.Base(p)
		if !bytes.Equal(readFile(t, rel), readFile(t, chartDir+"/crds/"+filepath.Base(p))) {
			t.Errorf("%s/crds/%s differs from %s: run 'make sync-chart'", chartDir, filepath.Base(p), rel)
		}
	}
}

// generatedRules are the manager's rules from config/rbac/role.yaml (controller-gen output).
func generatedRules(t *testing.T) []rbacv1.PolicyRule {
	t.Helper()
	var role rbacv1.ClusterRole
	if err := yaml.Unmarshal(readFile(t, "config/rbac/role.yaml"), &role); err != nil {
		t.Fatal(err)
	}
	if len(role.Rules) == 0 {
		t.Fatal("config/rbac/role.yaml has no rules")
	}
	return role.Rules
}

func rulesOf(t *testing.T, o *unstructured.Unstructured) []rbacv1.PolicyRule {
	t.Helper()
	var role rbacv1.ClusterRole // Role has the same rules field
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &role); err != nil {
		t.Fatal(err)
	}
	return role.Rules
}

// TestChartRBACMatchesGeneratedRole: the chart's manager (Cluster)Role has exactly the rules
// controller-gen derives from the +kubebuilder:rbac markers.
func TestChartRBACMatchesGeneratedRole(t *testing.T) {
	if !bytes.Equal(readFile(t, "config/rbac/role.yaml"), readFile(t, chartDir+"/files/manager-role.yaml")) {
		t.Errorf("%s/files/manager-role.yaml differs from config/rbac/role.yaml: run 'make sync-chart'", chartDir)
	}
	want := generatedRules(t)
	managerRole := releaseName + "-segment-webhook-operator-manager"

	objs := helmTemplate(t)
	var found bool
	for _, o := range find(objs, "ClusterRole") {
		if o.GetName() == managerRole {
			found = true
			if got := rulesOf(t, o); !reflect.DeepEqual(got, want) {
				t.Errorf("chart ClusterRole %s rules differ from config/rbac/role.yaml:\n got %+v\nwant %+v", o.GetName(), got, want)
			}
		}
	}
	if !found {
		t.Errorf("default values render no ClusterRole %s", managerRole)
	}

	// With watched namespaces the same rules become a Role in each of them, and nothing is
	// granted cluster-wide except the aggregated editor/viewer roles and, for HTTPS metrics,
	// TokenReviews and SubjectAccessReviews, which read no object.
	objs = helmTemplate(t, "--values", allOnValues)
	roles := map[string]bool{}
	for _, o := range find(objs, "Role") {
		if o.GetName() == managerRole {
			roles[o.GetNamespace()] = true
			if got := rulesOf(t, o); !reflect.DeepEqual(got, want) {
				t.Errorf("chart Role %s/%s rules differ from config/rbac/role.yaml", o.GetNamespace(), o.GetName())
			}
		}
	}
	if !roles["team-growth"] || !roles["team-data"] || len(roles) != 2 {
		t.Errorf("watchNamespaces should give a manager Role in team-growth and team-data, got %v", roles)
	}
	for _, o := range find(objs, "ClusterRole") {
		if o.GetName() == managerRole {
			t.Errorf("watchNamespaces set, yet a manager ClusterRole is rendered")
		}
	}
	for _, o := range find(objs, "ClusterRoleBinding") {
		if o.GetName() != releaseName+"-segment-webhook-operator-metrics-auth" {
			t.Errorf("watchNamespaces set, yet ClusterRoleBinding %s is rendered", o.GetName())
		}
	}

	// kustomize uses role.yaml itself; check the build keeps it intact.
	for _, o := range find(kustomizeBuild(t, "config/default"), "ClusterRole") {
		if o.GetName() == "segment-webhook-operator-manager-role" && !reflect.DeepEqual(rulesOf(t, o), want) {
			t.Errorf("kustomize manager ClusterRole differs from config/rbac/role.yaml")
		}
	}
}

// TestChartRendersAndPassesDryRun renders the chart with the default values and with every
// option on, and has the API server validate every object.
func TestChartRendersAndPassesDryRun(t *testing.T) {
	managerImage, receiverImage := defaultImages(t)
	for _, tc := range []struct {
		name           string
		args           []string
		wantArgs       []string
		wantKinds      []string
		image          string
		receiverImage  string
		serviceAccount string
	}{{
		name:           "default values",
		wantKinds:      []string{"CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "Deployment"},
		image:          managerImage,
		receiverImage:  receiverImage,
		serviceAccount: releaseName + "-segment-webhook-operator",
	}, {
		name: "every option on",
		args: []string{"--values", allOnValues},
		wantArgs: []string{
			"--namespaces=team-growth,team-data", "--zap-log-level=debug", "--zap-encoder=json",
			"--allowed-receiver-images=registry.example.com/platform/segment-webhook-receiver@,registry.example.com/platform/*:v*",
			"--allow-scheduling-overrides=false",
		},
		wantKinds: []string{
			"CustomResourceDefinition", "ServiceAccount", "ClusterRole", "Role", "RoleBinding", "Service",
			"Deployment", "PodDisruptionBudget", "ServiceMonitor", "PodMonitor", "ConfigMap",
		},
		image:          "registry.example.com/platform/segment-webhook-operator:v0.1.0",
		receiverImage:  "registry.example.com/platform/segment-webhook-receiver@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		serviceAccount: "segment-webhook-operator-sa",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			objs := helmTemplate(t, tc.args...)
			for _, kind := range tc.wantKinds {
				if len(find(objs, kind)) == 0 {
					t.Errorf("no %s rendered", kind)
				}
			}
			dryRunApply(t, objs)

			dep := toDeployment(t, one(t, objs, "Deployment"))
			c := managerContainer(t, dep)
			if c.Image != tc.image {
				t.Errorf("manager image %q, want %q", c.Image, tc.image)
			}
			want := append([]string{
				"--leader-elect", "--receiver-image=" + tc.receiverImage,
				"--metrics-bind-address=:8443", "--health-probe-bind-address=:8081",
			}, tc.wantArgs...)
			for _, a := range want {
				if !slices.Contains(c.Args, a) {
					t.Errorf("manager args %v lack %s", c.Args, a)
				}
			}
			if dep.Spec.Template.Spec.ServiceAccountName != tc.serviceAccount {
				t.Errorf("serviceAccountName %q, want %q", dep.Spec.Template.Spec.ServiceAccountName, tc.serviceAccount)
			}
			checkManagerDeployment(t, dep)
			checkPodSecurity(t, dep)
			if tc.name == "every option on" {
				checkDashboard(t, one(t, objs, "ConfigMap"))
			}
		})
	}
}

// TestChartValuesSchema: values.schema.json refuses bad values before anything is rendered.
func TestChartValuesSchema(t *testing.T) {
	helm := tool(t, "helm")
	for _, bad := range [][]string{
		{"--set", "replicas=0"},
		{"--set", "replicaCount=2"}, // a typo of replicas: unknown keys are refused
		{"--set", "logLevel=verbose"},
		{"--set", "watchNamespaces[0]=Not_A_Namespace"},
		{"--set", "receiverImage.digest=latest"},
		{"--set", "receiverPolicy.allowSchedulingOverrides=maybe"},
		{"--set", `receiverPolicy.allowedImages[0]=a\,b`}, // one flag value: no commas in an entry
		{"--set", "receiverPolicy.allowedImages[0]="},
	} {
		if out, err := tryRun(helm, append([]string{"template", releaseName, chartDir, kubeVersionFlag(t)}, bad...)...); err == nil {
			t.Errorf("helm template %v succeeded, want a values schema error:\n%.300s", bad, out)
		} else if !strings.Contains(err.Error(), "schema") {
			t.Errorf("helm template %v failed, but not on the schema: %v", bad, err)
		}
	}
	// The ServiceMonitor scrapes the metrics Service, so it cannot be on alone.
	if _, err := tryRun(helm, "template", releaseName, chartDir, kubeVersionFlag(t),
		"--set", "metrics.service.enabled=false", "--set", "metrics.serviceMonitor.enabled=true"); err == nil {
		t.Error("a ServiceMonitor without the metrics Service was rendered")
	}
}

func toDeployment(t *testing.T, o *unstructured.Unstructured) *appsv1.Deployment {
	t.Helper()
	var dep appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &dep); err != nil {
		t.Fatal(err)
	}
	return &dep
}

func managerContainer(t *testing.T, dep *appsv1.Deployment) *corev1.Container {
	t.Helper()
	for i, c := range dep.Spec.Template.Spec.Containers {
		if c.Name == "manager" {
			return &dep.Spec.Template.Spec.Containers[i]
		}
	}
	t.Fatalf("Deployment %s has no manager container", dep.Name)
	return nil
}

// checkManagerDeployment checks what both install methods must give the manager.
func checkManagerDeployment(t *testing.T, dep *appsv1.Deployment) {
	t.Helper()
	spec := dep.Spec.Template.Spec
	if spec.AutomountServiceAccountToken == nil || !*spec.AutomountServiceAccountToken {
		t.Error("the manager needs its ServiceAccount token (automountServiceAccountToken: true)")
	}
	c := managerContainer(t, dep)
	if !slices.Equal(c.Command, []string{"/manager"}) {
		t.Errorf("command %v, want [/manager] (the Dockerfile's binary)", c.Command)
	}
	for probe, path := range map[*corev1.Probe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path {
			t.Errorf("missing %s probe", path)
			continue
		}
		port := probe.HTTPGet.Port
		if port.IntValue() != 8081 && port.String() != "health" {
			t.Errorf("%s probe on port %s, want 8081", path, port.String())
		}
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("manager container security context is not restricted: %+v", sc)
	}
	if _, ok := c.Resources.Requests[corev1.ResourceMemory]; !ok {
		t.Error("manager container has no memory request")
	}
}

// checkPodSecurity creates (dry-run) a Pod from the Deployment's template in a namespace that
// enforces the restricted Pod Security Standard: the API server's PodSecurity admission decides.
func checkPodSecurity(t *testing.T, dep *appsv1.Deployment) {
	t.Helper()
	const ns = "pss-restricted"
	ensureNamespace(t, ns, map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
		"pod-security.kubernetes.io/warn":            "restricted",
		"pod-security.kubernetes.io/warn-version":    "latest",
	})
	ctx := context.Background()
	spec := dep.Spec.Template.Spec.DeepCopy()
	if spec.ServiceAccountName != "" { // the ServiceAccount admission plugin wants it to exist
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: spec.ServiceAccountName, Namespace: ns}}
		if err := k8sClient.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "pss-" + dep.Name, Namespace: ns, Labels: dep.Spec.Template.Labels},
		Spec:       *spec,
	}
	warnings.take()
	if err := k8sClient.Create(ctx, pod, client.DryRunAll); err != nil {
		t.Errorf("a manager pod is refused under the restricted Pod Security Standard: %v", err)
	}
	if w := warnings.take(); len(w) > 0 {
		t.Errorf("the API server warned about the manager pod: %v", w)
	}
}

// checkDashboard: the Grafana dashboard is valid JSON and queries only metrics the receiver has.
func checkDashboard(t *testing.T, cm *unstructured.Unstructured) {
	t.Helper()
	data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
	raw, ok := data["segment-webhook-receivers.json"]
	if !ok {
		t.Fatalf("dashboard ConfigMap keys %v", data)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(raw), &dash); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	if cm.GetLabels()["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap lacks the grafana_dashboard label: %v", cm.GetLabels())
	}
	known := receiverMetrics(t)
	used := map[string]bool{}
	metric := regexp.MustCompile(`segment_receiver_[a-z_]+`)
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, target := range p.Targets {
			for _, m := range metric.FindAllString(target.Expr, -1) {
				base := m
				for _, suffix := range []string{"_bucket", "_count", "_sum"} {
					if b, ok := strings.CutSuffix(m, suffix); ok && known[b] {
						base = b
					}
				}
				if !known[base] {
					t.Errorf("panel %q queries %s, which the receiver does not export", p.Title, m)
				}
				used[base] = true
			}
		}
	}
	for m := range known {
		if !used[m] {
			t.Errorf("the dashboard does not show %s", m)
		}
	}
}

// receiverMetrics reads the metric names the receiver registers (receiver/metrics.go).
func receiverMetrics(t *testing.T) map[string]bool {
	t.Helper()
	src := readFile(t, "receiver/metrics.go")
	ns := regexp.MustCompile(`metricsNamespace\s*=\s*"([a-z_]+)"`).FindSubmatch(src)
	if ns == nil {
		t.Fatal("receiver/metrics.go: no metricsNamespace constant")
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`Namespace: metricsNamespace, Name: "([a-z_]+)"`).FindAllSubmatch(src, -1) {
		names[fmt.Sprintf("%s_%s", ns[1], m[1])] = true
	}
	if len(names) < 5 {
		t.Fatalf("found only %d metrics in receiver/metrics.go", len(names))
	}
	return names
}

// TestChartNotes renders NOTES.txt the way 'helm install' shows it (a client-side dry-run
// against the envtest API server): it tells how to create a SegmentWebhook and find its URL.
func TestChartNotes(t *testing.T) {
	helm, kc := tool(t, "helm"), kubeconfig(t)
	for _, values := range [][]string{nil, {"--values", allOnValues}} {
		args := append([]string{"install", releaseName, chartDir, "--namespace", releaseNS,
			"--dry-run=client", "--kubeconfig", kc}, values...)
		out := string(run(t, helm, args...))
		_, notes, ok := strings.Cut(out, "\nNOTES:\n")
		if !ok {
			t.Fatalf("helm install %v printed no NOTES", values)
		}
		for _, want := range []string{"kind: SegmentWebhook", "get swh events", "{.status.url}",
			"rollout status deployment/" + releaseName + "-segment-webhook-operator"} {
			if !strings.Contains(notes, want) {
				t.Errorf("NOTES (values %v) do not mention %q:\n%s", values, want, notes)
			}
		}
	}
}
