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

import (
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// Rendering is pure: these tests need no API server. The spec below is what the API server
// returns after defaulting, so it is what the reconciler really renders from.
func defaultedWebhook() *segmentv1alpha1.SegmentWebhook {
	swh := sampleWebhook("team-a")
	swh.Spec.Authentication.Mode = segmentv1alpha1.AuthenticationHMAC
	swh.Spec.Authentication.Signature = segmentv1alpha1.SignatureAny
	swh.Spec.Validation = segmentv1alpha1.ValidationStrict
	swh.Spec.Delivery = segmentv1alpha1.Delivery{
		Budget:         &metav1.Duration{Duration: 3 * time.Second},
		MaxAttempts:    5,
		InitialBackoff: &metav1.Duration{Duration: 100 * time.Millisecond},
		MaxBackoff:     &metav1.Duration{Duration: time.Second},
		DedupeWindow:   &metav1.Duration{Duration: 4*time.Hour + 15*time.Minute},
	}
	swh.Spec.Limits = segmentv1alpha1.Limits{MaxEvents: 4000, MaxBodyBytes: 16 << 20}
	swh.Spec.Service = segmentv1alpha1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Port: 80}
	swh.Spec.Ingress.Path = "/webhook"
	for i := range swh.Spec.Targets {
		h := swh.Spec.Targets[i].HTTP
		h.Method = "POST"
		h.Concurrency = 128
		if h.Format == "" {
			h.Format = segmentv1alpha1.HTTPFormatSegment
		}
	}
	return swh
}

func TestReceiverConfigIsValidAndNamesOnlyFiles(t *testing.T) {
	swh := defaultedWebhook()
	swh.Spec.Authentication = segmentv1alpha1.Authentication{Mode: segmentv1alpha1.AuthenticationHMAC}
	swh.Spec.SecretRefs = append(swh.Spec.SecretRefs, segmentv1alpha1.SecretKeyRef{Name: "segment", Key: "next"})
	cfg := newReceiverConfig(swh)
	if err := cfg.Validate(); err != nil {
		t.Fatalf("rendered config is invalid: %v", err)
	}
	want := []string{
		"/etc/segment-webhook/secrets/segment/shared-secret",
		"/etc/segment-webhook/secrets/segment/next",
	}
	if !reflect.DeepEqual(cfg.Authentication.SecretFiles, want) {
		t.Errorf("secret files = %v, want %v", cfg.Authentication.SecretFiles, want)
	}
	if cfg.Source != "segment-webhook-operator/team-a/events" {
		t.Errorf("source = %q", cfg.Source)
	}
	if got := cfg.Targets[1].Filter.EventTypes; !reflect.DeepEqual(got, []string{"track"}) {
		t.Errorf("filter = %v", got)
	}
}

func TestReceiverConfigDefaultsWhatTheSpecLeavesOut(t *testing.T) {
	swh := sampleWebhook("team-a") // not defaulted by an API server
	cfg := newReceiverConfig(swh)
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config from an undefaulted spec is invalid: %v", err)
	}
	if cfg.Delivery.Budget.Duration != config.DefaultBudget {
		t.Errorf("budget = %s, want %s", cfg.Delivery.Budget, config.DefaultBudget)
	}
}

