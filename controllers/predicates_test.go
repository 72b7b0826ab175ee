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
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

func TestChildChangedIgnoresStatusNoise(t *testing.T) {
	swh := defaultedWebhook()
	dep := newDeployment(swh, RenderOptions{ReceiverImage: "img"}, "h")
	dep.Generation, dep.Status.ObservedGeneration = 1, 1
	dep.Status.Replicas, dep.Status.UpdatedReplicas, dep.Status.AvailableReplicas, dep.Status.ReadyReplicas = 2, 2, 2, 2
	swh.Spec.Autoscaling = &segmentv1alpha1.Autoscaling{MinReplicas: 2, MaxReplicas: 6, TargetCPUUtilizationPercentage: 75}
	hpa := newHorizontalPodAutoscaler(swh)
	hpa.Generation = 1
	pdb := newPodDisruptionBudget(swh)
	svc := newService(swh)
	cm := newConfigMap(swh, []byte("{}"))
	cm.ResourceVersion = "7"

	cases := []struct {
		name   string
		old    client.Object
		change func(client.Object)
		want   bool
	}{
		{"HPA metrics", hpa, func(o client.Object) {
			o.(*autoscalingv2.HorizontalPodAutoscaler).Status.CurrentReplicas = 3
		}, false},
		// Before Kubernetes 1.37 (HPAGeneration) an HPA's spec edit keeps its generation.
		{"HPA maxReplicas edited", hpa, func(o client.Object) {
			o.(*autoscalingv2.HorizontalPodAutoscaler).Spec.MaxReplicas = 20
		}, true},
		{"PDB counts", pdb, func(o client.Object) { o.(*policyv1.PodDisruptionBudget).Status.CurrentHealthy = 1 }, false},
		{"Deployment status without a rollout change", dep, func(o client.Object) {
			o.(*appsv1.Deployment).Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue}}
		}, false},
		{"Deployment replica becomes unavailable", dep, func(o client.Object) { o.(*appsv1.Deployment).Status.AvailableReplicas = 1 }, true},
		{"Deployment ready replicas", dep, func(o client.Object) { o.(*appsv1.Deployment).Status.ReadyReplicas = 1 }, true},
		{"Deployment spec edited", dep, func(o client.Object) { o.SetGeneration(2) }, true},
		{"an annotation added", pdb, func(o client.Object) { o.SetAnnotations(map[string]string{"a": "b"}) }, true},
		{"LoadBalancer address", svc, func(o client.Object) {
			o.(*corev1.Service).Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.7"}}
		}, true},
		{"Service spec", svc, func(o client.Object) { o.(*corev1.Service).Spec.Type = corev1.ServiceTypeNodePort }, true},
		{"resync", pdb, func(client.Object) {}, false},
		// The cache holds ConfigMaps without their data: a new version is a change.
		{"ConfigMap edited", cm, func(o client.Object) { o.SetResourceVersion("8") }, true},
		{"ConfigMap resync", cm, func(client.Object) {}, false},
	}
	for _, c := range cases {
		updated := c.old.DeepCopyObject().(client.Object)
		c.change(updated)
		if got := childChanged.Update(event.UpdateEvent{ObjectOld: c.old, ObjectNew: updated}); got != c.want {
			t.Errorf("%s: childChanged = %v, want %v", c.name, got, c.want)
		}
	}
	if childChanged.Create(event.CreateEvent{Object: dep}) {
		t.Error("the operator creates its children itself; their creation must not reconcile again")
	}
	if !childChanged.Delete(event.DeleteEvent{Object: dep}) {
		t.Error("a deleted child must be put back")
	}
}

func TestCacheDropsWhatIsNotRead(t *testing.T) {
	swh := defaultedWebhook()
	dep := newDeployment(swh, RenderOptions{ReceiverImage: "img"}, "h")
	dep.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: FieldOwner}}
	dep.Spec.Replicas = ptr.To(int32(3))
	dep.Status.AvailableReplicas = 2
	cm := newConfigMap(swh, []byte("{}"))
	if _, err := dropUnread(dep); err != nil {
		t.Fatal(err)
	}
	if _, err := dropUnread(cm); err != nil {
		t.Fatal(err)
	}
	if dep.ManagedFields != nil || len(dep.Spec.Template.Spec.Containers) != 0 || cm.Data != nil {
		t.Errorf("kept what the operator does not read from the cache: managedFields %v, containers %d, data %v",
			dep.ManagedFields, len(dep.Spec.Template.Spec.Containers), cm.Data)
	}
	if dep.Spec.Selector == nil || ptr.Deref(dep.Spec.Replicas, 0) != 3 || dep.Status.AvailableReplicas != 2 || dep.Labels == nil {
		t.Errorf("dropped what the operator reads: selector %v, replicas %v, status %+v, labels %v",
			dep.Spec.Selector, dep.Spec.Replicas, dep.Status, dep.Labels)
	}
}

func TestRolloutOf(t *testing.T) {
	base := func() *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Generation: 2},
			Spec:       appsv1.DeploymentSpec{Replicas: ptr.To(int32(2))},
			Status:     appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2, ReadyReplicas: 2},
		}
	}
	cases := []struct {
		name   string
		change func(*appsv1.Deployment)
		want   rollout
	}{
		{"complete", func(*appsv1.Deployment) {}, rolloutComplete},
		{"new generation not observed", func(d *appsv1.Deployment) { d.Status.ObservedGeneration = 1 }, rolloutProgressing},
		{"replicas not updated", func(d *appsv1.Deployment) { d.Status.UpdatedReplicas = 1 }, rolloutProgressing},
		{"old replicas terminating", func(d *appsv1.Deployment) { d.Status.Replicas = 3 }, rolloutProgressing},
		{"updated replicas not available", func(d *appsv1.Deployment) { d.Status.AvailableReplicas = 1 }, rolloutProgressing},
		{"progress deadline exceeded", func(d *appsv1.Deployment) {
			d.Status.UpdatedReplicas = 1
			d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded"}}
		}, rolloutStalled},
	}
	for _, c := range cases {
		d := base()
		c.change(d)
		if got, msg := rolloutOf(d); got != c.want {
			t.Errorf("%s: rollout = %v (%s), want %v", c.name, got, msg, c.want)
		}
	}
}
