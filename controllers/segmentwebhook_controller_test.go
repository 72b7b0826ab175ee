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
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/net/http/httpguts"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

var namespaceCounter atomic.Int32

// newNamespace gives every spec its own namespace (envtest cannot delete namespaces).
func newNamespace(ctx context.Context) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: fmt.Sprintf("swh-test-%d-%d", GinkgoParallelProcess(), namespaceCounter.Add(1)),
	}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

func newSecret(ctx context.Context, ns, name string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: data}
	Expect(k8sClient.Create(ctx, s)).To(Succeed())
	return s
}

func sampleHost(ns string) string { return "segment." + ns + ".example.com" }

func sampleWebhook(ns string) *segmentv1alpha1.SegmentWebhook {
	return &segmentv1alpha1.SegmentWebhook{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "events"},
		Spec: segmentv1alpha1.SegmentWebhookSpec{
			SecretRefs: []segmentv1alpha1.SecretKeyRef{{Name: "segment", Key: "shared-secret"}},
			Targets: []segmentv1alpha1.Target{
				{
					Name: "warehouse",
					HTTP: &segmentv1alpha1.HTTPTarget{
						URL: "https://collector.example.com/segment",
						HeadersFrom: []segmentv1alpha1.HeaderFromSecret{{
							Name: "Authorization", SecretKeyRef: segmentv1alpha1.SecretKeyRef{Name: "collector", Key: "auth"},
						}},
					},
				},
				{
					Name:       "analytics",
					Optional:   true,
					DropFields: []string{"context.ip"},
					Filter:     &segmentv1alpha1.TargetFilter{EventTypes: []segmentv1alpha1.EventType{"track"}},
					HTTP: &segmentv1alpha1.HTTPTarget{
						URL: "http://analytics.tools.svc:8080/events", Format: segmentv1alpha1.HTTPFormatCloudEvents,
					},
				},
			},
			Ingress: &segmentv1alpha1.IngressSpec{
				// A host per namespace: hosts are owned cluster-wide, and specs share the API server.
				ClassName: ptr.To("nginx"), Host: sampleHost(ns), TLSSecretName: "segment-tls",
			},
		},
	}
}

// sampleWithSecrets makes a namespace holding the Secrets sampleWebhook references, and the
// sample (not yet created) in it.
func sampleWithSecrets(ctx context.Context) (string, *segmentv1alpha1.SegmentWebhook) {
	ns := newNamespace(ctx)
	newSecret(ctx, ns, "segment", map[string]string{"shared-secret": "s3cr3t"})
	newSecret(ctx, ns, "collector", map[string]string{"auth": "Bearer abc"})
	return ns, sampleWebhook(ns)
}

func key(obj client.Object) types.NamespacedName { return client.ObjectKeyFromObject(obj) }

func childKey(swh *segmentv1alpha1.SegmentWebhook) types.NamespacedName {
	return types.NamespacedName{Namespace: swh.Namespace, Name: ChildName(swh)}
}

// getChild waits for a child to exist and returns it.
func getChild[T any, P interface {
	*T
	client.Object
}](ctx context.Context, swh *segmentv1alpha1.SegmentWebhook) P {
	obj := P(new(T))
	Eventually(func() error { return k8sClient.Get(ctx, childKey(swh), obj) }).Should(Succeed())
	return obj
}

func expectGone(ctx context.Context, obj client.Object) {
	Eventually(func() bool {
		return apierrors.IsNotFound(k8sClient.Get(ctx, key(obj), obj))
	}).Should(BeTrue(), "%T %s should be deleted", obj, obj.GetName())
}

func readyCondition(ctx context.Context, swh *segmentv1alpha1.SegmentWebhook) func() *metav1.Condition {
	return func() *metav1.Condition {
		got := &segmentv1alpha1.SegmentWebhook{}
		if err := k8sClient.Get(ctx, key(swh), got); err != nil {
			return nil
		}
		return meta.FindStatusCondition(got.Status.Conditions, segmentv1alpha1.ConditionReady)
	}
}

func haveReason(status metav1.ConditionStatus, reason string) OmegaMatcher {
	return And(Not(BeNil()), HaveField("Status", status), HaveField("Reason", reason))
}