// The issue-9 fields reach the receiver config: signature mode, per-target concurrency and batch,
// and the dead-letter target with its Secret files.
func TestReceiverConfigRendersBatchSignatureAndDeadLetter(t *testing.T) {
	swh := defaultedWebhook()
	swh.Spec.Authentication.Signature = segmentv1alpha1.SignatureFullBody
	swh.Spec.Targets[0].HTTP.Concurrency = 32
	swh.Spec.Targets[0].HTTP.Batch = &segmentv1alpha1.HTTPBatch{MaxEvents: 100, MaxBytes: 1 << 20}
	swh.Spec.DeadLetter = &segmentv1alpha1.DeadLetterTarget{HTTP: &segmentv1alpha1.HTTPTarget{
		URL: "https://dlq.example/in", Method: "POST", Format: segmentv1alpha1.HTTPFormatCloudEvents, Concurrency: 8,
		Headers:     map[string]segmentv1alpha1.HTTPHeaderValue{"X-Team": "checkout"},
		HeadersFrom: []segmentv1alpha1.HeaderFromSecret{{Name: "Authorization", SecretKeyRef: segmentv1alpha1.SecretKeyRef{Name: "dlq", Key: "token"}}},
	}}
	cfg := newReceiverConfig(swh)
	if err := cfg.Validate(); err != nil {
		t.Fatalf("rendered config is invalid: %v", err)
	}
	h := cfg.Targets[0].HTTP
	if cfg.Authentication.Signature != config.SignatureFullBody || h.Concurrency != 32 ||
		h.Batch == nil || h.Batch.MaxEvents != 100 || h.Batch.MaxBytes != 1<<20 {
		t.Fatalf("rendered %+v, batch %+v, auth %+v", h, h.Batch, cfg.Authentication)
	}
	dl := cfg.DeadLetter
	if dl == nil || dl.Name != config.DeadLetterName || dl.HTTP == nil || dl.HTTP.Format != config.FormatCloudEvents ||
		dl.HTTP.HeaderFiles["Authorization"] != "/etc/segment-webhook/secrets/dlq/token" || dl.HTTP.Headers["X-Team"] != "checkout" {
		t.Fatalf("dead-letter target rendered as %+v", dl)
	}
	if !slices.Contains(swh.Spec.SecretNames(), "dlq") {
		t.Fatal("the dead-letter target's Secret is not mounted or watched")
	}
	swh.Spec.Authentication = segmentv1alpha1.Authentication{Mode: segmentv1alpha1.AuthenticationNone, Signature: segmentv1alpha1.SignatureAny}
	swh.Spec.SecretRefs = nil
	if cfg := newReceiverConfig(swh); cfg.Authentication.Signature != "" || cfg.Validate() != nil {
		t.Fatalf("signature rendered for mode None: %+v", cfg.Authentication)
	}
}

// GOMEMLIMIT follows the container's memory limit through the downward API; under that bound
// GOGC is raised.
func TestDeploymentSetsGOMEMLIMITFromTheMemoryLimit(t *testing.T) {
	swh := defaultedWebhook()
	c := newDeployment(swh, RenderOptions{ReceiverImage: "receiver:dev"}, "hash").Spec.Template.Spec.Containers[0]
	if len(c.Env) != 2 || c.Env[1] != (corev1.EnvVar{Name: "GOGC", Value: "200"}) {
		t.Fatalf("env %+v, want GOMEMLIMIT and GOGC=200", c.Env)
	}
	if c.Env[0].Name != "GOMEMLIMIT" || c.Env[0].ValueFrom == nil ||
		c.Env[0].ValueFrom.ResourceFieldRef.Resource != "limits.memory" ||
		c.Env[0].ValueFrom.ResourceFieldRef.ContainerName != c.Name ||
		!c.Env[0].ValueFrom.ResourceFieldRef.Divisor.Equal(resource.MustParse("1")) {
		t.Fatalf("env %+v", c.Env)
	}
	swh.Spec.Resources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}}
	if env := newDeployment(swh, RenderOptions{ReceiverImage: "receiver:dev"}, "hash").Spec.Template.Spec.Containers[0].Env; env != nil {
		t.Fatalf("GOMEMLIMIT or GOGC set without a memory limit: %+v", env)
	}
}

func TestConfigHashFollowsOnlyTheConfig(t *testing.T) {
	base := configHash([]byte(`{"a":1}`))
	if configHash([]byte(`{"a":2}`)) == base {
		t.Error("a config change must change the hash")
	}
	if configHash([]byte(`{"a":1}`)) != base {
		t.Error("hash is not deterministic")
	}
}

