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

package controllers

// Security properties checked without an API server: plain Go tests beside the envtest suite.

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// securitySample is the realistic, API-defaulted sample (a header from a Secret, an optional
// target, an Ingress) with a second shared secret, as during a rotation.
func securitySample() *segmentv1alpha1.SegmentWebhook {
	swh := defaultedWebhook()
	swh.Spec.SecretRefs = append(swh.Spec.SecretRefs, segmentv1alpha1.SecretKeyRef{Name: "segment", Key: "next-secret"})
	return swh
}

// withPodOverrides sets what a team may customize on the receiver pods.
func withPodOverrides(swh *segmentv1alpha1.SegmentWebhook) *segmentv1alpha1.SegmentWebhook {
	swh.Spec.Replicas = ptr.To(int32(3))
	swh.Spec.Image = "registry.example.com/segment/receiver:v1.2.3"
	swh.Spec.Resources = &corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
	}
	swh.Spec.Pod = segmentv1alpha1.PodOverrides{
		NodeSelector: map[string]string{"kubernetes.io/os": "linux", "node-pool": "ingest"},
		Tolerations: []corev1.Toleration{
			{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "ingest", Effect: corev1.TaintEffectNoSchedule},
			{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To(int64(30))},
		},
		Affinity: &corev1.Affinity{
			NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: "topology.kubernetes.io/zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"eu-west-1a", "eu-west-1b"},
				}}}},
			}},
			PodAntiAffinity: &corev1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
				Weight: 100,
				PodAffinityTerm: corev1.PodAffinityTerm{
					TopologyKey:   "kubernetes.io/hostname",
					LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/instance": "checkout"}},
				},
			}}},
		},
		PriorityClassName: "high-priority",
		Labels:            map[string]string{"team": "checkout", "cost-center": "1234", "sidecar.istio.io/inject": "false"},
		Annotations:       map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
	}
	return swh
}

func TestReceiverPodMeetsRestrictedPodSecurityStandard(t *testing.T) {
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, swh := range map[string]*segmentv1alpha1.SegmentWebhook{
		"defaults":      securitySample(),
		"pod overrides": withPodOverrides(securitySample()),
		"autoscaling": func() *segmentv1alpha1.SegmentWebhook {
			swh := withPodOverrides(securitySample())
			swh.Spec.Autoscaling = &segmentv1alpha1.Autoscaling{MinReplicas: 2, MaxReplicas: 6}
			return swh
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			dep := newDeployment(swh, RenderOptions{ReceiverImage: "ghcr.io/segment-webhook-operator/receiver:v0.1.0"}, "0123456789abcdef")
			podMeta := dep.Spec.Template.ObjectMeta
			podSpec := dep.Spec.Template.Spec
			// The latest policy version, and the oldest one still served, must both pass.
			for _, version := range []api.Version{api.LatestVersion(), api.MajorMinorVersion(1, 25)} {
				lv := api.LevelVersion{Level: api.LevelRestricted, Version: version}
				result := policy.AggregateCheckResults(evaluator.EvaluatePod(lv, &podMeta, &podSpec))
				if !result.Allowed {
					t.Errorf("restricted %s refuses the receiver pod: %s", version, result.ForbiddenDetail())
				}
			}
			if podSpec.AutomountServiceAccountToken == nil || *podSpec.AutomountServiceAccountToken {
				t.Error("the receiver pod must not mount a ServiceAccount token: it has no business with the API")
			}
			for _, c := range append(slices.Clone(podSpec.InitContainers), podSpec.Containers...) {
				for _, m := range c.VolumeMounts {
					if !m.ReadOnly {
						t.Errorf("container %s mounts %s writable", c.Name, m.MountPath)
					}
					if strings.HasPrefix(m.MountPath, "/var/run/secrets/kubernetes.io") {
						t.Errorf("container %s mounts a ServiceAccount path %s", c.Name, m.MountPath)
					}
				}
				if c.SecurityContext == nil || !ptr.Deref(c.SecurityContext.ReadOnlyRootFilesystem, false) {
					t.Errorf("container %s root filesystem is writable", c.Name)
				}
				if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
					t.Errorf("container %s has no resource requests", c.Name)
				}
			}
			for _, v := range podSpec.Volumes {
				if v.Projected != nil || v.HostPath != nil {
					t.Errorf("volume %s is %+v: only the ConfigMap and Secret volumes are expected", v.Name, v.VolumeSource)
				}
			}
			if podSpec.HostNetwork || podSpec.HostPID || podSpec.HostIPC {
				t.Error("the receiver pod shares a host namespace")
			}
			if swh.Spec.Pod.Labels != nil && podMeta.Labels["team"] != "checkout" {
				t.Error("user pod labels were dropped")
			}
		})
	}

	// The check really runs: a pod that breaks the standard is refused.
	dep := newDeployment(securitySample(), RenderOptions{ReceiverImage: "receiver:test"}, "x")
	bad := dep.Spec.Template.Spec.DeepCopy()
	bad.Containers[0].SecurityContext.AllowPrivilegeEscalation = ptr.To(true)
	lv := api.LevelVersion{Level: api.LevelRestricted, Version: api.LatestVersion()}
	if policy.AggregateCheckResults(evaluator.EvaluatePod(lv, &dep.Spec.Template.ObjectMeta, bad)).Allowed {
		t.Error("the evaluator allowed privilege escalation; the check is not effective")
	}
}