func podTemplateHash(ctx context.Context, swh *segmentv1alpha1.SegmentWebhook) func() string {
	return func() string {
		dep := &appsv1.Deployment{}
		if err := k8sClient.Get(ctx, childKey(swh), dep); err != nil {
			return ""
		}
		return dep.Spec.Template.Annotations[ConfigHashAnnotation]
	}
}

// update re-reads obj and applies change until the write does not conflict with the controller.
func update[T client.Object](ctx context.Context, obj T, change func(T)) {
	ExpectWithOffset(1, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8sClient.Get(ctx, key(obj), obj); err != nil {
			return err
		}
		change(obj)
		return k8sClient.Update(ctx, obj)
	})).To(Succeed())
}

func expectOwnedChild(obj client.Object, swh *segmentv1alpha1.SegmentWebhook) {
	ExpectWithOffset(1, obj.GetLabels()).To(HaveKeyWithValue(NameLabel, swh.Name))
	ExpectWithOffset(1, obj.GetLabels()).NotTo(HaveKey("app.kubernetes.io/instance"), "Argo CD tracks applications by this label")
	ExpectWithOffset(1, obj.GetLabels()).To(HaveKeyWithValue("app.kubernetes.io/managed-by", "segment-webhook-operator"))
	owner := metav1.GetControllerOf(obj)
	ExpectWithOffset(1, owner).NotTo(BeNil(), "%T has no controller owner", obj)
	ExpectWithOffset(1, owner.UID).To(Equal(swh.UID))
	ExpectWithOffset(1, owner.Kind).To(Equal("SegmentWebhook"))
	ExpectWithOffset(1, owner.BlockOwnerDeletion).To(HaveValue(BeTrue()))
}

// writesTo are the resources the operator writes: its children, its own status and Events.
var writesTo = []string{"configmaps", "deployments", "services", "ingresses", "horizontalpodautoscalers",
	"poddisruptionbudgets", "segmentwebhooks", "events", "httproutes", "networkpolicies"}

