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
	"context"
	"maps"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

var _ = Describe("A receiver Deployment from a release that selected by app.kubernetes.io/instance", func() {
	ctx := context.Background()

	It("keeps its immutable selector, and the Service and PDB keep selecting its pods", func() {
		// The earlier release's Deployment is owned by the SegmentWebhook; suspending it lets the
		// test put that Deployment in place before the operator looks.
		_, swh := sampleWithSecrets(ctx)
		swh.Spec.Suspend = true
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		legacy := map[string]string{"app.kubernetes.io/name": "segment-webhook-receiver", "app.kubernetes.io/instance": swh.Name}
		old := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: swh.Namespace, Name: ChildName(swh), Labels: maps.Clone(legacy)},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To(int32(2)),
				Selector: &metav1.LabelSelector{MatchLabels: legacy},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: maps.Clone(legacy)},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: receiverContainer, Image: "old"}}},
				},
			},
		}
		old.Labels["app.kubernetes.io/managed-by"] = "segment-webhook-operator" // in the operator's cache
		Expect(controllerutil.SetControllerReference(swh, old, k8sClient.Scheme())).To(Succeed())
		Expect(k8sClient.Create(ctx, old)).To(Succeed())
		// The operator writes the suspended generation's observedGeneration meanwhile.
		update(ctx, swh, func(swh *segmentv1alpha1.SegmentWebhook) { swh.Spec.Suspend = false })

		Eventually(func(g Gomega) {
			dep := &appsv1.Deployment{}
			g.Expect(k8sClient.Get(ctx, childKey(swh), dep)).To(Succeed())
			g.Expect(dep.Spec.Template.Spec.Containers[0].Image).To(Equal(testReceiverImage), "the operator took it over")
			g.Expect(dep.Spec.Selector.MatchLabels).To(Equal(legacy))
			for k, v := range legacy {
				g.Expect(dep.Spec.Template.Labels).To(HaveKeyWithValue(k, v))
			}
			g.Expect(dep.Spec.Template.Labels).To(HaveKeyWithValue(NameLabel, swh.Name))
			svc := &corev1.Service{}
			g.Expect(k8sClient.Get(ctx, childKey(swh), svc)).To(Succeed())
			g.Expect(svc.Spec.Selector).To(Equal(legacy))
			pdb := &policyv1.PodDisruptionBudget{}
			g.Expect(k8sClient.Get(ctx, childKey(swh), pdb)).To(Succeed())
			g.Expect(pdb.Spec.Selector.MatchLabels).To(Equal(legacy))
		}).Should(Succeed())
		Eventually(func() *metav1.Condition {
			got := &segmentv1alpha1.SegmentWebhook{}
			if err := k8sClient.Get(ctx, key(swh), got); err != nil {
				return nil
			}
			return meta.FindStatusCondition(got.Status.Conditions, segmentv1alpha1.ConditionReady)
		}).Should(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonDeploymentProgressing)) // applied; waiting for pods
	})
})
