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
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// TestChartRefusesMisconfiguration: values that would render a broken or unsafe install fail
// 'helm template' with a message naming the value to change.
func TestChartRefusesMisconfiguration(t *testing.T) {
	helm := tool(t, "helm")
	for _, tc := range []struct {
		name string
		args []string
		want []string // all in the error
	}{{
		name: "two replicas without leader election",
		args: []string{"--set", "replicas=2", "--set", "leaderElection.enabled=false"},
		want: []string{"replicas: 2 needs leaderElection.enabled: true"},
	}, {
		name: "extraArgs repeats a flag the chart sets",
		args: []string{"--set", "extraArgs[0]=--namespaces=team-a"},
		want: []string{`extraArgs: "--namespaces=team-a" sets --namespaces`, "watchNamespaces"},
	}, {
		name: "extraArgs turns leader election off",
		args: []string{"--set", "extraArgs[0]=--leader-elect=false"},
		want: []string{"sets --leader-elect", "leaderElection.enabled"},
	}, {
		name: "extraArgs sets the receiver image allow-list",
		args: []string{"--set", "extraArgs[0]=--allowed-receiver-images=registry.example.com/"},
		want: []string{"sets --allowed-receiver-images", "receiverPolicy.allowedImages"},
	}, {
		name: "extraArgs allows scheduling overrides",
		args: []string{"--set", "extraArgs[0]=--allow-scheduling-overrides=true"},
		want: []string{"sets --allow-scheduling-overrides", "receiverPolicy.allowSchedulingOverrides"},
	}, {
		name: "extraArgs with a single dash",
		args: []string{"--set", "extraArgs[0]=-zap-log-level=debug"},
		want: []string{"sets --zap-log-level", "logLevel"},
	}, {
		name: "extraArgs sets the receiver image",
		args: []string{"--set", "extraArgs[0]=--receiver-image=example.com/r:1"},
		want: []string{"sets --receiver-image", "receiverImage"},
	}, {
		name: "minAvailable that blocks node drains",
		args: []string{"--set", "podDisruptionBudget.singleReplica=true", "--set", "podDisruptionBudget.maxUnavailable=null",
			"--set", "podDisruptionBudget.minAvailable=1"},
		want: []string{"minAvailable: 1 with replicas: 1", "blocks node drains"},
	}, {
		name: "both minAvailable and maxUnavailable",
		args: []string{"--set", "replicas=3", "--set", "podDisruptionBudget.minAvailable=1"},
		want: []string{"maxUnavailable or minAvailable, not both"},
	}, {
		name: "maxUnavailable 0",
		args: []string{"--set", "replicas=2", "--set", "podDisruptionBudget.maxUnavailable=0"},
		want: []string{"schema", "maxUnavailable"},
	}, {
		name: "a typo in a resource name",
		args: []string{"--set", "resources.limits.memroy=1Gi"},
		want: []string{"schema", "memroy"},
	}, {
		name: "a bad quantity",
		args: []string{"--set", "resources.requests.cpu=lots"},
		want: []string{"schema", "cpu"},
	}, {
		name: "a typo in the security context",
		args: []string{"--set", "securityContext.runAsNonroot=true"},
		want: []string{"schema", "runAsNonroot"},
	}, {
		name: "a typo in the pod security context",
		args: []string{"--set", "podSecurityContext.fsgroup=1000"},
		want: []string{"schema", "fsgroup"},
	}, {
		name: "a typo in affinity",
		args: []string{"--set", "affinity.podAntiAfinity.x=y"},
		want: []string{"schema", "podAntiAfinity"},
	}, {
		name: "an affinity term without a topologyKey",
		args: []string{"--set-json", `affinity={"podAntiAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":[{"labelSelector":{}}]}}`},
		want: []string{"schema", "topologyKey"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := tryRun(helm, append([]string{"template", releaseName, chartDir, "--namespace", releaseNS, kubeVersionFlag(t)}, tc.args...)...)
			if err == nil {
				t.Fatalf("helm template %v rendered, want an error:\n%.300s", tc.args, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("helm template %v failed without %q in the message:\n%v", tc.args, w, err)
				}
			}
		})
	}
}

