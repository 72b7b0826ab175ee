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
	"encoding/json"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/cel-go/cel"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// fluxHealth evaluates config/flux's healthCheckExprs the way kustomize-controller does: the
// object's top-level fields as variables, optional types on, and the object as JSON decodes.
func fluxHealth(swh *segmentv1alpha1.SegmentWebhook) (current, failed bool) {
	GinkgoHelper()
	var ks struct {
		Spec struct {
			HealthCheckExprs []struct {
				Kind    string `json:"kind"`
				Current string `json:"current"`
				Failed  string `json:"failed"`
			} `json:"healthCheckExprs"`
		} `json:"spec"`
	}
	raw, err := os.ReadFile(filepath.Join("..", "config", "flux", "kustomization.yaml"))
	Expect(err).NotTo(HaveOccurred())
	Expect(yaml.Unmarshal(raw, &ks)).To(Succeed())
	Expect(ks.Spec.HealthCheckExprs).To(HaveLen(1))
	exprs := ks.Spec.HealthCheckExprs[0]
	Expect(exprs.Kind).To(Equal("SegmentWebhook"))

	data, err := json.Marshal(swh)
	Expect(err).NotTo(HaveOccurred())
	var obj map[string]any
	Expect(json.Unmarshal(data, &obj)).To(Succeed())
	env, err := cel.NewEnv(cel.OptionalTypes(), cel.CrossTypeNumericComparisons(true),
		cel.Variable("apiVersion", cel.StringType), cel.Variable("kind", cel.StringType),
		cel.Variable("metadata", cel.DynType), cel.Variable("spec", cel.DynType), cel.Variable("status", cel.DynType))
	Expect(err).NotTo(HaveOccurred())
	vars := map[string]any{"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": obj["metadata"],
		"spec": obj["spec"], "status": obj["status"]}
	if vars["status"] == nil {
		vars["status"] = map[string]any{}
	}
	eval := func(expr string) bool {
		ast, issues := env.Compile(expr)
		Expect(issues.Err()).NotTo(HaveOccurred(), expr)
		prg, err := env.Program(ast)
		Expect(err).NotTo(HaveOccurred())
		out, _, err := prg.Eval(vars)
		Expect(err).NotTo(HaveOccurred(), expr)
		return out.Value().(bool)
	}
	return eval(exprs.Current), eval(exprs.Failed)
}

var _ = Describe("The Flux health check expressions", func() {
	ctx := context.Background()

	It("are in the README, and judge real statuses: in progress, current, failed", func() {
		readme, err := os.ReadFile(filepath.Join("..", "README.md"))
		Expect(err).NotTo(HaveOccurred())
		ks, err := os.ReadFile(filepath.Join("..", "config", "flux", "kustomization.yaml"))
		Expect(err).NotTo(HaveOccurred())
		for _, line := range strings.Split(string(ks), "\n") {
			if t := strings.TrimSpace(line); strings.HasPrefix(t, "current:") || strings.HasPrefix(t, "failed:") {
				Expect(string(readme)).To(ContainSubstring(t), "README shows config/flux's expressions")
			}
		}

		ns, swh := sampleWithSecrets(ctx)
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		current, failed := fluxHealth(swh) // no status yet
		Expect(current || failed).To(BeFalse(), "in progress before the operator reports")
		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonDeploymentProgressing))
		got := &segmentv1alpha1.SegmentWebhook{}
		Expect(k8sClient.Get(ctx, key(swh), got)).To(Succeed())
		current, failed = fluxHealth(got)
		Expect(current || failed).To(BeFalse(), "in progress while the receiver comes up")

		setDeploymentAvailable(ctx, swh)
		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionTrue, segmentv1alpha1.ReasonReady))
		Expect(k8sClient.Get(ctx, key(swh), got)).To(Succeed())
		current, failed = fluxHealth(got)
		Expect(current).To(BeTrue())
		Expect(failed).To(BeFalse())

		Expect(k8sClient.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "collector"}})).To(Succeed())
		update(ctx, swh, func(swh *segmentv1alpha1.SegmentWebhook) { swh.Spec.Validation = segmentv1alpha1.ValidationLenient })
		Eventually(readyCondition(ctx, swh)).Should(haveReason(metav1.ConditionFalse, segmentv1alpha1.ReasonSecretNotFound))
		Expect(k8sClient.Get(ctx, key(swh), got)).To(Succeed())
		current, failed = fluxHealth(got)
		Expect(current).To(BeFalse())
		Expect(failed).To(BeTrue())
	})
})
