//go:build e2e

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

// Package e2e runs the operator and its receivers on a real one-node cluster (test/e2e/cluster):
// images imported into containerd, the operator installed with helm, receivers started by the
// kubelet, traffic through kube-proxy. make e2e runs it; it needs root and cgroups.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
	"github.com/segment-webhook-operator/segment-webhook-operator/test/e2e/cluster"
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "real node")
}

var (
	ctx      context.Context
	cancel   context.CancelFunc
	node     *cluster.Cluster
	k8s      client.Client
	operator cluster.Operator
	// timings are printed as the table make e2e ends with.
	timings []string
)

// env returns a required environment variable, which make e2e sets.
func env(name string) string {
	v := os.Getenv(name)
	Expect(v).NotTo(BeEmpty(), "%s is not set: run the suite with make e2e", name)
	return v
}

func step(name string, start time.Time) {
	line := fmt.Sprintf("%-58s %6.1fs", name, time.Since(start).Seconds())
	timings = append(timings, line)
	fmt.Fprintln(GinkgoWriter, "[e2e] "+line)
}

var _ = BeforeSuite(func() {
	ctx, cancel = context.WithCancel(context.Background())
	Expect(cluster.Preflight()).To(Succeed())
	images := env("IMAGES_DIR")
	sinkArchive := filepath.Join(images, "e2e-sink.tar")
	start := time.Now()
	Expect(buildSinkImage(sinkArchive)).To(Succeed())
	step("sink image", start)

	start = time.Now()
	var err error
	node, err = cluster.Up(ctx, cluster.Options{
		Dir:           env("E2E_DIR"),
		EnvtestAssets: env("KUBEBUILDER_ASSETS"),
		NodeAssets:    env("NODE_ASSETS"),
		PauseImage:    env("PAUSE_IMG"),
		Images: []string{filepath.Join(images, "manager.tar"), filepath.Join(images, "receiver.tar"),
			filepath.Join(images, "pause.tar"), sinkArchive},
		Progress: GinkgoWriter,
	})
	Expect(err).NotTo(HaveOccurred())
	step("cluster up (etcd, control plane, containerd, kubelet)", start)
	DeferCleanup(func() {
		start := time.Now()
		Expect(node.Down()).To(Succeed())
		step("cluster down", start)
		fmt.Println("\n[e2e] timings\n" + joinLines(timings))
	})

	scheme := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(segmentv1alpha1.AddToScheme(scheme)).To(Succeed())
	k8s, err = client.New(node.RESTConfig, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	start = time.Now()
	operator = cluster.Operator{
		Helm: env("HELM"), Chart: "../../charts/segment-webhook-operator",
		Release: "swo", Namespace: "segment-webhook-operator-system",
		Image: env("IMG"), ReceiverImage: env("RECEIVER_IMG"),
	}
	Expect(node.InstallOperator(ctx, operator)).To(Succeed())
	step("helm install of the operator, manager available", start)
})

var _ = AfterSuite(func() {
	if cancel != nil {
		cancel()
	}
})

func joinLines(lines []string) string {
	s := ""
	for _, l := range lines {
		s += "  " + l + "\n"
	}
	return s
}