// apiServerWrites reads the API server's own request counter, so it counts every write the
// operator makes, by any client, and nothing is assumed.
func apiServerWrites(ctx context.Context) float64 {
	raw, err := clientset.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	Expect(err).NotTo(HaveOccurred())
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	Expect(err).NotTo(HaveOccurred())
	var total float64
	for _, m := range families["apiserver_request_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if slices.Contains([]string{"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"}, labels["verb"]) &&
			slices.Contains(writesTo, labels["resource"]) {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

// reconciles counts finished reconciles of the SegmentWebhook controller.
func reconciles() float64 {
	families, err := ctrlmetrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	var total float64
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == "segmentwebhook" {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}

// writesDuring counts the API writes while the controller finishes n more reconciles; the short
// resync period keeps reconciling every SegmentWebhook without any change.
func writesDuring(ctx context.Context, n float64) float64 {
	before, start := apiServerWrites(ctx), reconciles()
	EventuallyWithOffset(1, reconciles, time.Minute).Should(BeNumerically(">=", start+n))
	return apiServerWrites(ctx) - before
}

var _ = Describe("SegmentWebhook controller", func() {
	var (
		ctx context.Context
		ns  string
		swh *segmentv1alpha1.SegmentWebhook
	)

	BeforeEach(func() {
		ctx = context.Background()
		ns, swh = sampleWithSecrets(ctx)
	})

	It("creates every child with the right spec, labels and controller owner reference", func() {
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())

		cm := getChild[corev1.ConfigMap](ctx, swh)
		expectOwnedChild(cm, swh)
		rc, err := config.Parse([]byte(cm.Data[config.FileName]))
		Expect(err).NotTo(HaveOccurred(), "the operator must render a config the receiver accepts")
		Expect(rc.Path).To(Equal("/webhook"))
		Expect(rc.Authentication.Mode).To(Equal(config.AuthHMAC))
		Expect(rc.Authentication.SecretFiles).To(Equal([]string{"/etc/segment-webhook/secrets/segment/shared-secret"}))
		Expect(rc.Delivery.Budget.Duration).To(Equal(3 * time.Second))
		Expect(rc.Targets).To(HaveLen(2))
		Expect(rc.Targets[0].HTTP.HeaderFiles).To(HaveKeyWithValue("Authorization", "/etc/segment-webhook/secrets/collector/auth"))
		Expect(rc.Targets[1].Optional).To(BeTrue())
		Expect(rc.Targets[1].DropFields).To(Equal([]string{"context.ip"}))
		Expect(rc.Targets[1].HTTP.Format).To(Equal(config.FormatCloudEvents))
		Expect(cm.Data[config.FileName]).NotTo(ContainSubstring("s3cr3t"), "secret values never reach the ConfigMap")

		dep := getChild[appsv1.Deployment](ctx, swh)
		expectOwnedChild(dep, swh)
		Expect(dep.Spec.Replicas).To(HaveValue(Equal(int32(2))))
		pod := dep.Spec.Template.Spec
		Expect(pod.AutomountServiceAccountToken).To(HaveValue(BeFalse()))
		Expect(pod.SecurityContext.RunAsNonRoot).To(HaveValue(BeTrue()))
		Expect(pod.SecurityContext.SeccompProfile.Type).To(Equal(corev1.SeccompProfileTypeRuntimeDefault))
		Expect(pod.Containers).To(HaveLen(1))
		c := pod.Containers[0]
		Expect(c.Image).To(Equal(testReceiverImage))
		Expect(c.SecurityContext.AllowPrivilegeEscalation).To(HaveValue(BeFalse()))
		Expect(c.SecurityContext.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))
		Expect(c.SecurityContext.Capabilities.Drop).To(ConsistOf(corev1.Capability("ALL")))
		Expect(c.ReadinessProbe.HTTPGet.Path).To(Equal("/readyz"))
		Expect(c.LivenessProbe.HTTPGet.Path).To(Equal("/healthz"))
		Expect(c.Resources.Requests).To(HaveKey(corev1.ResourceCPU))
		Expect(dep.Spec.Template.Annotations).To(HaveKey(ConfigHashAnnotation))
		Expect(pod.Volumes).To(ContainElement(HaveField("Secret.SecretName", "segment")))
		Expect(pod.Volumes).To(ContainElement(HaveField("Secret.SecretName", "collector")))

		svc := getChild[corev1.Service](ctx, swh)
		expectOwnedChild(svc, swh)
		Expect(svc.Spec.Type).To(Equal(corev1.ServiceTypeClusterIP))
		Expect(svc.Spec.Ports).To(ConsistOf(HaveField("Port", int32(80))))
		Expect(svc.Spec.Selector).To(Equal(dep.Spec.Selector.MatchLabels))

		ing := getChild[networkingv1.Ingress](ctx, swh)
		expectOwnedChild(ing, swh)
		Expect(ing.Spec.IngressClassName).To(HaveValue(Equal("nginx")))
		Expect(ing.Spec.Rules[0].Host).To(Equal(sampleHost(swh.Namespace)))
		Expect(ing.Spec.Rules[0].HTTP.Paths[0].Path).To(Equal("/webhook"))
		Expect(ing.Spec.TLS[0].SecretName).To(Equal("segment-tls"))

		pdb := getChild[policyv1.PodDisruptionBudget](ctx, swh)
		expectOwnedChild(pdb, swh)

		Expect(apierrors.IsNotFound(k8sClient.Get(ctx, childKey(swh), &autoscalingv2.HorizontalPodAutoscaler{}))).
			To(BeTrue(), "no HPA without spec.autoscaling")

		Eventually(func(g Gomega) {
			got := &segmentv1alpha1.SegmentWebhook{}
			g.Expect(k8sClient.Get(ctx, key(swh), got)).To(Succeed())
			g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
			g.Expect(got.Status.URL).To(Equal("https://" + sampleHost(swh.Namespace) + "/webhook"))
			g.Expect(meta.FindStatusCondition(got.Status.Conditions, segmentv1alpha1.ConditionSecretsResolved)).
				To(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonSecretsResolved))
			g.Expect(meta.FindStatusCondition(got.Status.Conditions, segmentv1alpha1.ConditionReady)).
				To(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonDeploymentProgressing))
		}).Should(Succeed())
	})

	It("becomes Ready when the receiver Deployment is available", func() {
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		dep := getChild[appsv1.Deployment](ctx, swh)
		// No kube-controller-manager runs in envtest: report the rollout as it would.
		Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			Expect(k8sClient.Get(ctx, key(dep), dep)).To(Succeed())
			dep.Status = appsv1.DeploymentStatus{
				ObservedGeneration: dep.Generation, Replicas: 2, ReadyReplicas: 2, AvailableReplicas: 2, UpdatedReplicas: 2,
				Conditions: []appsv1.DeploymentCondition{{
					Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable",
					LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now(),
				}},
			}
			return k8sClient.Status().Update(ctx, dep)
		})).To(Succeed())
		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonReady))
		got := &segmentv1alpha1.SegmentWebhook{}
		Expect(k8sClient.Get(ctx, key(swh), got)).To(Succeed())
		Expect(got.Status.ReadyReplicas).To(Equal(int32(2)))
		Expect(got.Status.Replicas).To(Equal(int32(2)))
	})

	It("updates children when the spec changes", func() {
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		Eventually(podTemplateHash(ctx, swh)).ShouldNot(BeEmpty())
		hashBefore := podTemplateHash(ctx, swh)()

		update(ctx, swh, func(swh *segmentv1alpha1.SegmentWebhook) {
			swh.Spec.Targets[0].HTTP.URL = "https://collector.example.com/v2"
			swh.Spec.Replicas = ptr.To(int32(3))
			swh.Spec.Service.Type = corev1.ServiceTypeLoadBalancer
		})

		Eventually(func(g Gomega) {
			cm := &corev1.ConfigMap{}
			g.Expect(k8sClient.Get(ctx, childKey(swh), cm)).To(Succeed())
			g.Expect(cm.Data[config.FileName]).To(ContainSubstring("https://collector.example.com/v2"))
			dep := &appsv1.Deployment{}
			g.Expect(k8sClient.Get(ctx, childKey(swh), dep)).To(Succeed())
			g.Expect(dep.Spec.Replicas).To(HaveValue(Equal(int32(3))))
			svc := &corev1.Service{}
			g.Expect(k8sClient.Get(ctx, childKey(swh), svc)).To(Succeed())
			g.Expect(svc.Spec.Type).To(Equal(corev1.ServiceTypeLoadBalancer))
		}).Should(Succeed())
		Expect(podTemplateHash(ctx, swh)()).NotTo(Equal(hashBefore), "a config change rolls the pods")
	})

	It("makes zero writes when nothing changed", func() {
		initial := apiServerWrites(ctx)
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		getChild[policyv1.PodDisruptionBudget](ctx, swh)
		Expect(apiServerWrites(ctx)).To(BeNumerically(">=", initial+6), "the counter sees the SegmentWebhook and its children being written")
		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonDeploymentProgressing))

		// Objects of earlier specs may still be settling; wait for a quiet window first.
		Eventually(func() float64 { return writesDuring(ctx, 5) }, 2*time.Minute, time.Millisecond).Should(BeZero())

		start := reconciles()
		writes := writesDuring(ctx, 20)
		GinkgoWriter.Printf("no-op resync: %.0f reconciles, %.0f writes\n", reconciles()-start, writes)
		AddReportEntry("no-op resync writes", fmt.Sprintf("%.0f writes in %.0f reconciles", writes, reconciles()-start))
		Expect(writes).To(BeZero())
	})

	It("makes zero writes after a restart, when it remembers nothing it applied", func() {
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonDeploymentProgressing))
		Eventually(func() float64 { return writesDuring(ctx, 3) }, 2*time.Minute, time.Millisecond).Should(BeZero())

		// A new reconciler on the same cache starts, like a restarted manager, with no verified
		// children: it reads each from the API server and compares the fields it owns.
		restarted := NewSegmentWebhookReconciler(k8sManager, RenderOptions{ReceiverImage: testReceiverImage})
		restarted.gatewayAPI = true // envtest serves the Gateway API (checked in BeforeSuite)
		before := apiServerWrites(ctx)
		_, err := restarted.Reconcile(ctx, ctrl.Request{NamespacedName: key(swh)})
		Expect(err).NotTo(HaveOccurred())
		Expect(apiServerWrites(ctx)).To(Equal(before))
		verified := 0
		restarted.verified.m.Range(func(any, any) bool { verified++; return true })
		Expect(verified).To(Equal(5), "ConfigMap, Deployment, Service, Ingress and PodDisruptionBudget verified by reading them")
	})

	It("puts back a deleted or edited child", func() {
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		svc := getChild[corev1.Service](ctx, swh)
		Expect(k8sClient.Delete(ctx, svc)).To(Succeed())
		Eventually(func() types.UID {
			got := &corev1.Service{}
			if err := k8sClient.Get(ctx, childKey(swh), got); err != nil {
				return ""
			}
			return got.UID
		}).ShouldNot(Or(BeEmpty(), Equal(svc.UID)))

		update(ctx, getChild[appsv1.Deployment](ctx, swh), func(dep *appsv1.Deployment) {
			dep.Spec.Template.Spec.Containers[0].Image = "evil.example.com/receiver:latest"
			dep.Spec.Template.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem = ptr.To(false)
		})
		Eventually(func(g Gomega) {
			got := &appsv1.Deployment{}
			g.Expect(k8sClient.Get(ctx, childKey(swh), got)).To(Succeed())
			g.Expect(got.Spec.Template.Spec.Containers[0].Image).To(Equal(testReceiverImage))
			g.Expect(got.Spec.Template.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))
		}).Should(Succeed())

		cm := getChild[corev1.ConfigMap](ctx, swh)
		want := cm.Data[config.FileName]
		update(ctx, cm, func(cm *corev1.ConfigMap) { cm.Data[config.FileName] = "{}" })
		Eventually(func() string {
			got := &corev1.ConfigMap{}
			Expect(k8sClient.Get(ctx, childKey(swh), got)).To(Succeed())
			return got.Data[config.FileName]
		}).Should(Equal(want))
	})

	It("reports a missing Secret or key and recovers when it appears", func() {
		swh.Spec.SecretRefs = []segmentv1alpha1.SecretKeyRef{{Name: "later", Key: "shared-secret"}}
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonSecretNotFound))
		Expect(readyCondition(ctx, swh)().Message).To(ContainSubstring(`Secret "later" not found`))
		Expect(apierrors.IsNotFound(k8sClient.Get(ctx, childKey(swh), &appsv1.Deployment{}))).To(BeTrue(),
			"no receiver is started with a Secret that cannot be mounted")

		Eventually(func() []string {
			list, err := clientset.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
			Expect(err).NotTo(HaveOccurred())
			var reasons []string
			for _, e := range list.Items {
				reasons = append(reasons, e.Reason)
			}
			return reasons
		}).Should(ContainElement(segmentv1alpha1.ReasonSecretNotFound))

		later := newSecret(ctx, ns, "later", map[string]string{"other": "x"})
		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonSecretKeyNotFound))
		Expect(readyCondition(ctx, swh)().Message).To(ContainSubstring(`has no key "shared-secret"`))

		update(ctx, later, func(s *corev1.Secret) { s.Data["shared-secret"] = []byte("now") })
		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonDeploymentProgressing))
		getChild[appsv1.Deployment](ctx, swh)
	})

	It("keeps the pods when a referenced Secret value rotates, and rolls them when the config changes", func() {
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		Eventually(podTemplateHash(ctx, swh)).ShouldNot(BeEmpty())
		dep := getChild[appsv1.Deployment](ctx, swh)
		hash := podTemplateHash(ctx, swh)()

		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "segment"}}
		update(ctx, secret, func(s *corev1.Secret) { s.Data["shared-secret"] = []byte("rotated") })
		// The Secret watch reconciles the SegmentWebhook; wait until it has seen the new version.
		start := reconciles()
		Eventually(reconciles).Should(BeNumerically(">", start+1))
		got := &appsv1.Deployment{}
		Expect(k8sClient.Get(ctx, childKey(swh), got)).To(Succeed())
		Expect(got.Generation).To(Equal(dep.Generation), "a Secret rotation must not change the Deployment")
		Expect(podTemplateHash(ctx, swh)()).To(Equal(hash))

		update(ctx, swh, func(swh *segmentv1alpha1.SegmentWebhook) {
			swh.Spec.SecretRefs = append(swh.Spec.SecretRefs, segmentv1alpha1.SecretKeyRef{Name: "segment", Key: "next"})
		})
		update(ctx, secret, func(s *corev1.Secret) { s.Data["next"] = []byte("next") })
		Eventually(podTemplateHash(ctx, swh)).ShouldNot(Equal(hash), "a new secret file is a config change")
	})

	It("deletes the Ingress, HPA and PDB when their spec goes away", func() {
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		ing := getChild[networkingv1.Ingress](ctx, swh)
		pdb := getChild[policyv1.PodDisruptionBudget](ctx, swh)

		update(ctx, swh, func(swh *segmentv1alpha1.SegmentWebhook) {
			swh.Spec.Ingress = nil
			swh.Spec.Autoscaling = &segmentv1alpha1.Autoscaling{MinReplicas: 2, MaxReplicas: 6, TargetCPUUtilizationPercentage: 70}
		})
		expectGone(ctx, ing)
		hpa := getChild[autoscalingv2.HorizontalPodAutoscaler](ctx, swh)
		expectOwnedChild(hpa, swh)
		Expect(hpa.Spec.MaxReplicas).To(Equal(int32(6)))
		Expect(hpa.Spec.ScaleTargetRef.Name).To(Equal(ChildName(swh)))
		Eventually(func(g Gomega) {
			got := &segmentv1alpha1.SegmentWebhook{}
			g.Expect(k8sClient.Get(ctx, key(swh), got)).To(Succeed())
			g.Expect(got.Status.URL).To(BeEmpty(), "without an Ingress or LoadBalancer there is no public URL")
			g.Expect(got.Status.Address).To(HaveField("URL", "http://events-receiver."+ns+".svc/webhook"))
		}).Should(Succeed())

		update(ctx, swh, func(swh *segmentv1alpha1.SegmentWebhook) {
			swh.Spec.Autoscaling = nil
			swh.Spec.Replicas = ptr.To(int32(1))
		})
		expectGone(ctx, hpa)
		expectGone(ctx, pdb)
	})
})

