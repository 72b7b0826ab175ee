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
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

const (
	checkoutPlan = `{"track": {"Order Completed": {"type": "object", "properties": {"total": {"type": "number"}}, "required": ["order_id"]}}}`
	catalogPlan  = `{"track": {"Product Viewed": {"type": "object"}}, "context": {"type": "object"}}`
	invalidPlan  = `{"track": {"Order Completed": {"type": "objekt"}}}`
)

var _ = Describe("Tracking plans", func() {
	var (
		ctx context.Context
		ns  string
		swh *segmentv1alpha1.SegmentWebhook
	)

	BeforeEach(func() {
		ctx = context.Background()
		ns, swh = sampleWithSecrets(ctx)
	})

	planConfigMap := func(data map[string]string) *corev1.ConfigMap {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tracking-plan"}, Data: data}
		Expect(k8sClient.Create(ctx, cm)).To(Succeed())
		return cm
	}
	planCondition := func() *metav1.Condition {
		got := &segmentv1alpha1.SegmentWebhook{}
		if err := k8sClient.Get(ctx, key(swh), got); err != nil {
			return nil
		}
		return meta.FindStatusCondition(got.Status.Conditions, segmentv1alpha1.ConditionTrackingPlanCompiled)
	}
	planStatus := func() *segmentv1alpha1.TrackingPlanStatus {
		got := &segmentv1alpha1.SegmentWebhook{}
		Expect(k8sClient.Get(ctx, key(swh), got)).To(Succeed())
		return got.Status.TrackingPlan
	}
	receiverConfig := func(cm *corev1.ConfigMap) *config.Config {
		rc, err := config.Parse([]byte(cm.Data[config.FileName]))
		Expect(err).NotTo(HaveOccurred(), "the operator must render a config the receiver accepts")
		return rc
	}

	It("compiles the plan, renders it beside the config, and keeps the last good plan while a new one does not compile", func() {
		plan := planConfigMap(map[string]string{"checkout.json": checkoutPlan, "catalog.json": catalogPlan, "README": "not a plan"})
		swh.Spec.TrackingPlan = &segmentv1alpha1.TrackingPlan{
			ConfigMapRef: segmentv1alpha1.ConfigMapReference{Name: plan.Name},
			Keys:         []string{"checkout.json", "catalog.json"},
			OnViolation:  "OmitProperties",
		}
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		Expect(swh.Spec.TrackingPlan.UnplannedEvents).To(Equal("Allow"), "CRD default")

		Eventually(planCondition).Should(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonTrackingPlanCompiled))
		status := planStatus()
		Expect(status).NotTo(BeNil())
		Expect(status.Events).To(Equal(int32(2)))
		Expect(status.Hash).To(HavePrefix("sha256:"))

		cm := getChild[corev1.ConfigMap](ctx, swh)
		Expect(cm.Data).To(HaveKeyWithValue("trackingplan.checkout.json", checkoutPlan))
		Expect(cm.Data).To(HaveKeyWithValue("trackingplan.catalog.json", catalogPlan))
		Expect(cm.Data).NotTo(HaveKey("trackingplan.README"))
		rc := receiverConfig(cm)
		Expect(rc.TrackingPlan).To(Equal(&config.TrackingPlan{
			Files: []string{
				"/etc/segment-webhook/config/trackingplan.catalog.json",
				"/etc/segment-webhook/config/trackingplan.checkout.json",
			},
			UnplannedEvents: config.UnplannedAllow,
			OnViolation:     config.ViolationOmitProperties,
		}))
		hash := podTemplateHash(ctx, swh)()
		Expect(hash).NotTo(BeEmpty())

		By("a changed plan reaches the receivers without a rollout")
		changed := `{"track": {"Order Completed": {"type": "object"}, "Order Refunded": {"type": "object"}}}`
		update(ctx, plan, func(cm *corev1.ConfigMap) { cm.Data["checkout.json"] = changed })
		Eventually(func() string {
			return getChild[corev1.ConfigMap](ctx, swh).Data["trackingplan.checkout.json"]
		}).Should(Equal(changed))
		Eventually(planStatus).Should(HaveField("Events", int32(3)))
		Expect(podTemplateHash(ctx, swh)()).To(Equal(hash))

		By("a schema that does not compile: Ready=False with the event and the compiler's message")
		update(ctx, plan, func(cm *corev1.ConfigMap) { cm.Data["checkout.json"] = invalidPlan })
		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonTrackingPlanInvalid))
		cond := planCondition()
		Expect(cond.Message).To(ContainSubstring(`key "checkout.json", event "track/Order Completed"`))
		Expect(cond.Message).To(ContainSubstring("not valid against metaschema"))
		Expect(cond.Message).To(ContainSubstring("at '/type'"))

		By("the receivers keep the last good plan, and the status still describes it")
		Consistently(func() string {
			return getChild[corev1.ConfigMap](ctx, swh).Data["trackingplan.checkout.json"]
		}, "2s").Should(Equal(changed))
		Expect(planStatus().Events).To(Equal(int32(3)))

		By("fixing the plan makes it Ready again")
		update(ctx, plan, func(cm *corev1.ConfigMap) { cm.Data["checkout.json"] = checkoutPlan })
		Eventually(planCondition).Should(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonTrackingPlanCompiled))
		Eventually(func() string {
			return getChild[corev1.ConfigMap](ctx, swh).Data["trackingplan.checkout.json"]
		}).Should(Equal(checkoutPlan))

		By("removing the plan removes its documents, condition and status")
		update(ctx, swh, func(s *segmentv1alpha1.SegmentWebhook) { s.Spec.TrackingPlan = nil })
		Eventually(func() map[string]string { return getChild[corev1.ConfigMap](ctx, swh).Data }).ShouldNot(HaveKey("trackingplan.checkout.json"))
		Eventually(planCondition).Should(BeNil())
		Expect(receiverConfig(getChild[corev1.ConfigMap](ctx, swh)).TrackingPlan).To(BeNil())
		Expect(planStatus()).To(BeNil())
	})

	It("reads and compiles each key selection of one plan ConfigMap once per version", func() {
		planConfigMap(map[string]string{"checkout.json": checkoutPlan, "catalog.json": catalogPlan})
		reads := &countingReader{Reader: k8sClient}
		r := &SegmentWebhookReconciler{APIReader: reads, plans: newReferences[compiledPlans](configMapsResource, nil)}
		selecting := func(key string) *segmentv1alpha1.SegmentWebhook {
			s := swh.DeepCopy()
			s.Spec.TrackingPlan = &segmentv1alpha1.TrackingPlan{
				ConfigMapRef: segmentv1alpha1.ConfigMapReference{Name: "tracking-plan"}, Keys: []string{key}}
			return s
		}
		checkout, catalog := selecting("checkout.json"), selecting("catalog.json")
		for range 3 { // as resyncs of two SegmentWebhooks taking other keys of one ConfigMap do
			for _, s := range []*segmentv1alpha1.SegmentWebhook{checkout, catalog} {
				docs, err := r.resolveTrackingPlan(ctx, s)
				Expect(err).NotTo(HaveOccurred())
				Expect(docs).To(HaveKey(planKeyPrefix + s.Spec.TrackingPlan.Keys[0]))
				Expect(docs).To(HaveLen(1))
			}
		}
		Expect(reads.gets.Load()).To(Equal(int64(2)), "one read for each selection, not one for every reconcile")
	})

	It("reports a missing plan ConfigMap or key, and follows the ConfigMap when it appears", func() {
		swh.Spec.TrackingPlan = &segmentv1alpha1.TrackingPlan{ConfigMapRef: segmentv1alpha1.ConfigMapReference{Name: "tracking-plan"}}
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonTrackingPlanNotFound))

		planConfigMap(map[string]string{"plan.json": checkoutPlan})
		Eventually(planCondition).Should(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonTrackingPlanCompiled))
		Expect(getChild[corev1.ConfigMap](ctx, swh).Data).To(HaveKeyWithValue("trackingplan.plan.json", checkoutPlan))

		update(ctx, swh, func(s *segmentv1alpha1.SegmentWebhook) { s.Spec.TrackingPlan.Keys = []string{"other.json"} })
		Eventually(planCondition).Should(And(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonTrackingPlanNotFound),
			HaveField("Message", ContainSubstring(`has no key "other.json"`))))
	})

	It("refuses a plan key too long to be copied into the receiver's ConfigMap", func() {
		long := strings.Repeat("k", 250) // a valid key, but not with the "trackingplan." prefix
		planConfigMap(map[string]string{long: checkoutPlan})
		swh.Spec.TrackingPlan = &segmentv1alpha1.TrackingPlan{ConfigMapRef: segmentv1alpha1.ConfigMapReference{Name: "tracking-plan"}}
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		Eventually(planCondition).Should(And(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonTrackingPlanInvalid),
			HaveField("Message", And(ContainSubstring("cannot be copied as"), ContainSubstring("no more than 253")))))
	})

	// Issue 20: 100 minimums of 1e1000000 cost the operator seconds of CPU and 65 MiB per compile.
	It("refuses a plan of absurd numbers as invalid, without compiling it", func() {
		var props []string
		for i := range 100 {
			props = append(props, fmt.Sprintf(`"p%d":{"minimum":1e1000000}`, i))
		}
		planConfigMap(map[string]string{"plan.json": `{"track":{"A":{"properties":{` + strings.Join(props, ",") + `}}}}`})
		swh.Spec.TrackingPlan = &segmentv1alpha1.TrackingPlan{ConfigMapRef: segmentv1alpha1.ConfigMapReference{Name: "tracking-plan"}}
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonTrackingPlanInvalid))
		Expect(planCondition()).To(And(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonTrackingPlanInvalid),
			HaveField("Message", ContainSubstring("beyond ±400"))))
	})

	DescribeTable("the API server refuses a bad tracking plan reference",
		func(mutate func(s *segmentv1alpha1.SegmentWebhookSpec), message string) {
			mutate(&swh.Spec)
			err := k8sClient.Create(ctx, swh)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "expected Invalid, got %v", err)
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("DeadLetter without a dead-letter target", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.TrackingPlan = &segmentv1alpha1.TrackingPlan{ConfigMapRef: segmentv1alpha1.ConfigMapReference{Name: "p"}, OnViolation: "DeadLetter"}
		}, "trackingPlan.onViolation DeadLetter needs spec.deadLetter"),
		Entry("an unknown action", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.TrackingPlan = &segmentv1alpha1.TrackingPlan{ConfigMapRef: segmentv1alpha1.ConfigMapReference{Name: "p"}, OnViolation: "Drop"}
		}, `Unsupported value: "Drop"`),
		Entry("an unknown unplanned mode", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.TrackingPlan = &segmentv1alpha1.TrackingPlan{ConfigMapRef: segmentv1alpha1.ConfigMapReference{Name: "p"}, UnplannedEvents: "Warn"}
		}, `Unsupported value: "Warn"`),
		Entry("a key that is not a ConfigMap key", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.TrackingPlan = &segmentv1alpha1.TrackingPlan{ConfigMapRef: segmentv1alpha1.ConfigMapReference{Name: "p"}, Keys: []string{"Order Completed.json"}}
		}, "keys[0]"),
		Entry("no ConfigMap name", func(s *segmentv1alpha1.SegmentWebhookSpec) {
			s.TrackingPlan = &segmentv1alpha1.TrackingPlan{}
		}, "spec.trackingPlan.configMapRef.name"),
	)
})

