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
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

var _ = Describe("Host ownership", func() {
	ctx := context.Background()

	getSWH := func(ctx context.Context, swh *segmentv1alpha1.SegmentWebhook) *segmentv1alpha1.SegmentWebhook {
		GinkgoHelper()
		got := &segmentv1alpha1.SegmentWebhook{}
		Expect(k8sClient.Get(ctx, key(swh), got)).To(Succeed())
		return got
	}

	statusURL := func(swh *segmentv1alpha1.SegmentWebhook) func() string {
		return func() string {
			got := &segmentv1alpha1.SegmentWebhook{}
			Expect(k8sClient.Get(ctx, key(swh), got)).To(Succeed())
			return got.Status.URL
		}
	}

	// ownerAndLater creates two SegmentWebhooks in two namespaces and returns them in claim
	// order: the first is granted its hosts before the second is created.
	ownerAndLater := func(a, b *segmentv1alpha1.SegmentWebhook) (owner, later *segmentv1alpha1.SegmentWebhook) {
		GinkgoHelper()
		Expect(k8sClient.Create(ctx, a)).To(Succeed())
		Eventually(conditionOf(ctx, a, segmentv1alpha1.ConditionHostsClaimed)).
			Should(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonHostsClaimed))
		Expect(k8sClient.Create(ctx, b)).To(Succeed())
		return a, b
	}

	It("keeps a host+path with the SegmentWebhook that claimed it first, across namespaces", func() {
		_, a := sampleWithSecrets(ctx)
		_, b := sampleWithSecrets(ctx)
		b.Spec.Ingress.Host = a.Spec.Ingress.Host
		owner, later := ownerAndLater(a, b)

		Eventually(readyCondition(ctx, later)).Should(And(
			haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonHostConflict),
			HaveField("Message", ContainSubstring(a.Spec.Ingress.Host+"/webhook is claimed by SegmentWebhook "+owner.Namespace+"/"+owner.Name))))
		Eventually(conditionOf(ctx, owner, segmentv1alpha1.ConditionHostsClaimed)).
			Should(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonHostsClaimed))
		getChild[networkingv1.Ingress](ctx, owner)
		Expect(apierrors.IsNotFound(k8sClient.Get(ctx, childKey(later), &networkingv1.Ingress{}))).To(BeTrue(),
			"the later SegmentWebhook must not get an Ingress for the host")
		url := "https://" + a.Spec.Ingress.Host + "/webhook"
		Expect(statusURL(later)()).To(BeEmpty(), "the later SegmentWebhook must not point Segment at the owner's receiver")
		Eventually(statusURL(owner)).Should(Equal(url))

		// When the owner goes, the waiting one takes the host over.
		Expect(k8sClient.Delete(ctx, owner)).To(Succeed())
		Eventually(conditionOf(ctx, later, segmentv1alpha1.ConditionHostsClaimed)).
			Should(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonHostsClaimed))
		getChild[networkingv1.Ingress](ctx, later)
		Eventually(statusURL(later)).Should(Equal(url))
	})

	It("counts an HTTPRoute hostname as a claim, and removes the later one's route", func() {
		_, a := sampleWithSecrets(ctx)
		_, b := sampleWithSecrets(ctx)
		b.Spec.Ingress = nil
		b.Spec.Gateway = gatewaySpec(b.Namespace)
		b.Spec.Gateway.Hostnames = append(b.Spec.Gateway.Hostnames, gatewayv1.PreciseHostname(a.Spec.Ingress.Host))
		owner, later := ownerAndLater(a, b)

		Eventually(conditionOf(ctx, later, segmentv1alpha1.ConditionHostsClaimed)).Should(And(
			haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonHostConflict),
			HaveField("Message", ContainSubstring(owner.Namespace+"/"+owner.Name))))
		Expect(apierrors.IsNotFound(k8sClient.Get(ctx, childKey(later), &networkingv1.Ingress{}))).To(BeTrue())
		Expect(apierrors.IsNotFound(k8sClient.Get(ctx, childKey(later), &gatewayv1.HTTPRoute{}))).To(BeTrue())
		Expect(statusURL(later)()).To(BeEmpty(), "no route, no public URL")
	})

	It("claims only hosts the Namespace's allowed-hosts annotation lists", func() {
		ns, swh := sampleWithSecrets(ctx)
		namespace := &corev1.Namespace{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Name: ns}, namespace)).To(Succeed())
		namespace.Annotations = map[string]string{AllowedHostsAnnotation: "*.allowed.example.com, exact.example.com"}
		Expect(k8sClient.Update(ctx, namespace)).To(Succeed())
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())

		Eventually(readyCondition(ctx, swh)).Should(And(
			haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonHostNotAllowed),
			HaveField("Message", ContainSubstring("not "+sampleHost(ns)))))
		Expect(apierrors.IsNotFound(k8sClient.Get(ctx, childKey(swh), &networkingv1.Ingress{}))).To(BeTrue())
		Expect(statusURL(swh)()).To(BeEmpty())

		update(ctx, swh, func(swh *segmentv1alpha1.SegmentWebhook) { swh.Spec.Ingress.Host = ns + ".allowed.example.com" })
		Eventually(conditionOf(ctx, swh, segmentv1alpha1.ConditionHostsClaimed)).
			Should(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonHostsClaimed))
		getChild[networkingv1.Ingress](ctx, swh)
		Eventually(statusURL(swh)).Should(Equal("https://" + ns + ".allowed.example.com/webhook"))
	})

	// Issue 20: a host once granted is never revoked because another team's object is older.
	It("keeps a granted host with its owner when an older SegmentWebhook claims it later, after drift, until the owner lets go", func() {
		nsB, b := sampleWithSecrets(ctx)
		_, a := sampleWithSecrets(ctx)
		host := a.Spec.Ingress.Host
		b.Name, a.Name = "events-b", "events-a"
		b.Spec.Ingress = nil
		// Team B's SegmentWebhook is the older object, without an Ingress.
		Expect(k8sClient.Create(ctx, b)).To(Succeed())
		Eventually(func() int64 {
			got := &segmentv1alpha1.SegmentWebhook{}
			Expect(k8sClient.Get(ctx, key(b), got)).To(Succeed())
			return got.Status.ObservedGeneration
		}).Should(Equal(int64(1)))
		// Creation timestamps have a resolution of a second: make B older beyond doubt.
		Eventually(func() bool { return time.Since(getSWH(ctx, b).CreationTimestamp.Time) > 1100*time.Millisecond }).Should(BeTrue())

		// Team A claims the host and gets its Ingress.
		Expect(k8sClient.Create(ctx, a)).To(Succeed())
		Eventually(conditionOf(ctx, a, segmentv1alpha1.ConditionHostsClaimed)).
			Should(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonHostsClaimed))
		ingressA := getChild[networkingv1.Ingress](ctx, a)
		Expect(getSWH(ctx, b).CreationTimestamp.Before(&getSWH(ctx, a).CreationTimestamp)).To(BeTrue())

		// Team B adds the same host: A keeps it.
		update(ctx, b, func(b *segmentv1alpha1.SegmentWebhook) {
			b.Spec.Ingress = &segmentv1alpha1.IngressSpec{Host: host, TLSSecretName: "segment-tls"}
		})
		Eventually(conditionOf(ctx, b, segmentv1alpha1.ConditionHostsClaimed)).Should(And(
			haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonHostConflict),
			HaveField("Message", ContainSubstring(host+"/webhook is claimed by SegmentWebhook "+a.Namespace+"/events-a"))))
		Expect(apierrors.IsNotFound(k8sClient.Get(ctx, childKey(b), &networkingv1.Ingress{}))).To(BeTrue(),
			"the newcomer must not get an Ingress for a granted host")
		Expect(conditionOf(ctx, a, segmentv1alpha1.ConditionHostsClaimed)()).
			To(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonHostsClaimed))
		Consistently(func() types.UID {
			ing := &networkingv1.Ingress{}
			if err := k8sClient.Get(ctx, childKey(a), ing); err != nil {
				return ""
			}
			return ing.UID
		}, 3*time.Second).Should(Equal(ingressA.UID), "the owner's Ingress must stay")
		Expect(statusURL(a)()).To(Equal("https://" + host + "/webhook"))
		Expect(statusURL(b)()).To(BeEmpty())

		// Drift: someone deletes A's Ingress. A gets it back; B still waits.
		Expect(k8sClient.Delete(ctx, ingressA)).To(Succeed())
		Eventually(func() types.UID {
			ing := &networkingv1.Ingress{}
			if err := k8sClient.Get(ctx, childKey(a), ing); err != nil {
				return ""
			}
			return ing.UID
		}).Should(And(Not(BeEmpty()), Not(Equal(ingressA.UID))), "the owner gets its Ingress back")
		Consistently(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, childKey(b), &networkingv1.Ingress{}))
		}, 2*time.Second).Should(BeTrue(), "the newcomer must not take the host over while the owner's Ingress is gone")
		Expect(conditionOf(ctx, b, segmentv1alpha1.ConditionHostsClaimed)()).
			To(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonHostConflict))

		// A lets go of the host: B gets it.
		update(ctx, a, func(a *segmentv1alpha1.SegmentWebhook) { a.Spec.Ingress.Host = "other." + host })
		Eventually(conditionOf(ctx, b, segmentv1alpha1.ConditionHostsClaimed)).
			Should(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonHostsClaimed))
		Eventually(func() string {
			ing := &networkingv1.Ingress{}
			if err := k8sClient.Get(ctx, childKey(b), ing); err != nil {
				return ""
			}
			return ing.Spec.Rules[0].Host
		}).Should(Equal(host))
		Eventually(statusURL(b)).Should(Equal("https://" + host + "/webhook"))
		Expect(nsB).NotTo(Equal(a.Namespace))
		// And A, which claims the host again, now waits for B.
		update(ctx, a, func(a *segmentv1alpha1.SegmentWebhook) { a.Spec.Ingress.Host = host })
		Eventually(conditionOf(ctx, a, segmentv1alpha1.ConditionHostsClaimed)).Should(And(
			haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonHostConflict),
			HaveField("Message", ContainSubstring(nsB+"/events-b"))))
		Expect(conditionOf(ctx, b, segmentv1alpha1.ConditionHostsClaimed)()).
			To(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonHostsClaimed))
	})

	It("lets two SegmentWebhooks share a host on different paths", func() {
		_, a := sampleWithSecrets(ctx)
		_, b := sampleWithSecrets(ctx)
		b.Spec.Ingress.Host = a.Spec.Ingress.Host
		b.Spec.Ingress.Path = "/growth"
		Expect(k8sClient.Create(ctx, a)).To(Succeed())
		Expect(k8sClient.Create(ctx, b)).To(Succeed())
		for _, swh := range []*segmentv1alpha1.SegmentWebhook{a, b} {
			Eventually(conditionOf(ctx, swh, segmentv1alpha1.ConditionHostsClaimed)).
				Should(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonHostsClaimed))
			getChild[networkingv1.Ingress](ctx, swh)
		}
	})
})

