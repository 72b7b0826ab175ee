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

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
	"github.com/segment-webhook-operator/segment-webhook-operator/controllers"
	"github.com/segment-webhook-operator/segment-webhook-operator/internal/segmentsend"
)

const (
	totalSteps    = 10
	demoNamespace = "demo"
	fieldOwner    = "segment-webhook-demo"
	receiverImage = "ghcr.io/segment-webhook-operator/segment-webhook-operator-receiver:v0.1.0"
	rotatedKey    = "shared-secret-next"
	rotatedSecret = "rotated-0c5e1f"
	waitTimeout   = 30 * time.Second
)

type demo struct {
	out    io.Writer
	opts   options
	step   int
	checks int
	failed []string

	tmp         string
	env         *envtest.Environment
	client      client.Client
	stopManager context.CancelFunc
	managerDone chan error
	receiver    *exec.Cmd
	receiverErr chan error
	sink        *sink

	swh        *segmentv1alpha1.SegmentWebhook
	webhookURL string
	kubeconfig string // for kubectl and kubectl swh
	metricsURL string
	oldSecret  string
	cleanups   []func()
}

// --- output -----------------------------------------------------------------------------

func (d *demo) stepf(format string, args ...any) {
	d.step++
	fmt.Fprintf(d.out, "\n[%d/%d] %s\n", d.step, totalSteps, fmt.Sprintf(format, args...))
}

func (d *demo) linef(format string, args ...any) {
	fmt.Fprintf(d.out, "      %s\n", fmt.Sprintf(format, args...))
}

// expect records one check: a failed one fails the demo at the end, but the demo goes on so
// the output shows everything.
func (d *demo) expect(ok bool, format string, args ...any) {
	d.checks++
	msg := fmt.Sprintf(format, args...)
	if ok {
		fmt.Fprintf(d.out, "      ✓ %s\n", msg)
	} else {
		fmt.Fprintf(d.out, "      ✗ %s\n", msg)
		d.failed = append(d.failed, msg)
	}
}

// progress prints a line every few seconds while a long action runs.
func (d *demo) progress(ctx context.Context, what string) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				d.linef("... still %s (%ds)", what, int(time.Since(start).Seconds()))
			}
		}
	}()
	return func() { cancel(); <-done }
}

// --- the demo ---------------------------------------------------------------------------

func (d *demo) run(ctx context.Context) error {
	start := time.Now()
	tmp, err := os.MkdirTemp("", "segment-webhook-demo-")
	if err != nil {
		return err
	}
	d.tmp = tmp
	d.cleanups = append(d.cleanups, func() { _ = os.RemoveAll(tmp) })
	fmt.Fprintf(d.out, "segment-webhook-operator demo: control plane, operator, receiver and signed Segment events, all local.\n")
	fmt.Fprintf(d.out, "Working directory: %s (logs: manager.log, receiver.log)\n", tmp)
	logFile, err := os.Create(filepath.Join(tmp, "manager.log"))
	if err != nil {
		return err
	}
	d.cleanups = append(d.cleanups, func() { _ = logFile.Close() })
	ctrl.SetLogger(zap.New(zap.WriteTo(logFile)))

	for _, step := range []func(context.Context) error{
		d.buildReceiver,
		d.startControlPlane,
		d.startOperator,
		d.applySample,
		d.showChildren,
		d.startReceiver,
		d.sendEvents,
		d.rotateSecret,
		d.enforceTrackingPlan,
		d.showMetrics,
	} {
		if err := step(ctx); err != nil {
			if ctx.Err() != nil {
				return context.Canceled
			}
			return fmt.Errorf("step %d: %w", d.step, err)
		}
	}
	fmt.Fprintf(d.out, "\nTearing down: receiver, operator, control plane.\n")
	d.cleanup()
	if len(d.failed) > 0 {
		return fmt.Errorf("%d of %d checks failed:\n  - %s", len(d.failed), d.checks, strings.Join(d.failed, "\n  - "))
	}
	fmt.Fprintf(d.out, "\nDemo passed: %d checks in %s.\n", d.checks, time.Since(start).Round(100*time.Millisecond))
	return nil
}

