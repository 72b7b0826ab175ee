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
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// stalledCondition reads the SegmentWebhook's Stalled condition.
func stalledCondition(ctx context.Context, swh *segmentv1alpha1.SegmentWebhook) func() *metav1.Condition {
	return func() *metav1.Condition {
		got := &segmentv1alpha1.SegmentWebhook{}
		if err := k8sClient.Get(ctx, key(swh), got); err != nil {
			return nil
		}
		return meta.FindStatusCondition(got.Status.Conditions, segmentv1alpha1.ConditionStalled)
	}
}

var _ = Describe("Exact apply", func() {
	var (
		ctx context.Context
		ns  string
		swh *segmentv1alpha1.SegmentWebhook
	)

	BeforeEach(func() {
		ctx = context.Background()
		ns, swh = sampleWithSecrets(ctx)
	})

	It("removes from the children every field the spec no longer sets", func() {
		swh.Spec.Ingress.Annotations = map[string]string{"cert-manager.io/cluster-issuer": "letsencrypt"}
		swh.Spec.Service.Annotations = map[string]string{"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}
		swh.Spec.Pod = segmentv1alpha1.PodOverrides{
			Labels:            map[string]string{"team": "data"},
			Annotations:       map[string]string{"example.com/owner": "data"},
			NodeSelector:      map[string]string{"pool": "ingest"},
			Tolerations:       []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "ingest", Effect: corev1.TaintEffectNoSchedule}},
			PriorityClassName: "high",
			Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}},
				}}},
			}},
		}
		swh.Spec.Resources = &corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("512Mi")},
		}
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		Eventually(func(g Gomega) {
			ing := &networkingv1.Ingress{}
			g.Expect(k8sClient.Get(ctx, childKey(swh), ing)).To(Succeed())
			g.Expect(ing.Spec.TLS).To(HaveLen(1))
			g.Expect(ing.Spec.IngressClassName).To(HaveValue(Equal("nginx")))
			g.Expect(ing.Annotations).To(HaveKey("cert-manager.io/cluster-issuer"))
			svc := &corev1.Service{}
			g.Expect(k8sClient.Get(ctx, childKey(swh), svc)).To(Succeed())
			g.Expect(svc.Annotations).To(HaveKey("service.beta.kubernetes.io/aws-load-balancer-internal"))
			dep := &appsv1.Deployment{}
			g.Expect(k8sClient.Get(ctx, childKey(swh), dep)).To(Succeed())
			pod := dep.Spec.Template
			g.Expect(pod.Labels).To(HaveKey("team"))
			g.Expect(pod.Annotations).To(HaveKey("example.com/owner"))
			g.Expect(pod.Spec.NodeSelector).NotTo(BeEmpty())
			g.Expect(pod.Spec.Tolerations).NotTo(BeEmpty())
			g.Expect(pod.Spec.Affinity).NotTo(BeNil())
			g.Expect(pod.Spec.PriorityClassName).To(Equal("high"))
			g.Expect(pod.Spec.Containers[0].Resources.Limits).To(HaveKey(corev1.ResourceCPU))
		}).Should(Succeed())

		update(ctx, swh, func(swh *segmentv1alpha1.SegmentWebhook) {
			swh.Spec.Ingress.TLSSecretName = ""
			swh.Spec.Ingress.ClassName = nil
			swh.Spec.Ingress.Annotations = nil
			swh.Spec.Service.Annotations = nil
			swh.Spec.Pod = segmentv1alpha1.PodOverrides{}
			swh.Spec.Resources = &corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
			}
		})
		Eventually(func(g Gomega) {
			ing := &networkingv1.Ingress{}
			g.Expect(k8sClient.Get(ctx, childKey(swh), ing)).To(Succeed())
			g.Expect(ing.Spec.TLS).To(BeEmpty(), "tlsSecretName removed")
			g.Expect(ing.Spec.IngressClassName).To(BeNil(), "className removed")
			g.Expect(ing.Annotations).NotTo(HaveKey("cert-manager.io/cluster-issuer"), "ingress annotations removed")
			svc := &corev1.Service{}
			g.Expect(k8sClient.Get(ctx, childKey(swh), svc)).To(Succeed())
			g.Expect(svc.Annotations).NotTo(HaveKey("service.beta.kubernetes.io/aws-load-balancer-internal"), "service annotations removed")
			dep := &appsv1.Deployment{}
			g.Expect(k8sClient.Get(ctx, childKey(swh), dep)).To(Succeed())
			pod := dep.Spec.Template
			g.Expect(pod.Labels).NotTo(HaveKey("team"), "pod labels removed")
			g.Expect(pod.Annotations).NotTo(HaveKey("example.com/owner"), "pod annotations removed")
			g.Expect(pod.Spec.NodeSelector).To(BeEmpty(), "nodeSelector removed")
			g.Expect(pod.Spec.Tolerations).To(BeEmpty(), "tolerations removed")
			g.Expect(pod.Spec.Affinity).To(BeNil(), "affinity removed")
			g.Expect(pod.Spec.PriorityClassName).To(BeEmpty(), "priorityClassName removed")
			g.Expect(pod.Spec.Containers[0].Resources.Limits).NotTo(HaveKey(corev1.ResourceCPU), "the CPU limit removed")
			g.Expect(pod.Spec.Containers[0].Resources.Limits).To(HaveKey(corev1.ResourceMemory))
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			got := &segmentv1alpha1.SegmentWebhook{}
			g.Expect(k8sClient.Get(ctx, key(swh), got)).To(Succeed())
			g.Expect(got.Status.URL).To(Equal("http://" + sampleHost(swh.Namespace) + "/webhook"))
		}).Should(Succeed())
	})

	It("makes no write when another field manager only adds a container, an annotation, a volume and an owner reference", func() {
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		getChild[appsv1.Deployment](ctx, swh)
		cm := getChild[corev1.ConfigMap](ctx, swh)
		Eventually(func() float64 { return writesDuring(ctx, 3) }, 2*time.Minute, time.Millisecond).Should(BeZero())

		// A sidecar injector's change, applied as its own field manager.
		injected := appsv1ac.Deployment(ChildName(swh), ns).
			WithAnnotations(map[string]string{"sidecar.example.com/injected": "true"}).
			WithOwnerReferences(metav1ac.OwnerReference().WithAPIVersion("v1").WithKind("ConfigMap").
				WithName(cm.Name).WithUID(cm.UID)).
			WithSpec(appsv1ac.DeploymentSpec().WithTemplate(corev1ac.PodTemplateSpec().
				WithSpec(corev1ac.PodSpec().
					WithContainers(corev1ac.Container().WithName("proxy").WithImage("example.com/proxy:1")).
					WithVolumes(corev1ac.Volume().WithName("proxy-certs").WithEmptyDir(corev1ac.EmptyDirVolumeSource())))))
		Expect(k8sClient.Apply(ctx, injected, client.FieldOwner("sidecar-injector"))).To(Succeed())
		dep := &appsv1.Deployment{}
		Expect(k8sClient.Get(ctx, childKey(swh), dep)).To(Succeed())
		Expect(dep.Spec.Template.Spec.Containers).To(HaveLen(2))

		start := reconciles()
		writes := writesDuring(ctx, 10)
		AddReportEntry("writes after another manager added fields", writes)
		Expect(writes).To(BeZero(), "%0.f operator writes in %.0f reconciles", writes, reconciles()-start)
		Expect(k8sClient.Get(ctx, childKey(swh), dep)).To(Succeed())
		Expect(dep.Spec.Template.Spec.Containers).To(HaveLen(2), "the injected container stays")
		Expect(dep.Spec.Template.Spec.Volumes).To(ContainElement(HaveField("Name", "proxy-certs")))
		Expect(dep.Annotations).To(HaveKey("sidecar.example.com/injected"))
		Expect(dep.OwnerReferences).To(HaveLen(2), "the other owner reference stays")
	})

	It("keeps the replica count through replicas -> autoscaling -> replicas", func() {
		swh.Spec.Replicas = ptr.To(int32(3))
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		replicas := func() int32 {
			dep := &appsv1.Deployment{}
			if err := k8sClient.Get(ctx, childKey(swh), dep); err != nil {
				return 0
			}
			return ptr.Deref(dep.Spec.Replicas, 0)
		}
		Eventually(replicas).Should(Equal(int32(3)))

		update(ctx, swh, func(swh *segmentv1alpha1.SegmentWebhook) {
			swh.Spec.Replicas = nil
			swh.Spec.Autoscaling = &segmentv1alpha1.Autoscaling{MinReplicas: 2, MaxReplicas: 6, TargetCPUUtilizationPercentage: 70}
		})
		getChild[autoscalingv2.HorizontalPodAutoscaler](ctx, swh)
		Eventually(func(g Gomega) {
			dep := &appsv1.Deployment{}
			g.Expect(k8sClient.Get(ctx, childKey(swh), dep)).To(Succeed())
			owned, err := ownedFields(dep)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(owned.(*appsv1.Deployment).Spec.Replicas).To(BeNil(), "the operator no longer owns spec.replicas")
		}).Should(Succeed())
		Expect(replicas()).To(Equal(int32(3)), "handing replicas to the HPA keeps the count")

		// The HPA scales through the scale subresource; an unrelated change applies the
		// Deployment again and must keep what the HPA set.
		dep := getChild[appsv1.Deployment](ctx, swh)
		scale := &autoscalingv1.Scale{Spec: autoscalingv1.ScaleSpec{Replicas: 5}}
		Expect(k8sClient.SubResource("scale").Update(ctx, dep, client.WithSubResourceBody(scale))).To(Succeed())
		hash := podTemplateHash(ctx, swh)()
		update(ctx, swh, func(swh *segmentv1alpha1.SegmentWebhook) {
			swh.Spec.Targets[0].HTTP.URL = "https://collector.example.com/v2"
		})
		Eventually(podTemplateHash(ctx, swh)).ShouldNot(Equal(hash))
		Expect(replicas()).To(Equal(int32(5)), "an apply while autoscaling keeps the HPA's count")

		update(ctx, swh, func(swh *segmentv1alpha1.SegmentWebhook) {
			swh.Spec.Autoscaling = nil
			swh.Spec.Replicas = ptr.To(int32(5))
		})
		expectGone(ctx, &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ChildName(swh)}})
		Eventually(func(g Gomega) {
			dep := &appsv1.Deployment{}
			g.Expect(k8sClient.Get(ctx, childKey(swh), dep)).To(Succeed())
			owned, err := ownedFields(dep)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(owned.(*appsv1.Deployment).Spec.Replicas).To(HaveValue(Equal(int32(5))), "the operator owns spec.replicas again")
		}).Should(Succeed())
		Expect(replicas()).To(Equal(int32(5)))
	})

	It("refuses to adopt a same-named Service it does not own and leaves it untouched", func() {
		foreign := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ChildName(swh), Labels: map[string]string{"app": "legacy"}},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": "legacy"},
				Ports:    []corev1.ServicePort{{Name: "web", Port: 8080, TargetPort: intstr.FromInt32(8080)}},
			},
		}
		Expect(k8sClient.Create(ctx, foreign)).To(Succeed())
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())

		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonChildConflict))
		Expect(readyCondition(ctx, swh)().Message).To(ContainSubstring(`Service "events-receiver" exists and is not owned by this SegmentWebhook`))
		Expect(stalledCondition(ctx, swh)()).To(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonChildConflict))

		writes := writesDuring(ctx, 5)
		Expect(writes).To(BeZero(), "a conflict is not retried in a hot loop")
		got := &corev1.Service{}
		Expect(k8sClient.Get(ctx, key(foreign), got)).To(Succeed())
		Expect(got.ResourceVersion).To(Equal(foreign.ResourceVersion), "the foreign Service is untouched")
		Expect(got.OwnerReferences).To(BeEmpty())
	})

	It("stalls with InvalidChild when the API server refuses a rendered child, and recovers when the spec is fixed", func() {
		// The CRD does not check pod label values; the Deployment's validation does.
		swh.Spec.Pod.Labels = map[string]string{"team": "growth & data"}
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())

		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonInvalidChild))
		Expect(readyCondition(ctx, swh)().Message).To(And(ContainSubstring(`Deployment.apps "events-receiver" is invalid`),
			ContainSubstring("growth & data")))
		Expect(stalledCondition(ctx, swh)()).To(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonInvalidChild))
		Expect(conditionOf(ctx, swh, segmentv1alpha1.ConditionReconciling)()).To(BeNil(), "only a spec change can fix it")
		Expect(kstatusOf(ctx, swh)()).To(Equal(status.FailedStatus))

		update(ctx, swh, func(swh *segmentv1alpha1.SegmentWebhook) { swh.Spec.Pod.Labels["team"] = "growth-data" })
		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonDeploymentProgressing))
		Expect(stalledCondition(ctx, swh)()).To(BeNil())
	})

	It("reports and retries a transient child error before a ChildConflict beside it", func() {
		foreign := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ChildName(swh)},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 8080}}},
		}
		Expect(k8sClient.Create(ctx, foreign)).To(Succeed())
		// An admission policy refuses the receiver ConfigMap with 403 Forbidden, an error the
		// operator cannot classify: transient, retried with backoff.
		policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "freeze-configmaps-" + ns},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
				MatchConstraints: &admissionregistrationv1.MatchResources{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}},
					ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
						Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
					}}},
				},
				Validations: []admissionregistrationv1.Validation{{
					Expression: "object.metadata.name != '" + ChildName(swh) + "'",
					Message:    "ConfigMaps are frozen for maintenance",
					Reason:     ptr.To(metav1.StatusReasonForbidden),
				}},
			},
		}
		binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
			ObjectMeta: metav1.ObjectMeta{Name: policy.Name},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName: policy.Name, ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			},
		}
		Expect(k8sClient.Create(ctx, policy)).To(Succeed())
		Expect(k8sClient.Create(ctx, binding)).To(Succeed())
		DeferCleanup(func() {
			Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, binding))).To(Succeed())
			Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, policy))).To(Succeed())
		})
		Eventually(func() error {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ChildName(swh)}}
			return k8sClient.Create(ctx, cm, client.DryRunAll)
		}).Should(Satisfy(apierrors.IsForbidden), "the policy is in force")

		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		Eventually(readyCondition(ctx, swh)).Should(And(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonReconcileFailed),
			HaveField("Message", ContainSubstring("ConfigMaps are frozen for maintenance"))))
		Expect(conditionOf(ctx, swh, segmentv1alpha1.ConditionReconciling)()).To(
			haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonProgressingWithRetry))
		Expect(stalledCondition(ctx, swh)()).To(BeNil(), "a conflict beside a transient error must not stop its retries")

		// The retry, with backoff, finds the ConfigMap allowed again: the conflict is what is left.
		Expect(k8sClient.Delete(ctx, binding)).To(Succeed())
		Eventually(stalledCondition(ctx, swh)).Should(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonChildConflict))
		getChild[corev1.ConfigMap](ctx, swh)
	})
})