func TestPrecedes(t *testing.T) {
	const claim = "segment.example.com/webhook"
	at := func(sec int64) metav1.Time { return metav1.Unix(1_800_000_000+sec, 0) }
	grant := func(sec int64, usec int) *metav1.MicroTime {
		g := metav1.NewMicroTime(time.Unix(1_800_000_000+sec, int64(usec)*1000))
		return &g
	}
	swh := func(ns string, created metav1.Time, granted *metav1.MicroTime) *segmentv1alpha1.SegmentWebhook {
		s := &segmentv1alpha1.SegmentWebhook{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "events", CreationTimestamp: created}}
		if granted != nil {
			s.Status.HostClaims = []segmentv1alpha1.HostClaim{{Claim: claim, GrantedAt: *granted}}
		}
		return s
	}
	for _, tc := range []struct {
		name        string
		first, then *segmentv1alpha1.SegmentWebhook
	}{
		{"a granted claim before an older ungranted one", swh("team-a", at(100), grant(200, 0)), swh("team-b", at(0), nil)},
		{"the earlier grant, whatever the age", swh("team-b", at(100), grant(200, 1)), swh("team-a", at(0), grant(200, 2))},
		{"between ungranted claims, the older", swh("team-b", at(0), nil), swh("team-a", at(1), nil)},
		{"between ungranted claims of the same second, by namespace", swh("team-a", at(0), nil), swh("team-b", at(0), nil)},
		{"a grant of another claim does not count", swh("team-a", at(0), nil), swh("team-b", at(1), nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "a grant of another claim does not count" {
				tc.then.Status.HostClaims = []segmentv1alpha1.HostClaim{{Claim: "other.example.com/webhook", GrantedAt: *grant(0, 0)}}
			}
			if !precedes(tc.first, tc.then, claim) || precedes(tc.then, tc.first, claim) {
				t.Errorf("%s/%s should precede %s/%s", tc.first.Namespace, tc.first.Name, tc.then.Namespace, tc.then.Name)
			}
		})
	}
}
