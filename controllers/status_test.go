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
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// kstatusOf computes the SegmentWebhook's status as Flux, Argo CD's kstatus-based checks and
// `kubectl wait` consumers see it.
func kstatusOf(ctx context.Context, swh *segmentv1alpha1.SegmentWebhook) func() status.Status {
	return func() status.Status {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(segmentv1alpha1.GroupVersion.WithKind("SegmentWebhook"))
		if err := k8sClient.Get(ctx, key(swh), u); err != nil {
			return status.UnknownStatus
		}
		res, err := status.Compute(u)
		if err != nil {
			return status.UnknownStatus
		}
		return res.Status
	}
}

// setDeploymentStatus stands in for the Deployment controller and the kubelet, which envtest lacks.
func setDeploymentStatus(ctx context.Context, swh *segmentv1alpha1.SegmentWebhook, change func(dep *appsv1.Deployment)) {
	dep := getChild[appsv1.Deployment](ctx, swh)
	ExpectWithOffset(1, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8sClient.Get(ctx, key(dep), dep); err != nil {
			return err
		}
		change(dep)
		return k8sClient.Status().Update(ctx, dep)
	})).To(Succeed())
}

func availableStatus(dep *appsv1.Deployment) {
	now := metav1.Now()
	dep.Status = appsv1.DeploymentStatus{
		ObservedGeneration: dep.Generation, Replicas: 2, UpdatedReplicas: 2, ReadyReplicas: 2, AvailableReplicas: 2,
		Conditions: []appsv1.DeploymentCondition{
			{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable", LastUpdateTime: now, LastTransitionTime: now},
			{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable", LastUpdateTime: now, LastTransitionTime: now},
		},
	}
}

func TestFirstNotReadyReportsTransientErrorsFirst(t *testing.T) {
	conflict := &notReadyError{reason: segmentv1alpha1.ReasonChildConflict, msg: "Service exists", stalled: true}
	rollout := &notReadyError{reason: segmentv1alpha1.ReasonDeploymentProgressing, msg: "rolling out"}
	forbidden, timeout := errors.New("configmaps is forbidden"), errors.New("i/o timeout")

	err := firstNotReady(conflict, nil, forbidden, rollout, timeout)
	if _, known := errors.AsType[*notReadyError](err); known {
		t.Fatalf("a conflict beside transient errors made %q look stalled or progressing", err)
	}
	if !errors.Is(err, forbidden) || !errors.Is(err, timeout) {
		t.Errorf("every transient error must be reported, got %q", err)
	}
	if got := firstNotReady(rollout, conflict); got != conflict {
		t.Errorf("a stalled reason goes before progress, got %v", got)
	}
	if got := firstNotReady(nil, rollout); got != rollout {
		t.Errorf("progress when nothing else, got %v", got)
	}
	if got := firstNotReady(nil, nil); got != nil {
		t.Errorf("nil when Ready, got %v", got)
	}
}

var _ = Describe("kstatus", func() {
	var (
		ctx context.Context
		ns  string
		swh *segmentv1alpha1.SegmentWebhook
	)

	BeforeEach(func() {
		ctx = context.Background()
		ns, swh = sampleWithSecrets(ctx)
	})

	It("is InProgress when created and Current once the Deployment is available", func() {
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonDeploymentProgressing))
		Expect(kstatusOf(ctx, swh)()).To(Equal(status.InProgressStatus))

		setDeploymentStatus(ctx, swh, availableStatus)
		Eventually(kstatusOf(ctx, swh)).Should(Equal(status.CurrentStatus))
		Expect(readyCondition(ctx, swh)()).To(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonReady))
		Expect(readyCondition(ctx, swh)().Message).To(Equal("the receiver is serving at https://" + sampleHost(swh.Namespace) + "/webhook"))

		// A new generation the Deployment controller has not seen yet is a rollout in progress.
		update(ctx, swh, func(swh *segmentv1alpha1.SegmentWebhook) {
			swh.Spec.Targets[0].HTTP.URL = "https://collector.example.com/v2"
		})
		Eventually(readyCondition(ctx, swh)).Should(HaveField("Message", ContainSubstring("waiting for the Deployment controller")))
		Expect(kstatusOf(ctx, swh)()).To(Equal(status.InProgressStatus))
	})

	It("is Failed for a missing Secret, and recovers when it is created", func() {
		swh.Spec.SecretRefs = []segmentv1alpha1.SecretKeyRef{{Name: "later", Key: "shared-secret"}}
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		Eventually(kstatusOf(ctx, swh)).Should(Equal(status.FailedStatus))
		Expect(stalledCondition(ctx, swh)()).To(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonSecretNotFound))

		newSecret(ctx, ns, "later", map[string]string{"shared-secret": "x"})
		Eventually(kstatusOf(ctx, swh)).Should(Equal(status.InProgressStatus))
		Expect(stalledCondition(ctx, swh)()).To(BeNil(), "Stalled is removed, not set to False")
	})

	It("is Failed when the rollout exceeds its progress deadline, although old pods still serve", func() {
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		setDeploymentStatus(ctx, swh, availableStatus)
		Eventually(kstatusOf(ctx, swh)).Should(Equal(status.CurrentStatus))

		setDeploymentStatus(ctx, swh, func(dep *appsv1.Deployment) {
			availableStatus(dep)
			dep.Status.UpdatedReplicas = 1
			dep.Status.Replicas = 3
			dep.Status.AvailableReplicas = 2
			dep.Status.Conditions[1] = appsv1.DeploymentCondition{
				Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded",
				Message:        `ReplicaSet "events-receiver-7d9f" has timed out progressing.`,
				LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now(),
			}
		})
		Eventually(kstatusOf(ctx, swh)).Should(Equal(status.FailedStatus))
		Expect(readyCondition(ctx, swh)()).To(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonProgressDeadlineExceeded))
		Expect(readyCondition(ctx, swh)().Message).To(ContainSubstring("has timed out progressing"))
	})

	// observedGeneration waits until the operator has seen the SegmentWebhook's current generation.
	observedGeneration := func() {
		GinkgoHelper()
		Eventually(func(g Gomega) {
			got := &segmentv1alpha1.SegmentWebhook{}
			g.Expect(k8sClient.Get(ctx, key(swh), got)).To(Succeed())
			g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
		}).Should(Succeed())
	}

	It("stays Current when suspended: the generation that suspends is observed, and Ready keeps its value", func() {
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		setDeploymentStatus(ctx, swh, availableStatus)
		Eventually(kstatusOf(ctx, swh)).Should(Equal(status.CurrentStatus))
		ready := readyCondition(ctx, swh)()

		update(ctx, swh, func(swh *segmentv1alpha1.SegmentWebhook) { swh.Spec.Suspend = true })
		observedGeneration()
		Expect(kstatusOf(ctx, swh)()).To(Equal(status.CurrentStatus), "a suspended receiver is not in progress forever")
		Expect(readyCondition(ctx, swh)()).To(Equal(ready), "Ready still describes the receiver left running")
	})

	It("pauses reconciliation while suspended", func() {
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		cm := getChild[corev1.ConfigMap](ctx, swh)
		update(ctx, swh, func(swh *segmentv1alpha1.SegmentWebhook) { swh.Spec.Suspend = true })
		observedGeneration()

		update(ctx, cm, func(cm *corev1.ConfigMap) { cm.Data["config.json"] = "{}" })
		Expect(writesDuring(ctx, 3)).To(BeZero(), "a suspended SegmentWebhook's drift is left alone")
		Expect(k8sClient.Get(ctx, key(cm), cm)).To(Succeed())
		Expect(cm.Data["config.json"]).To(Equal("{}"))

		update(ctx, swh, func(swh *segmentv1alpha1.SegmentWebhook) { swh.Spec.Suspend = false })
		Eventually(func() string {
			Expect(k8sClient.Get(ctx, key(cm), cm)).To(Succeed())
			return cm.Data["config.json"]
		}).ShouldNot(Equal("{}"))
	})
})
