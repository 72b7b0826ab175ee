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
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// gatewaySpec attaches to the platform's shared Gateway in another namespace.
func gatewaySpec(ns string) *segmentv1alpha1.GatewaySpec {
	return &segmentv1alpha1.GatewaySpec{
		ParentRefs: []gatewayv1.ParentReference{{
			Name: "public", Namespace: ptr.To(gatewayv1.Namespace("gateway-system")), SectionName: ptr.To(gatewayv1.SectionName("https")),
		}},
		Hostnames: []gatewayv1.PreciseHostname{gatewayv1.PreciseHostname(sampleHost(ns))},
	}
}

// setRouteAccepted answers for the Gateway, as its controller would (none runs in envtest).
func setRouteAccepted(ctx context.Context, swh *segmentv1alpha1.SegmentWebhook, status metav1.ConditionStatus, reason, message string) {
	GinkgoHelper()
	route := getChild[gatewayv1.HTTPRoute](ctx, swh)
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		Expect(k8sClient.Get(ctx, key(route), route)).To(Succeed())
		route.Status.Parents = []gatewayv1.RouteParentStatus{{
			ParentRef:      route.Spec.ParentRefs[0],
			ControllerName: "example.com/gateway-controller",
			Conditions: []metav1.Condition{{
				Type: string(gatewayv1.RouteConditionAccepted), Status: status, Reason: reason, Message: message,
				ObservedGeneration: route.Generation, LastTransitionTime: metav1.Now(),
			}},
		}}
		return k8sClient.Status().Update(ctx, route)
	})).To(Succeed())
}

func conditionOf(ctx context.Context, swh *segmentv1alpha1.SegmentWebhook, t string) func() *metav1.Condition {
	return func() *metav1.Condition {
		got := &segmentv1alpha1.SegmentWebhook{}
		if err := k8sClient.Get(ctx, key(swh), got); err != nil {
			return nil
		}
		return meta.FindStatusCondition(got.Status.Conditions, t)
	}
}

var _ = Describe("A SegmentWebhook exposed through Gateway API", func() {
	var (
		ctx = context.Background()
		swh *segmentv1alpha1.SegmentWebhook
	)
	BeforeEach(func() {
		_, swh = sampleWithSecrets(ctx)
		swh.Spec.Ingress = nil
		swh.Spec.Gateway = gatewaySpec(swh.Namespace)
	})

	It("renders an HTTPRoute to the receiver Service and reports its URL", func() {
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		route := getChild[gatewayv1.HTTPRoute](ctx, swh)
		expectOwnedChild(route, swh)
		Expect(route.Spec.ParentRefs).To(HaveLen(1))
		Expect(route.Spec.ParentRefs[0].Name).To(Equal(gatewayv1.ObjectName("public")))
		Expect(route.Spec.Hostnames).To(Equal([]gatewayv1.Hostname{gatewayv1.Hostname(sampleHost(swh.Namespace))}))
		Expect(route.Spec.Rules).To(HaveLen(1))
		match := route.Spec.Rules[0].Matches[0].Path
		Expect(*match.Type).To(Equal(gatewayv1.PathMatchExact))
		Expect(*match.Value).To(Equal("/webhook"))
		backend := route.Spec.Rules[0].BackendRefs[0]
		Expect(string(backend.Name)).To(Equal(ChildName(swh)))
		Expect(*backend.Port).To(Equal(gatewayv1.PortNumber(80)))
		Expect(apierrors.IsNotFound(k8sClient.Get(ctx, childKey(swh), &networkingv1.Ingress{}))).To(BeTrue(), "no Ingress with a gateway")

		Eventually(func() string {
			got := &segmentv1alpha1.SegmentWebhook{}
			Expect(k8sClient.Get(ctx, key(swh), got)).To(Succeed())
			return got.Status.URL
		}).Should(Equal("https://" + sampleHost(swh.Namespace) + "/webhook"))
		Eventually(conditionOf(ctx, swh, segmentv1alpha1.ConditionRouteAccepted)).
			Should(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonRoutePending))
	})

	It("reflects whether the Gateway accepted the route in RouteAccepted and Ready", func() {
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		// The receiver is up, so Ready depends on the route alone.
		setDeploymentAvailable(ctx, swh)
		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonRoutePending))

		setRouteAccepted(ctx, swh, metav1.ConditionFalse, string(gatewayv1.RouteReasonNotAllowedByListeners), "namespace not allowed")
		Eventually(readyCondition(ctx, swh)).Should(And(
			haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonRouteNotAccepted),
			HaveField("Message", ContainSubstring("gateway-system/public (https)")),
			HaveField("Message", ContainSubstring("namespace not allowed"))))

		setRouteAccepted(ctx, swh, metav1.ConditionTrue, string(gatewayv1.RouteReasonAccepted), "")
		Eventually(conditionOf(ctx, swh, segmentv1alpha1.ConditionRouteAccepted)).
			Should(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonRouteAccepted))
		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonReady))
	})

	It("deletes the HTTPRoute when the gateway is replaced by an Ingress", func() {
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		route := getChild[gatewayv1.HTTPRoute](ctx, swh)
		update(ctx, swh, func(swh *segmentv1alpha1.SegmentWebhook) {
			swh.Spec.Gateway = nil
			swh.Spec.Ingress = &segmentv1alpha1.IngressSpec{Host: sampleHost(swh.Namespace)}
		})
		expectGone(ctx, route)
		getChild[networkingv1.Ingress](ctx, swh)
		Eventually(conditionOf(ctx, swh, segmentv1alpha1.ConditionRouteAccepted)).Should(BeNil())
	})

	It("makes zero writes when nothing changed, HTTPRoute and NetworkPolicy included", func() {
		swh.Spec.NetworkPolicy = &segmentv1alpha1.NetworkPolicySpec{TrafficNamespaces: []string{"gateway-system"}}
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		getChild[gatewayv1.HTTPRoute](ctx, swh)
		getChild[networkingv1.NetworkPolicy](ctx, swh)
		setRouteAccepted(ctx, swh, metav1.ConditionTrue, string(gatewayv1.RouteReasonAccepted), "")
		Eventually(conditionOf(ctx, swh, segmentv1alpha1.ConditionRouteAccepted)).
			Should(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonRouteAccepted))

		writesDuring := func(n float64) float64 {
			before, start := apiServerWrites(ctx), reconciles()
			Eventually(reconciles, time.Minute).Should(BeNumerically(">=", start+n))
			return apiServerWrites(ctx) - before
		}
		Eventually(func() float64 { return writesDuring(5) }, 2*time.Minute, time.Millisecond).Should(BeZero())
		Expect(writesDuring(20)).To(BeZero())
	})

	It("refuses both an ingress and a gateway", func() {
		swh.Spec.Ingress = &segmentv1alpha1.IngressSpec{Host: "segment.example.com"}
		err := k8sClient.Create(ctx, swh)
		Expect(err).To(MatchError(ContainSubstring("set either ingress or gateway, not both")))
	})
})
