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

package manifests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
	"github.com/segment-webhook-operator/segment-webhook-operator/internal/syncbuf"
)

// TestNamespaceScopedModeRunsWithOnlyNamespacedRoles runs the real manager binary as the
// namespace-scoped overlay's ServiceAccount, with only the Role and RoleBinding the overlay grants
// in team-a (no manager ClusterRole, and no metrics, which need cluster-wide TokenReviews): it must
// create the children, write status, and delete a child whose spec goes away, without a single
// forbidden request.
func TestNamespaceScopedModeRunsWithOnlyNamespacedRoles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	objs := kustomizeBuild(t, "config/namespace-scoped")
	dep := toDeployment(t, one(t, objs, "Deployment"))
	var watched string
	for _, e := range managerContainer(t, dep).Env {
		if e.Name == "WATCH_NAMESPACES" {
			watched = e.Value
		}
	}
	ensureNamespace(t, watched, nil)
	for _, o := range objs {
		if (o.GetKind() == "Role" || o.GetKind() == "RoleBinding") && o.GetNamespace() == watched {
			if err := k8sClient.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), client.FieldOwner(fieldOwner)); err != nil {
				t.Fatalf("applying %s %s: %v", o.GetKind(), o.GetName(), err)
			}
		}
	}
	// The overlay binds the manager's ServiceAccount; envtest authenticates its username.
	user, err := testEnv.AddUser(envtest.User{
		Name: fmt.Sprintf("system:serviceaccount:%s:%s", dep.Namespace, dep.Spec.Template.Spec.ServiceAccountName),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kubeconfig"), kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, "manager"), "./cmd/manager")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/manager: %v\n%s", err, out)
	}
	var logs syncbuf.Buffer
	manager := exec.CommandContext(ctx, filepath.Join(dir, "manager"),
		"--receiver-image=example.com/receiver:test", "--metrics-bind-address=0", "--health-probe-bind-address=0")
	manager.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(dir, "kubeconfig"), "WATCH_NAMESPACES="+watched)
	manager.Stdout, manager.Stderr = &logs, &logs
	if err := manager.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		_ = manager.Wait()
		if t.Failed() {
			t.Logf("manager log:\n%s", logs.String())
		}
	}()

	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: watched, Name: "segment"},
		StringData: map[string]string{"shared-secret": "s3cr3t"}}
	swh := &segmentv1alpha1.SegmentWebhook{
		ObjectMeta: metav1.ObjectMeta{Namespace: watched, Name: "events"},
		Spec: segmentv1alpha1.SegmentWebhookSpec{
			SecretRefs: []segmentv1alpha1.SecretKeyRef{{Name: "segment", Key: "shared-secret"}},
			Targets:    []segmentv1alpha1.Target{{Name: "sink", HTTP: &segmentv1alpha1.HTTPTarget{URL: "https://collector.example.com/segment"}}},
			Ingress:    &segmentv1alpha1.IngressSpec{Host: "segment.example.com"},
		},
	}
	// The Secret comes after its SegmentWebhook reported it missing, so only the namespaced
	// Secret watch can resolve it: a missing Secret is not retried on a timer.
	if err := k8sClient.Create(ctx, swh); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "SecretNotFound", func() error {
		got := &segmentv1alpha1.SegmentWebhook{}
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(swh), got); err != nil {
			return err
		}
		if c := meta.FindStatusCondition(got.Status.Conditions, segmentv1alpha1.ConditionSecretsResolved); c == nil || c.Reason != segmentv1alpha1.ReasonSecretNotFound {
			return fmt.Errorf("conditions %v", got.Status.Conditions)
		}
		return nil
	})
	if err := k8sClient.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	child := types.NamespacedName{Namespace: watched, Name: "events-receiver"}
	waitFor(ctx, t, "the children and a status written by the namespaced manager", func() error {
		for _, o := range []client.Object{&corev1.ConfigMap{}, &appsv1.Deployment{}, &corev1.Service{}, &networkingv1.Ingress{}} {
			if err := k8sClient.Get(ctx, child, o); err != nil {
				return err
			}
		}
		got := &segmentv1alpha1.SegmentWebhook{}
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(swh), got); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(got.Status.Conditions, segmentv1alpha1.ConditionSecretsResolved) {
			return fmt.Errorf("conditions %v", got.Status.Conditions)
		}
		return nil
	})

	got := &segmentv1alpha1.SegmentWebhook{}
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(swh), got); err != nil {
		t.Fatal(err)
	}
	got.Spec.Ingress = nil
	if err := k8sClient.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the Ingress to be deleted", func() error {
		if err := k8sClient.Get(ctx, child, &networkingv1.Ingress{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there (%v)", err)
		}
		return nil
	})
	if strings.Contains(logs.String(), "forbidden") {
		t.Errorf("the namespaced manager was refused a request:\n%s", logs.String())
	}
}

func waitFor(ctx context.Context, t *testing.T, what string, check func() error) {
	t.Helper()
	for {
		err := check()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