// cleanup stops everything, newest first; it is safe to call twice.
//
//nolint:errcheck // it waits for the processes it stops; their exit status is the stop's
func (d *demo) cleanup() {
	if d.receiver != nil && d.receiver.Process != nil {
		_ = d.receiver.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.receiverErr:
		case <-time.After(10 * time.Second):
			_ = d.receiver.Process.Kill()
			<-d.receiverErr
		}
		d.receiver = nil
	}
	if d.sink != nil {
		d.sink.close()
		d.sink = nil
	}
	if d.stopManager != nil {
		d.stopManager()
		select {
		case <-d.managerDone:
		case <-time.After(15 * time.Second):
		}
		d.stopManager = nil
	}
	if d.env != nil {
		if err := d.env.Stop(); err != nil {
			fmt.Fprintf(d.out, "stopping the control plane: %v\n", err)
		}
		d.env = nil
	}
	for i := len(d.cleanups) - 1; i >= 0; i-- {
		d.cleanups[i]()
	}
	d.cleanups = nil
}

// 1. Build the receiver and the kubectl plugin exactly like 'make build'.
func (d *demo) buildReceiver(ctx context.Context) error {
	d.stepf("Building the receiver and kubectl swh (%s, %s) like 'make build'",
		rel(d.opts.Root, filepath.Join(d.opts.BinDir, "receiver")), rel(d.opts.Root, filepath.Join(d.opts.BinDir, "kubectl-swh")))
	start := time.Now()
	stop := d.progress(ctx, "building")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", d.opts.BinDir+string(filepath.Separator), "./cmd/receiver", "./cmd/kubectl-swh")
	cmd.Dir = d.opts.Root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	output, err := cmd.CombinedOutput()
	stop()
	if err != nil {
		return fmt.Errorf("go build ./cmd/receiver ./cmd/kubectl-swh: %w\n%s", err, output)
	}
	d.linef("built in %s", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// 2. A real kube-apiserver and etcd, with the CRD installed.
func (d *demo) startControlPlane(ctx context.Context) error {
	d.stepf("Starting a local control plane (kube-apiserver + etcd from envtest) and installing the CRD")
	assets := d.opts.Assets
	if assets == "" {
		assets = os.Getenv("KUBEBUILDER_ASSETS")
	}
	if assets == "" {
		d.linef("KUBEBUILDER_ASSETS is not set: running hack/envtest-assets.sh (builds them on the first run)")
		cmd := exec.CommandContext(ctx, filepath.Join(d.opts.Root, "hack", "envtest-assets.sh"))
		cmd.Dir = d.opts.Root
		cmd.Stderr = d.out
		stdout, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("hack/envtest-assets.sh: %w", err)
		}
		assets = strings.TrimSpace(string(stdout))
	}
	d.env = &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(d.opts.Root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	start := time.Now()
	cfg, err := d.env.Start()
	if err != nil {
		d.env = nil
		return fmt.Errorf("starting envtest from %s: %w", assets, err)
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(segmentv1alpha1.AddToScheme(scheme))
	if d.client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	d.linef("kube-apiserver at %s (started in %s)", cfg.Host, time.Since(start).Round(100*time.Millisecond))
	user, err := d.env.AddUser(envtest.User{Name: "demo-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return err
	}
	d.kubeconfig = filepath.Join(d.tmp, "kubeconfig")
	if err := os.WriteFile(d.kubeconfig, kubeconfig, 0o600); err != nil {
		return err
	}
	d.linef("kubeconfig: %s (kubectl --kubeconfig %s get swh -A works while the demo runs)", d.kubeconfig, d.kubeconfig)
	for _, crd := range d.env.CRDs {
		d.linef("CRD %s installed", crd.Name)
	}
	return nil
}

// 3. The operator, in this process, wired exactly like cmd/manager.
func (d *demo) startOperator(ctx context.Context) error {
	d.stepf("Starting the operator (controller-runtime manager, as in cmd/manager)")
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	mgr, err := controllers.NewManager(mctx, d.env.Config, controllers.ManagerOptions{
		Render:      controllers.RenderOptions{ReceiverImage: receiverImage},
		MetricsAddr: "0",
	})
	if err != nil {
		cancel()
		return err
	}
	d.stopManager = cancel
	d.managerDone = make(chan error, 1)
	go func() { d.managerDone <- mgr.Start(mctx) }()
	d.linef("receiver image: %s", receiverImage)
	d.linef("manager logs: %s", filepath.Join(d.tmp, "manager.log"))
	return nil
}

// 4. kubectl apply -k config/samples -n demo, with server-side apply.
func (d *demo) applySample(ctx context.Context) error {
	d.stepf("Applying config/samples (Secrets + SegmentWebhook) in namespace %q", demoNamespace)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: demoNamespace}}
	if err := d.client.Create(ctx, ns); err != nil {
		return err
	}
	objs, err := d.samples()
	if err != nil {
		return err
	}
	for _, o := range objs {
		o.SetNamespace(demoNamespace)
		if err := d.client.Apply(ctx, client.ApplyConfigurationFromUnstructured(o), client.FieldOwner(fieldOwner)); err != nil {
			return fmt.Errorf("applying %s %s: %w", o.GetKind(), o.GetName(), err)
		}
		d.linef("%s/%s applied", strings.ToLower(o.GetKind()), o.GetName())
	}
	return nil
}

// samples reads the files config/samples/kustomization.yaml lists.
func (d *demo) samples() ([]*unstructured.Unstructured, error) {
	dir := filepath.Join(d.opts.Root, "config", "samples")
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	for _, r := range k.Resources {
		data, err := os.ReadFile(filepath.Join(dir, r))
		if err != nil {
			return nil, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var m map[string]any
			if err := dec.Decode(&m); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("%s: %w", r, err)
			}
			if len(m) > 0 {
				objs = append(objs, &unstructured.Unstructured{Object: m})
			}
		}
	}
	return objs, nil
}

// 5. What the operator made of it.
func (d *demo) showChildren(ctx context.Context) error {
	d.stepf("Waiting for the operator's children and status")
	key := types.NamespacedName{Namespace: demoNamespace, Name: "events"}
	child := types.NamespacedName{Namespace: demoNamespace, Name: "events-receiver"}
	var (
		cm  corev1.ConfigMap
		dep appsv1.Deployment
		svc corev1.Service
		ing networkingv1.Ingress
		pdb policyv1.PodDisruptionBudget
	)
	err := d.waitFor(ctx, "the receiver's ConfigMap, Deployment, Service, Ingress and PodDisruptionBudget", func() error {
		for _, o := range []client.Object{&cm, &dep, &svc, &ing, &pdb} {
			if err := d.client.Get(ctx, child, o); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	c := dep.Spec.Template.Spec.Containers[0]
	d.linef("ConfigMap   %s   key config.json (%d bytes): the receiver config, secrets named by file path only", cm.Name, len(cm.Data["config.json"]))
	d.linef("Deployment  %s   replicas=%d image=%s", dep.Name, *dep.Spec.Replicas, c.Image)
	d.linef("            runAsNonRoot=%t readOnlyRootFilesystem=%t automountServiceAccountToken=%t config-hash=%s",
		*dep.Spec.Template.Spec.SecurityContext.RunAsNonRoot, *c.SecurityContext.ReadOnlyRootFilesystem,
		*dep.Spec.Template.Spec.AutomountServiceAccountToken, dep.Spec.Template.Annotations[controllers.ConfigHashAnnotation])
	d.linef("Service     %s   %s port %d -> %s", svc.Name, svc.Spec.Type, svc.Spec.Ports[0].Port, svc.Spec.Ports[0].TargetPort.String())
	rule := ing.Spec.Rules[0]
	d.linef("Ingress     %s   host=%s path=%s tls=%s", ing.Name, rule.Host, rule.HTTP.Paths[0].Path, ing.Spec.TLS[0].SecretName)
	d.linef("PodDisruptionBudget %s   maxUnavailable=%s", pdb.Name, pdb.Spec.MaxUnavailable.String())
	d.expect(c.Image == receiverImage, "the Deployment runs the operator's receiver image")

	d.swh = &segmentv1alpha1.SegmentWebhook{}
	err = d.waitFor(ctx, "status for the current generation", func() error {
		if err := d.client.Get(ctx, key, d.swh); err != nil {
			return err
		}
		if c := meta.FindStatusCondition(d.swh.Status.Conditions, segmentv1alpha1.ConditionAvailable); c == nil ||
			d.swh.Status.ObservedGeneration != d.swh.Generation {
			return errors.New("no Available condition yet")
		}
		return nil
	})
	if err != nil {
		return err
	}
	d.printStatus()
	d.expect(d.swh.Status.URL == "https://segment.example.com/webhook", "status.url is the Ingress URL to give Segment: %s", d.swh.Status.URL)
	d.expect(meta.IsStatusConditionTrue(d.swh.Status.Conditions, segmentv1alpha1.ConditionSecretsResolved), "SecretsResolved=True")
	d.expect(meta.IsStatusConditionTrue(d.swh.Status.Conditions, segmentv1alpha1.ConditionReconciling), "Reconciling=True while the Deployment rolls out")
	ready := meta.FindStatusCondition(d.swh.Status.Conditions, segmentv1alpha1.ConditionReady)
	d.expect(ready != nil && ready.Status == metav1.ConditionFalse && ready.Reason == segmentv1alpha1.ReasonDeploymentProgressing,
		"Ready=False (DeploymentProgressing) for now: no kubelet runs pods here, so step 6 runs the receiver locally")

	// Events are sent asynchronously, and repeated ones are folded into a series.
	var events eventsv1.EventList
	_ = d.waitFor(ctx, "events", func() error {
		if err := d.client.List(ctx, &events, client.InNamespace(demoNamespace)); err != nil {
			return err
		}
		if len(events.Items) == 0 {
			return errors.New("no events yet")
		}
		return nil
	})
	slices.SortFunc(events.Items, func(a, b eventsv1.Event) int {
		return a.CreationTimestamp.Compare(b.CreationTimestamp.Time)
	})
	d.linef("Events (kubectl events -n %s):", demoNamespace)
	for _, e := range events.Items {
		series := ""
		if e.Series != nil {
			series = fmt.Sprintf(" (x%d)", e.Series.Count)
		}
		d.linef("  %-7s %-14s %s %s%s", e.Type, e.Reason, e.Regarding.Kind+"/"+e.Regarding.Name, e.Note, series)
	}
	return nil
}

func (d *demo) printStatus() {
	ready := meta.FindStatusCondition(d.swh.Status.Conditions, segmentv1alpha1.ConditionReady)
	readyStatus := "Unknown"
	if ready != nil {
		readyStatus = string(ready.Status)
	}
	d.linef("kubectl get swh -n %s:", demoNamespace)
	d.linef("  NAME     READY   URL                                   REPLICAS")
	d.linef("  %-8s %-7s %-37s %d", d.swh.Name, readyStatus, d.swh.Status.URL, d.swh.Status.Replicas)
	for _, c := range d.swh.Status.Conditions {
		d.linef("  condition %-18s %-5s %-21s %s", c.Type, c.Status, c.Reason, c.Message)
	}
}

// 6. What a kubelet would do, by hand: mount the ConfigMap and Secret keys, start the container.
func (d *demo) startReceiver(ctx context.Context) error {
	d.stepf("Running the receiver binary with the operator's ConfigMap and the Secret keys as files")
	d.sink = newSink()
	d.linef("a local sink stands in for the targets: %s", d.sink.url)
	rewrites, err := d.materialise(ctx, true)
	if err != nil {
		return err
	}
	for _, r := range rewrites {
		d.linef("rewritten %s", r)
	}

	dep := &appsv1.Deployment{}
	if err := d.client.Get(ctx, types.NamespacedName{Namespace: demoNamespace, Name: "events-receiver"}, dep); err != nil {
		return err
	}
	var args []string
	for _, a := range dep.Spec.Template.Spec.Containers[0].Args {
		if p, ok := strings.CutPrefix(a, "--config="); ok {
			a = "--config=" + d.local(p)
		}
		args = append(args, a)
	}
	// Local listeners instead of the pod's ports; no drain delay (no load balancer to wait for).
	args = append(args, "--addr=127.0.0.1:0", "--metrics-addr=127.0.0.1:0", "--drain-delay=0s")
	bin := filepath.Join(d.opts.BinDir, "receiver")
	d.linef("$ %s %s", rel(d.opts.Root, bin), strings.Join(args, " "))

	logFile, err := os.Create(filepath.Join(d.tmp, "receiver.log"))
	if err != nil {
		return err
	}
	d.cleanups = append(d.cleanups, func() { _ = logFile.Close() })
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	d.receiver = cmd
	d.receiverErr = make(chan error, 1)
	listening := make(chan map[string]any, 1)
	go func() {
		dec := json.NewDecoder(io.TeeReader(stderr, logFile))
		for {
			var line map[string]any
			if err := dec.Decode(&line); err != nil {
				break
			}
			if line["msg"] == "receiver listening" {
				select {
				case listening <- line:
				default:
				}
			}
		}
		_, _ = io.Copy(logFile, stderr)
		d.receiverErr <- cmd.Wait()
	}()
	select {
	case line := <-listening:
		d.webhookURL = fmt.Sprintf("http://%s%s", line["addr"], d.swh.Status.URL[len("https://segment.example.com"):])
		d.metricsURL = fmt.Sprintf("http://%s/metrics", line["metricsAddr"])
	case err := <-d.receiverErr:
		d.receiverErr <- err
		return fmt.Errorf("the receiver exited: %v (see %s)", err, logFile.Name())
	case <-time.After(waitTimeout):
		return errors.New("the receiver did not start listening")
	case <-ctx.Done():
		return ctx.Err()
	}
	readyz := strings.Replace(d.webhookURL, d.swh.Status.URL[len("https://segment.example.com"):], "/readyz", 1)
	if err := d.waitFor(ctx, "the receiver's /readyz", func() error {
		resp, err := httpClient.Get(readyz)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz answered %d", resp.StatusCode)
		}
		return nil
	}); err != nil {
		return err
	}
	d.linef("receiver ready: webhook %s, metrics %s", d.webhookURL, d.metricsURL)

	// With no kubelet and Deployment controller, report the local receiver's readiness in the
	// Deployment status as they would, so the operator's status shows the serving state.
	replicas := *dep.Spec.Replicas
	dep.Status = appsv1.DeploymentStatus{
		ObservedGeneration: dep.Generation, Replicas: replicas, UpdatedReplicas: replicas,
		ReadyReplicas: replicas, AvailableReplicas: replicas,
		Conditions: []appsv1.DeploymentCondition{{
			Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable",
			Message: "Deployment has minimum availability.", LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now(),
		}},
	}
	if err := d.client.Status().Update(ctx, dep); err != nil {
		return err
	}
	d.linef("reported the receiver ready in the Deployment status (standing in for the kubelet)")
	if err := d.waitFor(ctx, "Ready=True", func() error {
		if err := d.client.Get(ctx, client.ObjectKeyFromObject(d.swh), d.swh); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(d.swh.Status.Conditions, segmentv1alpha1.ConditionReady) {
			return errors.New("not Ready yet")
		}
		return nil
	}); err != nil {
		return err
	}
	d.printStatus()
	d.expect(true, "Ready=True: Segment can be pointed at %s", d.swh.Status.URL)
	return nil
}

// local maps a path inside the receiver pod to the demo's directory standing in for its
// filesystem.
func (d *demo) local(podPath string) string { return filepath.Join(d.tmp, "pod", podPath) }

// materialise does the kubelet's part for the receiver pod: it writes the ConfigMap and the
// Secret keys the Deployment mounts into files under tmp/pod/<mount path>, replacing files
// atomically (like the kubelet's ..data swap) so the receiver's hot reload sees whole files,
// secrets first. The config.json written is the operator's, with only the paths of mounted
// files and the target URLs rewritten; the rewrites are returned for printing.
func (d *demo) materialise(ctx context.Context, report bool) ([]string, error) {
	dep := &appsv1.Deployment{}
	cm := &corev1.ConfigMap{}
	name := types.NamespacedName{Namespace: demoNamespace, Name: "events-receiver"}
	if err := d.client.Get(ctx, name, dep); err != nil {
		return nil, err
	}
	if err := d.client.Get(ctx, name, cm); err != nil {
		return nil, err
	}
	mounts := map[string]string{} // volume name -> mount path
	for _, m := range dep.Spec.Template.Spec.Containers[0].VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	var configMounts []string
	var mountPaths []string
	for _, v := range dep.Spec.Template.Spec.Volumes {
		dir, ok := mounts[v.Name]
		if !ok {
			continue
		}
		mountPaths = append(mountPaths, dir)
		switch {
		case v.Secret != nil:
			secret := &corev1.Secret{}
			if err := d.client.Get(ctx, types.NamespacedName{Namespace: demoNamespace, Name: v.Secret.SecretName}, secret); err != nil {
				return nil, err
			}
			want := map[string]bool{}
			for _, item := range v.Secret.Items {
				want[item.Path] = true
				if err := writeAtomic(d.local(filepath.Join(dir, item.Path)), secret.Data[item.Key]); err != nil {
					return nil, err
				}
			}
			// Keys no longer mounted disappear, as they do from a pod's Secret volume.
			entries, _ := os.ReadDir(d.local(dir))
			for _, e := range entries {
				if !want[e.Name()] && !strings.HasPrefix(e.Name(), ".") {
					_ = os.Remove(filepath.Join(d.local(dir), e.Name()))
				}
			}
		case v.ConfigMap != nil:
			configMounts = append(configMounts, dir)
		}
	}
	var rewrites []string
	for _, dir := range configMounts {
		for key, value := range cm.Data {
			var doc any
			dec := json.NewDecoder(strings.NewReader(value))
			dec.UseNumber()
			if err := dec.Decode(&doc); err != nil {
				return nil, fmt.Errorf("ConfigMap key %s: %w", key, err)
			}
			doc = d.rewrite(doc, "", mountPaths, &rewrites)
			data, err := json.MarshalIndent(doc, "", "  ")
			if err != nil {
				return nil, err
			}
			if err := writeAtomic(d.local(filepath.Join(dir, key)), data); err != nil {
				return nil, err
			}
		}
	}
	if !report {
		return nil, nil
	}
	return rewrites, nil
}

// rewrite walks the config JSON: strings naming a file under a mount path get the local
// prefix; each target's (and the dead-letter target's) http.url points at the sink, one path per
// target.
func (d *demo) rewrite(v any, at string, mountPaths []string, rewrites *[]string) any {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			v[k] = d.rewrite(v[k], joinPath(at, k), mountPaths, rewrites)
		}
		if at == "deadLetter" || (strings.HasPrefix(at, "targets[") && strings.HasSuffix(at, "]")) {
			if h, ok := v["http"].(map[string]any); ok {
				sinkURL := d.sink.url + "/" + fmt.Sprint(v["name"])
				*rewrites = append(*rewrites, fmt.Sprintf("%s.http.url: %s -> %s", at, h["url"], sinkURL))
				h["url"] = sinkURL
			}
		}
		return v
	case []any:
		for i := range v {
			v[i] = d.rewrite(v[i], fmt.Sprintf("%s[%d]", at, i), mountPaths, rewrites)
		}
		return v
	case string:
		for _, p := range mountPaths {
			if strings.HasPrefix(v, p+"/") {
				local := d.local(v)
				*rewrites = append(*rewrites, fmt.Sprintf("%s: %s -> %s", at, v, local))
				return local
			}
		}
		return v
	default:
		return v
	}
}

func joinPath(at, k string) string {
	if at == "" {
		return k
	}
	return at + "." + k
}

func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// waitFor polls f until it succeeds.
func (d *demo) waitFor(ctx context.Context, what string, f func() error) error {
	deadline := time.Now().Add(waitTimeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func rel(root, path string) string {
	if r, err := filepath.Rel(root, path); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return path
}

// --- sink -------------------------------------------------------------------------------

// sink is the targets' stand-in: it records every request, by target (the URL path).
type sink struct {
	server *http.Server
	url    string
	mu     sync.Mutex
	got    []received
}

type received struct {
	target string
	header http.Header
	body   []byte
}

func newSink() *sink {
	s := &sink{}
	s.server = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			s.mu.Lock()
			s.got = append(s.got, received{target: strings.TrimPrefix(r.URL.Path, "/"), header: r.Header.Clone(), body: body})
			s.mu.Unlock()
			w.WriteHeader(http.StatusOK)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	ln, err := listenLocal()
	if err != nil {
		panic(err)
	}
	s.url = "http://" + ln.Addr().String()
	go func() { _ = s.server.Serve(ln) }()
	return s
}

func (s *sink) close() { _ = s.server.Close() }

// since returns what arrived after index n, and the new length.
func (s *sink) since(n int) ([]received, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got[n:]), len(s.got)
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// --- Segment ---------------------------------------------------------------------------

var httpClient = &http.Client{Timeout: 10 * time.Second}

// send posts events to the receiver exactly as Segment does (internal/segmentsend, the code of
// kubectl swh send): one event, or an Actions batch signed over element 0.
func (d *demo) send(ctx context.Context, events [][]byte, batch bool, secret string) (*segmentsend.Response, error) {
	req, err := segmentsend.NewRequest(events, batch, segmentsend.Auth{Secret: []byte(secret)})
	if err != nil {
		return nil, err
	}
	return segmentsend.Send(ctx, httpClient, d.webhookURL, req)
}