func TestDeploymentMountsOnlyReferencedKeys(t *testing.T) {
	swh := defaultedWebhook()
	dep := newDeployment(swh, RenderOptions{ReceiverImage: "img"}, "hash")
	var secretVolumes []corev1.Volume
	for _, v := range dep.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			secretVolumes = append(secretVolumes, v)
		}
	}
	if len(secretVolumes) != 2 {
		t.Fatalf("secret volumes = %d, want 2 (segment, collector)", len(secretVolumes))
	}
	for _, v := range secretVolumes {
		if len(v.Secret.Items) != 1 {
			t.Errorf("volume %s mounts %d keys, want only the referenced one", v.Name, len(v.Secret.Items))
		}
	}
	mounts := dep.Spec.Template.Spec.Containers[0].VolumeMounts
	for _, m := range mounts {
		if !m.ReadOnly {
			t.Errorf("mount %s is writable", m.Name)
		}
	}
	if got := dep.Spec.Template.Annotations[ConfigHashAnnotation]; got != "hash" {
		t.Errorf("config hash annotation = %q", got)
	}
}

func TestDeploymentOverrides(t *testing.T) {
	swh := defaultedWebhook()
	swh.Spec.Image = "mirror.example.com/receiver:v1"
	swh.Spec.Resources = &corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m")},
	}
	swh.Spec.Pod = segmentv1alpha1.PodOverrides{
		NodeSelector:      map[string]string{"pool": "edge"},
		Tolerations:       []corev1.Toleration{{Key: "edge", Operator: corev1.TolerationOpExists}},
		PriorityClassName: "high",
		Labels:            map[string]string{"team": "growth", NameLabel: "hijack"},
		Annotations:       map[string]string{"example.com/x": "y"},
	}
	dep := newDeployment(swh, RenderOptions{ReceiverImage: "default"}, "h")
	pod := dep.Spec.Template
	if img := pod.Spec.Containers[0].Image; img != "mirror.example.com/receiver:v1" {
		t.Errorf("image = %q", img)
	}
	if cpu := pod.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU]; cpu.String() != "200m" {
		t.Errorf("cpu request = %s", cpu.String())
	}
	if pod.Spec.NodeSelector["pool"] != "edge" || pod.Spec.PriorityClassName != "high" || len(pod.Spec.Tolerations) != 1 {
		t.Errorf("scheduling overrides not applied: %+v", pod.Spec)
	}
	if pod.Labels["team"] != "growth" || pod.Labels[NameLabel] != "events" {
		t.Errorf("pod labels = %v: extra labels must not replace the selector labels", pod.Labels)
	}
	if pod.Annotations["example.com/x"] != "y" || pod.Annotations[ConfigHashAnnotation] != "h" {
		t.Errorf("pod annotations = %v", pod.Annotations)
	}
}

func TestOptionalChildren(t *testing.T) {
	swh := defaultedWebhook()
	if newIngress(swh) == nil || newPodDisruptionBudget(swh) == nil {
		t.Fatal("ingress and PDB expected for the sample (ingress set, 2 replicas by default)")
	}
	if newHorizontalPodAutoscaler(swh) != nil {
		t.Error("no HPA without autoscaling")
	}
	if d := newDeployment(swh, RenderOptions{}, ""); ptr.Deref(d.Spec.Replicas, 0) != 2 {
		t.Errorf("replicas = %v, want the default 2", d.Spec.Replicas)
	}

	swh.Spec.Ingress = nil
	swh.Spec.Replicas = ptr.To(int32(1))
	if newIngress(swh) != nil || newPodDisruptionBudget(swh) != nil {
		t.Error("no ingress without spec.ingress, no PDB with a single replica")
	}

	swh.Spec.Replicas = nil
	swh.Spec.Autoscaling = &segmentv1alpha1.Autoscaling{MinReplicas: 3, MaxReplicas: 9, TargetCPUUtilizationPercentage: 60}
	hpa := newHorizontalPodAutoscaler(swh)
	if hpa == nil || hpa.Spec.MaxReplicas != 9 || *hpa.Spec.MinReplicas != 3 {
		t.Fatalf("hpa = %+v", hpa)
	}
	if d := newDeployment(swh, RenderOptions{}, ""); d.Spec.Replicas != nil {
		t.Error("the Deployment must leave replicas to the HPA")
	}
	if newPodDisruptionBudget(swh) == nil {
		t.Error("PDB expected when autoscaling keeps at least 3 replicas")
	}
}

