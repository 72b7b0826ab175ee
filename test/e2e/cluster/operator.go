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

package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Operator is how the operator is installed: the chart, with the images imported into the node.
type Operator struct {
	Helm, Chart          string
	Release, Namespace   string
	Image, ReceiverImage string // repository:tag
}

// HelmArgs are the values that point the chart at the operator's images.
func (o Operator) HelmArgs(managerImage string) []string {
	repo, tag := SplitImage(managerImage)
	rrepo, rtag := SplitImage(o.ReceiverImage)
	return []string{
		"--set", "image.repository=" + repo, "--set", "image.tag=" + tag,
		"--set", "receiverImage.repository=" + rrepo, "--set", "receiverImage.tag=" + rtag,
	}
}

// SplitImage splits repository:tag.
func SplitImage(ref string) (string, string) {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ref, "latest"
	}
	return ref[:i], ref[i+1:]
}

// Helm runs helm against the cluster.
func (c *Cluster) Helm(ctx context.Context, helm string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, helm, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig, "HELM_CACHE_HOME="+c.path("helm", "cache"),
		"HELM_CONFIG_HOME="+c.path("helm", "config"), "HELM_DATA_HOME="+c.path("helm", "data"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// InstallOperator installs the chart with `helm install`, in a namespace that enforces the
// restricted Pod Security Standard, and waits until the manager is available.
func (c *Cluster) InstallOperator(ctx context.Context, o Operator) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.Namespace, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
	}}}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return err
	}
	args := append([]string{"install", o.Release, o.Chart, "--namespace", o.Namespace, "--wait", "--timeout", "3m"},
		o.HelmArgs(o.Image)...)
	if _, err := c.Helm(ctx, o.Helm, args...); err != nil {
		return err
	}
	return c.WaitDeploymentAvailable(ctx, o.Namespace, o.Release+"-segment-webhook-operator", 2*time.Minute)
}

// WaitDeploymentAvailable waits until the Deployment has rolled out completely: every replica
// updated, available, and no older one left.
func (c *Cluster) WaitDeploymentAvailable(ctx context.Context, ns, name string, timeout time.Duration) error {
	return c.poll(ctx, "deployment "+ns+"/"+name, timeout, func() error {
		d, err := c.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !RolledOut(d) {
			return fmt.Errorf("rolling out: %d/%d updated, %d available, %d in all",
				d.Status.UpdatedReplicas, *d.Spec.Replicas, d.Status.AvailableReplicas, d.Status.Replicas)
		}
		return nil
	})
}

// RolledOut is kubectl rollout status's test.
func RolledOut(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	return d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == want &&
		d.Status.Replicas == want && d.Status.AvailableReplicas == want
}
