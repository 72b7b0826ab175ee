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
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

var _ = Describe("Batches, signatures and the dead-letter target", func() {
	var (
		ctx context.Context
		ns  string
		swh *segmentv1alpha1.SegmentWebhook
	)

	BeforeEach(func() {
		ctx = context.Background()
		ns, swh = sampleWithSecrets(ctx)
	})

	It("defaults to Segment's limits and renders batch, concurrency, signature and the dead-letter target", func() {
		newSecret(ctx, ns, "dlq", map[string]string{"token": "Bearer dlq"})
		swh.Spec.Targets[0].HTTP.Batch = &segmentv1alpha1.HTTPBatch{}
		swh.Spec.DeadLetter = &segmentv1alpha1.DeadLetterTarget{HTTP: &segmentv1alpha1.HTTPTarget{
			URL:         "https://dlq.example.com/in",
			HeadersFrom: []segmentv1alpha1.HeaderFromSecret{{Name: "Authorization", SecretKeyRef: *ref("dlq", "token")}},
		}}
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		Expect(swh.Spec.Limits.MaxEvents).To(Equal(int32(config.MaxEventsLimit)))
		Expect(swh.Spec.Limits.MaxBodyBytes).To(Equal(int64(config.DefaultMaxBodyBytes)))
		Expect(swh.Spec.Authentication.Signature).To(Equal(segmentv1alpha1.SignatureAny))
		Expect(swh.Spec.Targets[0].HTTP.Concurrency).To(Equal(int32(config.DefaultHTTPConcurrency)))
		Expect(*swh.Spec.Targets[0].HTTP.Batch).To(Equal(segmentv1alpha1.HTTPBatch{
			MaxEvents: config.DefaultBatchMaxEvents, MaxBytes: config.DefaultBatchMaxBytes}))

		cm := getChild[corev1.ConfigMap](ctx, swh)
		rc, err := config.Parse([]byte(cm.Data[config.FileName]))
		Expect(err).NotTo(HaveOccurred(), "the operator must render a config the receiver accepts")
		Expect(rc.Limits.MaxEvents).To(Equal(config.MaxEventsLimit))
		Expect(rc.Authentication.Signature).To(Equal(config.SignatureAny))
		Expect(rc.Targets[0].HTTP.Batch).To(Equal(&config.HTTPBatch{MaxEvents: config.DefaultBatchMaxEvents, MaxBytes: config.DefaultBatchMaxBytes}))
		Expect(rc.DeadLetter).NotTo(BeNil())
		Expect(rc.DeadLetter.HTTP.URL).To(Equal("https://dlq.example.com/in"))
		Expect(rc.DeadLetter.HTTP.HeaderFiles).To(HaveKeyWithValue("Authorization", "/etc/segment-webhook/secrets/dlq/token"))
	})

	DescribeTable("the API server refuses a bad batch, signature, window or dead-letter target",
		func(mutate func(s *segmentv1alpha1.SegmentWebhookSpec), message string) {
			mutate(&swh.Spec)
			err := k8sClient.Create(ctx, swh)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "expected Invalid, got %v", err)
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("batch with CloudEvents", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Targets[0].HTTP.Format = segmentv1alpha1.HTTPFormatCloudEvents
			s.Targets[0].HTTP.Batch = &segmentv1alpha1.HTTPBatch{}
		}, "batch needs format segment"),
		Entry("a batch above Segment's largest", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Targets[0].HTTP.Batch = &segmentv1alpha1.HTTPBatch{MaxEvents: 4001}
		}, "should be less than or equal to 4000"),
		Entry("concurrency 0 is not a default", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Targets[0].HTTP.Concurrency = -1
		}, "should be greater than or equal to 1"),
		Entry("an unknown signature mode", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Authentication.Signature = "FirstElement"
		}, `Unsupported value: "FirstElement"`),
		Entry("a dedupe window of 0", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Delivery.DedupeWindow = &metav1.Duration{Duration: 0}
		}, "dedupeWindow must be above 0s and at most 48h"),
		Entry("a dedupe window over 48h", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Delivery.DedupeWindow = &metav1.Duration{Duration: 49 * time.Hour}
		}, "dedupeWindow must be above 0s and at most 48h"),
		Entry("a dead-letter target without a kind", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.DeadLetter = &segmentv1alpha1.DeadLetterTarget{}
		}, "exactly one dead-letter target kind (http, kafka or nats) must be set"),
		Entry("a dead-letter target with two kinds", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.DeadLetter = &segmentv1alpha1.DeadLetterTarget{HTTP: &segmentv1alpha1.HTTPTarget{URL: "http://dlq/"}, NATS: natsTarget().NATS}
		}, "exactly one dead-letter target kind (http, kafka or nats) must be set"),
		Entry("a dead-letter URL that is not absolute", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.DeadLetter = &segmentv1alpha1.DeadLetterTarget{HTTP: &segmentv1alpha1.HTTPTarget{URL: "/dlq"}}
		}, "url must be an absolute http or https URL"),
		Entry("a dead-letter URL with credentials", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.DeadLetter = &segmentv1alpha1.DeadLetterTarget{HTTP: &segmentv1alpha1.HTTPTarget{URL: "https://dlq:s3cr3t@dlq.example.com/in"}}
		}, "url must not carry credentials"),
		Entry("a target named like the dead-letter target", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Targets[0].Name = config.DeadLetterName
			s.DeadLetter = &segmentv1alpha1.DeadLetterTarget{HTTP: &segmentv1alpha1.HTTPTarget{URL: "http://dlq/"}}
		}, "a target may not be named dead-letter when spec.deadLetter is set"),
	)
})