func TestURLs(t *testing.T) {
	swh := defaultedWebhook()
	if got := publicURL(swh, true, nil); got != "https://segment.team-a.example.com/webhook" {
		t.Errorf("ingress with TLS: %s", got)
	}
	swh.Spec.Ingress.TLSSecretName = ""
	swh.Spec.Ingress.Path = "/segment"
	if got := publicURL(swh, true, nil); got != "http://segment.team-a.example.com/segment" {
		t.Errorf("ingress without TLS: %s", got)
	}
	if got := publicURL(swh, false, nil); got != "" {
		t.Errorf("an Ingress removed because its host is another's has no public URL, got %s", got)
	}
	if newReceiverConfig(swh).Path != "/segment" {
		t.Error("the receiver must serve the Ingress path")
	}
	swh.Spec.Ingress = nil
	swh.Spec.Service.Port = 8080
	svc := newService(swh)
	if got := publicURL(swh, false, svc); got != "" {
		t.Errorf("a ClusterIP Service has no public URL, got %s", got)
	}
	if got := inClusterURL(swh); got != "http://events-receiver.team-a.svc:8080/webhook" {
		t.Errorf("in-cluster: %s", got)
	}
	svc.Spec.Type = corev1.ServiceTypeLoadBalancer
	if got := publicURL(swh, false, svc); got != "" {
		t.Errorf("a LoadBalancer without an address has no public URL yet, got %s", got)
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.7"}}
	if got := publicURL(swh, false, svc); got != "http://203.0.113.7:8080/webhook" {
		t.Errorf("LoadBalancer IP: %s", got)
	}
	swh.Spec.Service.Port = 80
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{Hostname: "lb.example.com"}}
	if got := publicURL(swh, false, svc); got != "http://lb.example.com/webhook" {
		t.Errorf("LoadBalancer hostname: %s", got)
	}
}

// An ingress-nginx class gets a body limit equal to the receiver's: its default (1m) would answer
// Segment's larger batches 413, which Segment does not retry. A limit set in the spec wins, and
// other classes get none.
func TestIngressNginxBodySize(t *testing.T) {
	swh := defaultedWebhook()
	swh.Spec.Ingress.ClassName = ptr.To("nginx")
	swh.Spec.Ingress.Annotations = map[string]string{"cert-manager.io/cluster-issuer": "letsencrypt"}
	ing := newIngress(swh)
	if got := ing.Annotations[nginxBodySizeAnnotation]; got != strconv.Itoa(config.DefaultMaxBodyBytes) {
		t.Errorf("default limits: %s = %q, want %d", nginxBodySizeAnnotation, got, config.DefaultMaxBodyBytes)
	}
	if ing.Annotations["cert-manager.io/cluster-issuer"] != "letsencrypt" || len(swh.Spec.Ingress.Annotations) != 1 {
		t.Errorf("the spec's annotations are kept and not changed: %v, spec %v", ing.Annotations, swh.Spec.Ingress.Annotations)
	}

	swh.Spec.Limits.MaxBodyBytes = 4 << 20
	if got := newIngress(swh).Annotations[nginxBodySizeAnnotation]; got != "4194304" {
		t.Errorf("maxBodyBytes 4 MiB: %q", got)
	}
	swh.Spec.Ingress.Annotations[nginxBodySizeAnnotation] = "8m"
	if got := newIngress(swh).Annotations[nginxBodySizeAnnotation]; got != "8m" {
		t.Errorf("the spec's own limit: %q, want 8m", got)
	}
	swh.Spec.Ingress.ClassName = ptr.To("alb")
	delete(swh.Spec.Ingress.Annotations, nginxBodySizeAnnotation)
	if _, set := newIngress(swh).Annotations[nginxBodySizeAnnotation]; set {
		t.Error("an ALB Ingress got an ingress-nginx annotation")
	}
}