func TestManagerRBACIsLeastPrivilege(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var roles []rbacv1.ClusterRole
	for _, doc := range strings.Split(string(data), "\n---") {
		if strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(doc), "---")) == "" {
			continue
		}
		var role rbacv1.ClusterRole
		if err := yaml.UnmarshalStrict([]byte(doc), &role); err != nil {
			t.Fatalf("parsing role.yaml: %v", err)
		}
		roles = append(roles, role)
	}
	if len(roles) != 1 || roles[0].Kind != "ClusterRole" || roles[0].Name != "manager-role" {
		t.Fatalf("role.yaml should hold the ClusterRole manager-role, got %d documents", len(roles))
	}
	role := roles[0]
	if len(role.Rules) == 0 {
		t.Fatal("the manager role has no rules")
	}
	if role.AggregationRule != nil {
		t.Error("the manager role must not aggregate other roles")
	}
	writeVerbs := []string{"create", "update", "patch", "delete", "deletecollection"}
	var canReadSecrets bool
	for i, rule := range role.Rules {
		for field, values := range map[string][]string{
			"apiGroups": rule.APIGroups, "resources": rule.Resources, "verbs": rule.Verbs,
			"resourceNames": rule.ResourceNames, "nonResourceURLs": rule.NonResourceURLs,
		} {
			for _, v := range values {
				if strings.Contains(v, "*") {
					t.Errorf("rule %d: wildcard %q in %s", i, v, field)
				}
			}
		}
		if len(rule.NonResourceURLs) > 0 {
			t.Errorf("rule %d grants non-resource URLs %v", i, rule.NonResourceURLs)
		}
		for _, verb := range rule.Verbs {
			if slices.Contains([]string{"escalate", "bind", "impersonate"}, verb) {
				t.Errorf("rule %d grants %q", i, verb)
			}
		}
		for _, res := range rule.Resources {
			core := slices.Contains(rule.APIGroups, "")
			if core && (res == "secrets" || strings.HasPrefix(res, "secrets/")) {
				canReadSecrets = canReadSecrets || slices.Contains(rule.Verbs, "get")
				for _, verb := range rule.Verbs {
					if slices.Contains(writeVerbs, verb) {
						t.Errorf("rule %d lets the manager %s secrets: it only reads them", i, verb)
					}
				}
			}
			if slices.Contains([]string{"pods/exec", "pods/attach", "serviceaccounts/token", "nodes/proxy"}, res) {
				t.Errorf("rule %d grants %s", i, res)
			}
			if slices.Contains(rule.APIGroups, "rbac.authorization.k8s.io") {
				t.Errorf("rule %d grants RBAC resources", i)
			}
		}
	}
	if !canReadSecrets {
		t.Error("the manager should be able to get the Secrets it resolves")
	}
}