// TestChartPodDisruptionBudget: a budget only over more than one pod (or when asked for a single
// one), maxUnavailable by default, and the API server accepts it.
func TestChartPodDisruptionBudget(t *testing.T) {
	for _, tc := range []struct {
		name      string
		args      []string
		wantField string // "" when no PDB is wanted
		wantValue any
	}{
		{name: "default values: one replica, no budget"},
		{name: "two replicas", args: []string{"--set", "replicas=2"}, wantField: "maxUnavailable", wantValue: float64(1)},
		{name: "disabled", args: []string{"--set", "replicas=2", "--set", "podDisruptionBudget.enabled=false"}},
		{name: "one replica, asked for", args: []string{"--set", "podDisruptionBudget.singleReplica=true"},
			wantField: "maxUnavailable", wantValue: float64(1)},
		{name: "a percentage", args: []string{"--set", "replicas=4", "--set", "podDisruptionBudget.maxUnavailable=50%"},
			wantField: "maxUnavailable", wantValue: "50%"},
		{name: "minAvailable below replicas", args: []string{"--set", "replicas=3", "--set", "podDisruptionBudget.maxUnavailable=null",
			"--set", "podDisruptionBudget.minAvailable=2"}, wantField: "minAvailable", wantValue: float64(2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := helmTemplate(t, tc.args...)
			pdbs := find(objs, "PodDisruptionBudget")
			if tc.wantField == "" {
				if len(pdbs) != 0 {
					t.Fatalf("rendered a PodDisruptionBudget: %v", pdbs[0].Object["spec"])
				}
				return
			}
			if len(pdbs) != 1 {
				t.Fatalf("rendered %d PodDisruptionBudgets, want 1", len(pdbs))
			}
			spec := pdbs[0].Object["spec"].(map[string]any)
			if got := spec[tc.wantField]; got != tc.wantValue {
				t.Errorf("spec.%s = %#v, want %#v (spec %v)", tc.wantField, got, tc.wantValue, spec)
			}
			other := map[string]string{"maxUnavailable": "minAvailable", "minAvailable": "maxUnavailable"}[tc.wantField]
			if _, ok := spec[other]; ok {
				t.Errorf("spec sets both %s and %s", tc.wantField, other)
			}
			dryRunApply(t, pdbs)
		})
	}
}

// TestChartNamesFitKubernetesLimits: a long release name or fullnameOverride still gives names
// of at most 63 characters that keep their suffix and stay distinct.
func TestChartNamesFitKubernetesLimits(t *testing.T) {
	long := strings.Repeat("r", 32) // the 32-character release name
	for _, tc := range []struct {
		name    string
		release string
		args    []string
	}{
		{name: "32-character release name", release: long},
		{name: "63-character fullnameOverride", release: releaseName,
			args: []string{"--set", "fullnameOverride=" + strings.Repeat("f", 62) + "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"template", tc.release, chartDir, "--namespace", releaseNS, kubeVersionFlag(t),
				"--values", allOnValues, "--set", "watchNamespaces=null"}, tc.args...)
			objs := decode(t, run(t, tool(t, "helm"), args...))
			seen := map[string]bool{}
			for _, o := range objs {
				id := o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
				if len(o.GetName()) > 63 {
					t.Errorf("%s: name is %d characters", id, len(o.GetName()))
				}
				if seen[id] {
					t.Errorf("%s rendered twice: truncation made two names equal", id)
				}
				seen[id] = true
			}
			for kind, suffix := range map[string]string{"Service": "-metrics", "PodMonitor": "-receivers", "ConfigMap": "-dashboard"} {
				if name := one(t, objs, kind).GetName(); !strings.HasSuffix(name, suffix) {
					t.Errorf("%s %s lost its suffix %s", kind, name, suffix)
				}
			}
			for _, suffix := range []string{"-manager", "-segmentwebhook-editor", "-segmentwebhook-viewer"} {
				if !slices.ContainsFunc(find(objs, "ClusterRole"), func(o *unstructured.Unstructured) bool {
					return strings.HasSuffix(o.GetName(), suffix)
				}) {
					t.Errorf("no ClusterRole ends in %s", suffix)
				}
			}
			dryRunApply(t, objs)
		})
	}
}

