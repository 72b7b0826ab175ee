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
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	lua "github.com/yuin/gopher-lua"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// argoHealth runs config/argocd/health.lua the way Argo CD does: the object as the global obj,
// the returned table's status and message as the result.
func argoHealth(swh *segmentv1alpha1.SegmentWebhook) (status, message string) {
	GinkgoHelper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(swh)
	Expect(err).NotTo(HaveOccurred())
	return argoHealthOf(m)
}

// argoHealthOf runs the health check on an object as Argo CD reads it from the API server.
func argoHealthOf(m map[string]any) (status, message string) {
	GinkgoHelper()
	script, err := os.ReadFile(filepath.Join("..", "config", "argocd", "health.lua"))
	Expect(err).NotTo(HaveOccurred())
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, open := range []lua.LGFunction{lua.OpenBase, lua.OpenString, lua.OpenTable} {
		open(L)
	}
	L.SetGlobal("obj", toLua(L, m))
	Expect(L.DoString(string(script))).To(Succeed())
	result, ok := L.Get(-1).(*lua.LTable)
	Expect(ok).To(BeTrue(), "health.lua returned %s, want a table", L.Get(-1).Type())
	return result.RawGetString("status").String(), result.RawGetString("message").String()
}

// toLua converts JSON-like Go values as Argo CD does: objects and arrays become tables.
func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		t := L.NewTable()
		for k, e := range v {
			t.RawSetString(k, toLua(L, e))
		}
		return t
	case []any:
		t := L.NewTable()
		for _, e := range v {
			t.Append(toLua(L, e))
		}
		return t
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case nil:
		return lua.LNil
	default:
		panic(fmt.Sprintf("toLua: unexpected %T", v))
	}
}

// setDeploymentAvailable reports the receiver rollout as done, as the Deployment controller
// would: no kube-controller-manager runs in envtest.
func setDeploymentAvailable(ctx context.Context, swh *segmentv1alpha1.SegmentWebhook) {
	GinkgoHelper()
	dep := getChild[appsv1.Deployment](ctx, swh)
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
}

var _ = Describe("The Argo CD health check", func() {
	var (
		ctx = context.Background()
		ns  string
		swh *segmentv1alpha1.SegmentWebhook
	)
	BeforeEach(func() {
		ns, swh = sampleWithSecrets(ctx)
	})

	current := func() *segmentv1alpha1.SegmentWebhook {
		GinkgoHelper()
		got := &segmentv1alpha1.SegmentWebhook{}
		Expect(k8sClient.Get(ctx, key(swh), got)).To(Succeed())
		return got
	}
	// healthOf evaluates the live object's health until it is the wanted one.
	healthOf := func() func() string {
		return func() string {
			status, _ := argoHealth(current())
			return status
		}
	}

	It("is Progressing before the operator reports, and while the status is older than the spec", func() {
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		status, message := argoHealth(swh) // as the API server returned it: no status yet
		Expect(status).To(Equal("Progressing"), message)

		Eventually(func() int64 { return current().Status.ObservedGeneration }).Should(Equal(int64(1)))
		latest := current()
		latest.Spec.Replicas = ptr.To(int32(3))
		Expect(k8sClient.Update(ctx, latest)).To(Succeed())
		// The update's answer is generation 2 with the status the operator wrote for generation 1.
		Expect(latest.Generation).To(Equal(int64(2)))
		Expect(latest.Status.ObservedGeneration).To(Equal(int64(1)))
		status, message = argoHealth(latest)
		Expect(status).To(Equal("Progressing"))
		Expect(message).To(ContainSubstring("generation 2"))
	})

	It("is Progressing while the receiver Deployment comes up, then Healthy", func() {
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonDeploymentProgressing))
		status, message := argoHealth(current())
		Expect(status).To(Equal("Progressing"))
		Expect(message).To(ContainSubstring("DeploymentProgressing"))

		setDeploymentAvailable(ctx, swh)
		Eventually(healthOf()).Should(Equal("Healthy"))
		_, message = argoHealth(current())
		Expect(message).To(ContainSubstring("https://" + sampleHost(swh.Namespace) + "/webhook"))
	})

	It("is Degraded while a referenced Secret is missing", func() {
		Expect(k8sClient.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "collector"}})).To(Succeed())
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonSecretNotFound))
		status, message := argoHealth(current())
		Expect(status).To(Equal("Degraded"))
		Expect(message).To(ContainSubstring(`Secret "collector" not found`))
	})

	It("follows the kstatus Stalled and Reconciling conditions over Ready's reason", func() {
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonDeploymentProgressing))
		// A real status, with the conditions of a reconciler that reports kstatus conditions.
		stalled := current()
		meta.SetStatusCondition(&stalled.Status.Conditions, metav1.Condition{
			Type: "Stalled", Status: metav1.ConditionTrue, Reason: "InvalidSpec", Message: "cannot render", ObservedGeneration: stalled.Generation,
		})
		status, message := argoHealth(stalled)
		Expect(status).To(Equal("Degraded"))
		Expect(message).To(Equal("InvalidSpec: cannot render"))

		reconciling := current()
		meta.SetStatusCondition(&reconciling.Status.Conditions, metav1.Condition{
			Type: "Stalled", Status: metav1.ConditionFalse, Reason: "Reconciled", ObservedGeneration: reconciling.Generation,
		})
		meta.SetStatusCondition(&reconciling.Status.Conditions, metav1.Condition{
			Type: "Reconciling", Status: metav1.ConditionTrue, Reason: "Progressing", Message: "rolling out", ObservedGeneration: reconciling.Generation,
		})
		status, message = argoHealth(reconciling)
		Expect(status).To(Equal("Progressing"))
		Expect(message).To(ContainSubstring("rolling out"))
	})

	It("is Suspended from the moment spec.suspend is set, before and after the operator observes it", func() {
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		setDeploymentAvailable(ctx, swh)
		Eventually(healthOf()).Should(Equal("Healthy"))

		latest := swh.DeepCopy()
		update(ctx, latest, func(latest *segmentv1alpha1.SegmentWebhook) { latest.Spec.Suspend = true })
		// The update's answer: a new generation, and the status of the one before.
		Expect(latest.Status.ObservedGeneration).To(BeNumerically("<", latest.Generation))
		status, message := argoHealth(latest)
		Expect(status).To(Equal("Suspended"), message)

		Eventually(func() int64 { return current().Status.ObservedGeneration }).Should(Equal(latest.Generation))
		status, message = argoHealth(current())
		Expect(status).To(Equal("Suspended"), message)
	})
})
