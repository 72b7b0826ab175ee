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

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// Issue 20: with signature Any, one captured signed request is a lasting credential to inject
// events; the status says so, without making the receiver look not Ready.
var _ = Describe("Signature coverage", func() {
	ctx := context.Background()

	current := func(swh *segmentv1alpha1.SegmentWebhook) *segmentv1alpha1.SegmentWebhook {
		GinkgoHelper()
		got := &segmentv1alpha1.SegmentWebhook{}
		Expect(k8sClient.Get(ctx, key(swh), got)).To(Succeed())
		return got
	}

	It("reports FirstElementOnly while HMAC runs with signature Any, apart from Ready, and FullBody once chosen", func() {
		_, swh := sampleWithSecrets(ctx) // HMAC, signature defaulted to Any
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		Eventually(conditionOf(ctx, swh, segmentv1alpha1.ConditionSignatureCoverage)).Should(And(
			haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonFirstElementOnly),
			HaveField("Message", ContainSubstring("X-Segment-Signature"))))

		setDeploymentAvailable(ctx, swh)
		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonReady))
		Expect(conditionOf(ctx, swh, segmentv1alpha1.ConditionSignatureCoverage)()).
			To(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonFirstElementOnly))
		status, message := argoHealth(current(swh))
		Expect(status).To(Equal("Healthy"), message)
		isCurrent, failed := fluxHealth(current(swh))
		Expect(isCurrent).To(BeTrue())
		Expect(failed).To(BeFalse())

		update(ctx, swh, func(s *segmentv1alpha1.SegmentWebhook) {
			s.Spec.Authentication.Signature = segmentv1alpha1.SignatureFullBody
		})
		Eventually(conditionOf(ctx, swh, segmentv1alpha1.ConditionSignatureCoverage)).
			Should(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonFullBody))
	})

	It("has no signature coverage without HMAC", func() {
		ns, swh := sampleWithSecrets(ctx)
		newSecret(ctx, ns, "token", map[string]string{"token": "t0ken"})
		swh.Spec.SecretRefs = nil
		swh.Spec.Authentication = segmentv1alpha1.Authentication{Mode: segmentv1alpha1.AuthenticationBearer,
			BearerTokenSecretRef: &segmentv1alpha1.SecretKeyRef{Name: "token", Key: "token"}}
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		Eventually(func() int64 { return current(swh).Status.ObservedGeneration }).Should(Equal(int64(1)))
		Expect(conditionOf(ctx, swh, segmentv1alpha1.ConditionSignatureCoverage)()).To(BeNil())
	})
})