var _ = Describe("SegmentWebhook validation", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace(ctx) })

	DescribeTable("the API server refuses a bad spec with a readable message",
		func(mutate func(*segmentv1alpha1.SegmentWebhookSpec), message string) {
			swh := sampleWebhook(ns)
			mutate(&swh.Spec)
			err := k8sClient.Create(ctx, swh)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "expected Invalid, got %v", err)
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("duplicate target names", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Targets[1].Name = s.Targets[0].Name
		}, "Duplicate value"),
		Entry("a target without a kind", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Targets[1].HTTP = nil
		}, "exactly one target kind (http, kafka or nats) must be set"),
		Entry("no targets", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Targets = nil
		}, "spec.targets: Required value"),
		Entry("a budget of 5s or more", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Delivery.Budget = &metav1.Duration{Duration: 5 * time.Second}
		}, "budget must be above 0s and below 5s"),
		Entry("a relative URL", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Targets[0].HTTP.URL = "/just/a/path"
		}, "url must be an absolute http or https URL"),
		Entry("a non-HTTP URL", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Targets[0].HTTP.URL = "ftp://files.example.com/x"
		}, "url must be an absolute http or https URL"),
		Entry("a URL with a user and password", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Targets[0].HTTP.URL = "https://user:pass@collector.example.com/x"
		}, "url must not carry credentials (user:password@): the receiver config is a plain ConfigMap; send them from a Secret with headersFrom"),
		Entry("a URL with a user only", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Targets[0].HTTP.URL = "http://token@collector.example.com"
		}, "url must not carry credentials"),
		Entry("zero replicas", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Replicas = ptr.To(int32(0))
		}, "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1"),
		Entry("too many replicas", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Replicas = ptr.To(int32(51))
		}, "should be less than or equal to 50"),
		Entry("replicas and autoscaling together", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Replicas = ptr.To(int32(2))
			s.Autoscaling = &segmentv1alpha1.Autoscaling{MinReplicas: 2, MaxReplicas: 4}
		}, "set either replicas or autoscaling, not both"),
		Entry("minReplicas above maxReplicas", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Autoscaling = &segmentv1alpha1.Autoscaling{MinReplicas: 5, MaxReplicas: 4}
		}, "minReplicas must not exceed maxReplicas"),
		Entry("HMAC without secrets", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.SecretRefs = nil
		}, "authentication mode HMAC needs at least one entry in secretRefs"),
		Entry("more than five secrets", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			for i := range 5 {
				s.SecretRefs = append(s.SecretRefs, segmentv1alpha1.SecretKeyRef{Name: "segment", Key: fmt.Sprintf("k%d", i)})
			}
		}, "must have at most 5 items"),
		Entry("Bearer without a token", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Authentication.Mode = segmentv1alpha1.AuthenticationBearer
			s.SecretRefs = nil
		}, "bearerTokenSecretRef is required with mode Bearer and not allowed otherwise"),
		Entry("secretRefs with mode None", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Authentication.Mode = segmentv1alpha1.AuthenticationNone
		}, "secretRefs are only used by authentication mode HMAC"),
		Entry("initialBackoff above maxBackoff", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Delivery.InitialBackoff = &metav1.Duration{Duration: 2 * time.Second}
			s.Delivery.MaxBackoff = &metav1.Duration{Duration: time.Second}
		}, "initialBackoff must not exceed maxBackoff"),
		Entry("an unknown event type", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Targets[1].Filter.EventTypes = []segmentv1alpha1.EventType{"purchase"}
		}, `Unsupported value: "purchase"`),
		Entry("a pod annotation that would unconfine AppArmor", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Pod.Annotations = map[string]string{"container.apparmor.security.beta.kubernetes.io/receiver": "unconfined"}
		}, "pod annotations may not set AppArmor or seccomp profiles"),
		Entry("a target name that is not a DNS label", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Targets[0].Name = "Not_A_Label"
		}, "spec.targets[0].name: Invalid value"),
		Entry("a header value with a line break", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Targets[0].HTTP.Headers = map[string]segmentv1alpha1.HTTPHeaderValue{"X-Shard": "2\n"}
		}, "header values must not hold control characters such as a line break"),
		Entry("a header name with a space", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Targets[0].HTTP.Headers = map[string]segmentv1alpha1.HTTPHeaderValue{"X Shard": "2"}
		}, "header names must be HTTP tokens (RFC 9110)"),
	)

	It("accepts every HTTP token as a header name, as the receiver does", func() {
		swh := sampleWebhook(ns)
		name := "X-!#$%&'*+.^_`|~-Shard9"
		swh.Spec.Targets[0].HTTP.Headers = map[string]segmentv1alpha1.HTTPHeaderValue{name: "2"}
		Expect(httpguts.ValidHeaderFieldName(name)).To(BeTrue(), "the receiver's check")
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
	})

	DescribeTable("the API server refuses a name its receiver Service could not have",
		func(name, message string) {
			swh := sampleWebhook(ns)
			swh.Name = name
			err := k8sClient.Create(ctx, swh)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "expected Invalid, got %v", err)
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("a name with a dot", "events.prod", "metadata.name must be a DNS-1035 label"),
		Entry("a name starting with a digit", "1events", "metadata.name must be a DNS-1035 label"),
		Entry("a name of 55 characters", "e"+strings.Repeat("x", 54), "metadata.name must be at most 54 characters"),
	)

	It("accepts an @ in a URL's path or query, where it is no credential", func() {
		swh := sampleWebhook(ns)
		swh.Spec.Targets[0].HTTP.URL = "https://collector.example.com/users/@me?by=ops@example.com"
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
	})

	It("accepts a name of 54 characters, whose Service name has 63", func() {
		swh := sampleWebhook(ns)
		swh.Name = "e" + strings.Repeat("x", 53)
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		Expect(ChildName(swh)).To(HaveLen(63))
	})

	It("accepts None only when set explicitly, and defaults to HMAC", func() {
		swh := sampleWebhook(ns)
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		Expect(swh.Spec.Authentication.Mode).To(Equal(segmentv1alpha1.AuthenticationHMAC))
		Expect(swh.Spec.Delivery.Budget.Duration).To(Equal(3 * time.Second))
		Expect(swh.Spec.Validation).To(Equal(segmentv1alpha1.ValidationStrict))
		Expect(swh.Spec.Ingress.Path).To(Equal("/webhook"))

		open := sampleWebhook(ns)
		open.Name = "open"
		open.Spec.SecretRefs = nil
		open.Spec.Authentication.Mode = segmentv1alpha1.AuthenticationNone
		Expect(k8sClient.Create(ctx, open)).To(Succeed())
	})

	It("has the short name swh and prints Ready, URL, Replicas, Age and the Ready message", func() {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Name: "segmentwebhooks.segment.webhook-operator.io"}, crd)).To(Succeed())
		Expect(crd.Spec.Names.ShortNames).To(ConsistOf("swh"))
		var columns []string
		for _, c := range crd.Spec.Versions[0].AdditionalPrinterColumns {
			columns = append(columns, c.Name)
		}
		Expect(columns).To(Equal([]string{"Ready", "URL", "Replicas", "Age", "Status"}))
	})
})
