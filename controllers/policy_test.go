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
	"errors"
	"strings"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// testAllowedImages is the suite manager's --allowed-receiver-images.
var testAllowedImages = []string{"example.com/segment-webhook-receiver:", "registry.example.com/approved/*:v*"}

// Issue 20: the editor role may set spec.image and scheduling overrides; the platform team can
// restrict both.
func TestPolicy(t *testing.T) {
	restricted := Policy{AllowedReceiverImages: testAllowedImages, DenySchedulingOverrides: true}
	for _, tc := range []struct {
		name   string
		policy Policy
		mutate func(*segmentv1alpha1.SegmentWebhookSpec)
		reason string // "" when allowed
	}{
		{"the operator's own image", restricted, func(*segmentv1alpha1.SegmentWebhookSpec) {}, ""},
		{"an image under an allowed prefix", restricted, func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Image = "example.com/segment-webhook-receiver:v2"
		}, ""},
		{"an image matching an allowed glob", restricted, func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Image = "registry.example.com/approved/receiver:v1.2"
		}, ""},
		{"an image elsewhere", restricted, func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Image = "evil.example.com/miner:latest"
		}, segmentv1alpha1.ReasonImageNotAllowed},
		{"a glob's * does not cross a /", restricted, func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Image = "registry.example.com/approved/x/miner:v1"
		}, segmentv1alpha1.ReasonImageNotAllowed},
		{"a prefix without its separator", restricted, func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Image = "example.com/segment-webhook-receiver-evil:v1"
		}, segmentv1alpha1.ReasonImageNotAllowed},
		{"any image without a list", Policy{}, func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Image = "evil.example.com/miner:latest"
		}, ""},
		{"tolerations", restricted, func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Pod.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
		}, segmentv1alpha1.ReasonSchedulingNotAllowed},
		{"a node selector", restricted, func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Pod.NodeSelector = map[string]string{"node-role.kubernetes.io/control-plane": ""}
		}, segmentv1alpha1.ReasonSchedulingNotAllowed},
		{"affinity", restricted, func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Pod.Affinity = &corev1.Affinity{}
		}, segmentv1alpha1.ReasonSchedulingNotAllowed},
		{"a priority class", restricted, func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Pod.PriorityClassName = "system-cluster-critical"
		}, segmentv1alpha1.ReasonSchedulingNotAllowed},
		{"pod labels and annotations are no scheduling override", restricted, func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Pod.Labels = map[string]string{"team": "growth"}
			s.Pod.Annotations = map[string]string{"example.com/owner": "growth"}
		}, ""},
		{"scheduling overrides by default", Policy{}, func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.Pod.PriorityClassName = "system-cluster-critical"
			s.Pod.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			swh := sampleWebhook("team")
			tc.mutate(&swh.Spec)
			err := tc.policy.check(swh)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			nr, ok := errors.AsType[*notReadyError](err)
			if !ok || nr.reason != tc.reason || !nr.stalled {
				t.Fatalf("error %v, want a stalled %s", err, tc.reason)
			}
			if tc.reason == segmentv1alpha1.ReasonImageNotAllowed && !strings.Contains(nr.msg, swh.Spec.Image) {
				t.Errorf("message %q does not name the image", nr.msg)
			}
		})
	}
}

var _ = Describe("The receiver image allow-list", func() {
	ctx := context.Background()

	It("stalls a SegmentWebhook whose image is not allowed, before it reaches a Deployment, and runs it once allowed", func() {
		_, swh := sampleWithSecrets(ctx)
		swh.Spec.Image = "evil.example.com/miner:latest"
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		Eventually(readyCondition(ctx, swh)).Should(And(
			haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonImageNotAllowed),
			HaveField("Message", ContainSubstring("evil.example.com/miner:latest"))))
		Expect(stalledCondition(ctx, swh)()).To(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonImageNotAllowed))
		Consistently(func() error {
			return k8sClient.Get(ctx, childKey(swh), &appsv1.Deployment{})
		}, "2s").ShouldNot(Succeed(), "no receiver runs the image")

		update(ctx, swh, func(s *segmentv1alpha1.SegmentWebhook) { s.Spec.Image = "registry.example.com/approved/receiver:v2" })
		Eventually(func() string {
			dep := &appsv1.Deployment{}
			if err := k8sClient.Get(ctx, childKey(swh), dep); err != nil {
				return ""
			}
			return dep.Spec.Template.Spec.Containers[0].Image
		}).Should(Equal("registry.example.com/approved/receiver:v2"))
		Eventually(stalledCondition(ctx, swh)).Should(BeNil())
	})
})