// TestChartComponentLabels: each object says which part of the install it is.
func TestChartComponentLabels(t *testing.T) {
	want := map[string]string{
		"Deployment": "manager", "PodDisruptionBudget": "manager", "Service": "manager",
		"ServiceAccount": "rbac", "ClusterRole": "rbac", "ClusterRoleBinding": "rbac", "Role": "rbac", "RoleBinding": "rbac",
		"ServiceMonitor": "monitoring", "PodMonitor": "monitoring", "ConfigMap": "monitoring",
	}
	for _, values := range [][]string{nil, {"--values", allOnValues}} {
		for _, o := range helmTemplate(t, values...) {
			if o.GetKind() == "CustomResourceDefinition" {
				continue // crds/ is not templated
			}
			got := o.GetLabels()["app.kubernetes.io/component"]
			if w, ok := want[o.GetKind()]; !ok || got != w {
				t.Errorf("%s %s: component %q, want %q", o.GetKind(), o.GetName(), got, w)
			}
		}
	}
}

// TestChartNotesNameNamespaces: every kubectl command in NOTES.txt works from any current
// namespace.
func TestChartNotesNameNamespaces(t *testing.T) {
	helm, kc := tool(t, "helm"), kubeconfig(t)
	for _, values := range [][]string{nil, {"--values", allOnValues}} {
		args := append([]string{"install", releaseName, chartDir, "--namespace", releaseNS,
			"--dry-run=client", "--kubeconfig", kc}, values...)
		_, notes, _ := strings.Cut(string(run(t, helm, args...)), "\nNOTES:\n")
		var commands int
		for _, line := range strings.Split(notes, "\n") {
			line = strings.TrimSpace(line)
			if !strings.HasPrefix(line, "kubectl ") {
				continue
			}
			commands++
			if !strings.HasPrefix(line, "kubectl -n ") {
				t.Errorf("NOTES (values %v): %q has no -n", values, line)
			}
		}
		if commands < 4 {
			t.Errorf("NOTES (values %v) show only %d kubectl commands", values, commands)
		}
	}
}

type chartMetadata struct {
	Version     string            `json:"version"`
	KubeVersion string            `json:"kubeVersion"`
	Annotations map[string]string `json:"annotations"`
}

func readChartMetadata(t *testing.T) chartMetadata {
	t.Helper()
	var c chartMetadata
	if err := yaml.Unmarshal(readFile(t, chartDir+"/Chart.yaml"), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestChartArtifactHubMetadata: the Artifact Hub annotations are valid and agree with the chart.
func TestChartArtifactHubMetadata(t *testing.T) {
	c := readChartMetadata(t)
	if c.Annotations["artifacthub.io/license"] != "Apache-2.0" {
		t.Errorf("artifacthub.io/license %q", c.Annotations["artifacthub.io/license"])
	}
	var images []struct{ Name, Image string }
	if err := yaml.Unmarshal([]byte(c.Annotations["artifacthub.io/images"]), &images); err != nil {
		t.Fatalf("artifacthub.io/images: %v", err)
	}
	managerImage, receiverImage := defaultImages(t)
	var got []string
	for _, i := range images {
		got = append(got, i.Image)
	}
	if !slices.Equal(got, []string{managerImage, receiverImage}) {
		t.Errorf("artifacthub.io/images %v, want the default images %v", got, []string{managerImage, receiverImage})
	}
	var crds []struct{ Kind, Version, Name string }
	if err := yaml.Unmarshal([]byte(c.Annotations["artifacthub.io/crds"]), &crds); err != nil || len(crds) != 1 ||
		crds[0].Kind != "SegmentWebhook" || crds[0].Version != segmentv1alpha1.GroupVersion.Version {
		t.Errorf("artifacthub.io/crds %+v (%v)", crds, err)
	}
	var examples []map[string]any
	if err := yaml.Unmarshal([]byte(c.Annotations["artifacthub.io/crdsExamples"]), &examples); err != nil || len(examples) != 1 {
		t.Fatalf("artifacthub.io/crdsExamples: %d examples, %v", len(examples), err)
	}
	example := &unstructured.Unstructured{Object: examples[0]}
	example.SetNamespace("artifacthub-example")
	ensureNamespace(t, example.GetNamespace(), nil)
	if err := k8sClient.Create(context.Background(), example, client.DryRunAll); err != nil {
		t.Errorf("the API server refuses the crdsExamples SegmentWebhook: %v", err)
	}
}

// celFeatureSince: the Kubernetes minor that first accepts each CEL feature a CRD can use
// (k8s.io/apiserver/pkg/cel/environment/base.go and the CRD API). CEL validation itself is on
// by default from 1.25.
var celFeatureSince = []struct {
	marker string // in the CRD YAML
	minor  int
}{
	{"x-kubernetes-validations", 25},
	{"messageExpression:", 27},
	{"reason: Field", 28}, {"fieldPath:", 28},
	{"quantity(", 28}, {".optMap(", 28}, {".orValue(", 28},
	{"sets.", 29}, {".lastIndexOf(", 29},
	{"optionalOldSelf", 30}, {"ip(", 30}, {"cidr(", 30},
	{".format(", 31}, {"isSemver(", 33},
}

// TestChartKubeVersionCoversCRD: Chart.yaml's kubeVersion is no lower than what the CRD's CEL
// rules need, so a too-old cluster is refused at install instead of at the first apply.
func TestChartKubeVersionCoversCRD(t *testing.T) {
	c := readChartMetadata(t)
	var minor int
	if _, err := fmt.Sscanf(c.KubeVersion, ">=1.%d.0-0", &minor); err != nil {
		t.Fatalf("Chart.yaml kubeVersion %q, want >=1.<minor>.0-0: %v", c.KubeVersion, err)
	}
	crd := string(readFile(t, "config/crd/bases/segment.webhook-operator.io_segmentwebhooks.yaml"))
	need := 0
	for _, f := range celFeatureSince {
		if strings.Contains(crd, f.marker) {
			need = max(need, f.minor)
		}
	}
	if need != minor {
		t.Errorf("the CRD needs Kubernetes 1.%d, Chart.yaml says %q: make them agree (and the README)", need, c.KubeVersion)
	}
	if !strings.Contains(string(readFile(t, "README.md")), "Kubernetes 1."+strconv.Itoa(minor)) {
		t.Errorf("README.md does not state the minimum, Kubernetes 1.%d", minor)
	}
}

// TestCRDIsNeverPruned: Helm, Flux and Argo CD are all told to keep the CRD, from the
// controller-gen markers, in both the kustomize and the chart copy.
func TestCRDIsNeverPruned(t *testing.T) {
	want := map[string]string{
		"helm.sh/resource-policy":           "keep",
		"kustomize.toolkit.fluxcd.io/prune": "disabled",
		"argocd.argoproj.io/sync-options":   "Prune=false,Delete=false",
	}
	for name, objs := range map[string][]*unstructured.Unstructured{
		"kustomize config/default": kustomizeBuild(t, "config/default"),
		"helm chart":               helmTemplate(t),
	} {
		crd := one(t, objs, "CustomResourceDefinition")
		got := crd.GetAnnotations()
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: CRD annotation %s=%q, want %q", name, k, got[k], v)
			}
		}
	}
}

