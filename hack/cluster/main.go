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

// Command cluster starts a real one-node cluster on this machine with the operator installed
// (make cluster) and leaves it running, or removes it (make cluster-down).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/segment-webhook-operator/segment-webhook-operator/test/e2e/cluster"
)

func main() {
	dir := flag.String("dir", "/tmp/swo-cluster", "where the cluster lives")
	envtest := flag.String("envtest-assets", os.Getenv("KUBEBUILDER_ASSETS"), "kube-apiserver and etcd")
	node := flag.String("node-assets", os.Getenv("NODE_ASSETS"), "kubelet, kube-controller-manager, kube-scheduler, kube-proxy, kubectl")
	images := flag.String("images", "bin/images", "the archives of make images")
	helm := flag.String("helm", "bin/helm", "helm")
	img := flag.String("img", "", "the operator image")
	receiverImg := flag.String("receiver-img", "", "the receiver image")
	pauseImg := flag.String("pause-img", "", "the pause image")
	flag.Usage = func() { fmt.Fprintln(os.Stderr, "usage: cluster [flags] up|down"); flag.PrintDefaults() }
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	switch flag.Arg(0) {
	case "up":
		err = up(ctx, *dir, *envtest, *node, *images, *helm, *img, *receiverImg, *pauseImg)
	case "down":
		err = cluster.Teardown(*dir, os.Stdout)
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func up(ctx context.Context, dir, envtest, node, images, helm, img, receiverImg, pauseImg string) error {
	archives, _ := filepath.Glob(filepath.Join(images, "*.tar"))
	c, err := cluster.Up(ctx, cluster.Options{
		Dir: dir, EnvtestAssets: envtest, NodeAssets: node, PauseImage: pauseImg,
		Images: archives, Detach: true, Progress: os.Stdout,
	})
	if err != nil {
		return err
	}
	fmt.Println("[cluster] installing the operator with helm")
	err = c.InstallOperator(ctx, cluster.Operator{
		Helm: helm, Chart: "charts/segment-webhook-operator", Release: "swo",
		Namespace: "segment-webhook-operator-system", Image: img, ReceiverImage: receiverImg,
	})
	if err != nil {
		_ = c.Down()
		return err
	}
	fmt.Printf(`
The cluster runs (make cluster-down removes it). Use it with:

  export KUBECONFIG=%s
  export PATH=%s:$PATH    # kubectl %s
  kubectl get nodes

Receivers are reached from this machine through their Service's cluster IP, which the node's
kube-proxy routes (there is no cluster DNS):

  kubectl get svc <name>-receiver -n <namespace> -o jsonpath='{.spec.clusterIP}'
  curl http://<cluster IP>:8080/readyz

or through a NodePort on the node address %s. Process logs: %s/logs.
`, c.Kubeconfig, node, "of the node's release", cluster.NodeIP, dir)
	return nil
}