// The pure render side: the plan documents sit beside config.json, and their content does not
// change the pod template (a changed plan is a hot reload, not a rollout).
func TestTrackingPlanRendering(t *testing.T) {
	swh := defaultedWebhook()
	swh.Spec.TrackingPlan = &segmentv1alpha1.TrackingPlan{ConfigMapRef: segmentv1alpha1.ConfigMapReference{Name: "plan"},
		UnplannedEvents: config.UnplannedAllow, OnViolation: config.ViolationForward} // the CRD's defaults
	docs := trackingPlanDocs{"trackingplan.b.json": checkoutPlan, "trackingplan.a.json": catalogPlan}
	cfg := newReceiverConfig(swh)
	cfg.TrackingPlan = receiverTrackingPlan(swh, docs)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	want := &config.TrackingPlan{
		Files:           []string{"/etc/segment-webhook/config/trackingplan.a.json", "/etc/segment-webhook/config/trackingplan.b.json"},
		UnplannedEvents: config.UnplannedAllow, OnViolation: config.ViolationForward,
	}
	if !reflect.DeepEqual(cfg.TrackingPlan, want) {
		t.Errorf("receiver tracking plan %+v, want %+v", cfg.TrackingPlan, want)
	}
	configJSON, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cm := withTrackingPlan(newConfigMap(swh, configJSON), docs)
	if len(cm.Data) != 3 || cm.Data["trackingplan.b.json"] != checkoutPlan || cm.Data[config.FileName] != string(configJSON) {
		t.Errorf("ConfigMap data keys %v", slices.Sorted(maps.Keys(cm.Data)))
	}
	swh.Spec.TrackingPlan = nil
	if receiverTrackingPlan(swh, nil) != nil || len(withTrackingPlan(newConfigMap(swh, configJSON), nil).Data) != 1 {
		t.Error("without a tracking plan, nothing of it is rendered")
	}
}

// countingReader counts the reads that reach the API server.
type countingReader struct {
	client.Reader
	gets atomic.Int64
}

func (c *countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.gets.Add(1)
	return c.Reader.Get(ctx, key, obj, opts...)
}