// TestChartSchemaMatchesKubernetesAPI: the vendored io.k8s.* definitions in values.schema.json
// have exactly the fields of the API server's own schema, so no real field is refused and no
// made-up field is accepted.
func TestChartSchemaMatchesKubernetesAPI(t *testing.T) {
	var schema struct {
		Definitions map[string]struct {
			Type       any                        `json:"type"`
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"definitions"`
	}
	if err := json.Unmarshal(readFile(t, chartDir+"/values.schema.json"), &schema); err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(testEnv.Config)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := cs.Discovery().RESTClient().Get().AbsPath("/openapi/v2").SetHeader("Accept", "application/json").
		DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var api struct {
		Definitions map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"definitions"`
	}
	if err := json.Unmarshal(raw, &api); err != nil {
		t.Fatal(err)
	}
	var checked int
	for name, def := range schema.Definitions {
		if !strings.HasPrefix(name, "io.k8s.") || def.Type != "object" {
			continue // Quantity and IntOrString are scalars
		}
		real, ok := api.Definitions[name]
		if !ok {
			t.Errorf("%s is not a definition of the Kubernetes API", name)
			continue
		}
		checked++
		mine, theirs := slices.Sorted(maps.Keys(def.Properties)), slices.Sorted(maps.Keys(real.Properties))
		if !slices.Equal(mine, theirs) {
			t.Errorf("%s fields %v, the API server has %v", name, mine, theirs)
		}
	}
	if checked < 10 {
		t.Errorf("checked only %d vendored definitions", checked)
	}
	// The vendored definitions are what types these values.
	props := string(readFile(t, chartDir+"/values.schema.json"))
	for _, v := range []string{"resources", "securityContext", "podSecurityContext", "affinity"} {
		if !strings.Contains(props, `"`+v+`": {"$ref": "#/definitions/io.k8s.api.core.v1.`) {
			t.Errorf("values.schema.json does not type %s with a vendored Kubernetes definition", v)
		}
	}
}
