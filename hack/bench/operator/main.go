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

// Command operator benchmarks the operator at scale on envtest (a real kube-apiserver and etcd):
// it creates N SegmentWebhooks, each with its own Secret, measures the time until every one has
// all its children and an up-to-date status, then counts the API writes during a resync window
// in which nothing changed (it must be zero), and samples the manager's memory.
//
// The manager runs in this process, wired like cmd/manager (CacheByObject, the reconciler, no
// client-side rate limit as with ctrl.GetConfigOrDie) but with a short SyncPeriod so that every
// SegmentWebhook is reconciled again within the window. Its memory is this process's Go heap
// (HeapInuse sampled every 100ms, before and at peak) and VmHWM; the benchmark's own client is
// small beside the manager's caches. Run it with hack/bench-operator.sh (make bench-operator).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
	"github.com/segment-webhook-operator/segment-webhook-operator/controllers"
	"github.com/segment-webhook-operator/segment-webhook-operator/internal/procstat"
)

func main() {
	n := flag.Int("n", envInt("BENCH_N", 100), "number of SegmentWebhooks (env BENCH_N)")
	syncPeriod := flag.Duration("sync-period", 10*time.Second, "the manager's cache SyncPeriod: every object is reconciled again this often")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	crdDir := flag.String("crd-dir", filepath.Join("config", "crd", "bases"), "directory of the CRD manifests")
	workers := flag.Int("create-workers", 16, "concurrent creates")
	verbose := flag.Bool("v", false, "log the manager")
	flag.Parse()

	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fail("KUBEBUILDER_ASSETS must name the envtest binaries (hack/envtest-assets.sh prints them)")
	}
	if *verbose {
		logf.SetLogger(zap.New(zap.UseDevMode(true)))
	} else {
		logf.SetLogger(zap.New(zap.WriteTo(discard{})))
	}
	// On SIGINT or SIGTERM the run stops and envtest's processes are stopped too.
	sigCtx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(sigCtx, *timeout)
	defer cancel()
	if err := run(ctx, *n, *syncPeriod, *crdDir, *workers); err != nil {
		fail(err.Error())
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "bench-operator:", msg)
	os.Exit(1)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func run(ctx context.Context, n int, syncPeriod time.Duration, crdDir string, workers int) error {
	step := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
	}
	testEnv := &envtest.Environment{CRDDirectoryPaths: []string{crdDir}, ErrorIfCRDPathMissing: true}
	// envtest's default Service range (a /24) runs out of ClusterIPs before 1000 Services.
	testEnv.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.96.0.0/16")
	cfg, err := testEnv.Start()
	if err != nil {
		return fmt.Errorf("starting envtest: %w", err)
	}
	defer func() { _ = testEnv.Stop() }()
	step("envtest started")

	scheme := kruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(segmentv1alpha1.AddToScheme(scheme))
	benchClient, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}

	// The manager's client like in production: ctrl.GetConfigOrDie turns client-side rate limiting
	// off (QPS -1) and relies on the API server's priority and fairness.
	mgrCfg := rest.CopyConfig(cfg)
	mgrCfg.QPS, mgrCfg.Burst = -1, 0
	mgr, err := ctrl.NewManager(mgrCfg, ctrl.Options{
		Scheme:  scheme,
		Cache:   cache.Options{ByObject: controllers.CacheByObject(), SyncPeriod: &syncPeriod},
		Metrics: metricsserver.Options{BindAddress: "0"},
	})
	if err != nil {
		return err
	}
	mgrCtx, stopManager := context.WithCancel(ctx)
	defer stopManager()
	opts := controllers.RenderOptions{ReceiverImage: "example.com/segment-webhook-receiver:bench"}
	if err := controllers.NewSegmentWebhookReconciler(mgr, opts).SetupWithManager(mgrCtx, mgr); err != nil {
		return err
	}

	runtime.GC()
	heapBefore := heapInuse()
	mem := startSampler(100 * time.Millisecond)
	defer mem.stop()
	managerDone := make(chan error, 1)
	go func() { managerDone <- mgr.Start(mgrCtx) }()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return fmt.Errorf("the manager's caches did not sync")
	}
	step("manager started (caches synced)")

	ns := "bench"
	if err := benchClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	if err := benchClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "collector"},
		StringData: map[string]string{"auth": "Bearer bench"}}); err != nil {
		return err
	}

	writesAtStart, err := apiServerWrites(ctx, clientset)
	if err != nil {
		return err
	}
	reconcilesAtStart := reconciles()
	start := time.Now()
	if err := createAll(ctx, benchClient, ns, n, workers); err != nil {
		return err
	}
	created := time.Since(start)
	step("%d SegmentWebhooks and Secrets created in %s", n, created.Round(time.Millisecond))

	poll := 250 * time.Millisecond
	if n >= 500 {
		poll = time.Second
	}
	var lastReport time.Time
	for {
		done, err := countReady(ctx, benchClient, ns, n)
		if err != nil {
			return err
		}
		if done == n {
			break
		}
		if time.Since(lastReport) > 5*time.Second {
			step("%d/%d ready (%.0f reconciles, %.0f errors)", done, n, reconciles()-reconcilesAtStart, reconcileErrors())
			lastReport = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("only %d of %d SegmentWebhooks ready before the timeout", done, n)
		case err := <-managerDone:
			return fmt.Errorf("the manager stopped: %v", err)
		case <-time.After(poll):
		}
	}
	allReady := time.Since(start)
	reconcilesToReady := reconciles() - reconcilesAtStart
	writesToReady, err := apiServerWrites(ctx, clientset)
	if err != nil {
		return err
	}
	writesToReady.sub(writesAtStart)
	delete(writesToReady, "POST segmentwebhooks") // the benchmark's own creates
	step("all %d ready after %s", n, allReady.Round(time.Millisecond))

	// Let trailing writes settle (status updates, Events), then measure a window in which the
	// controller reconciles every SegmentWebhook again at least once, with nothing changed.
	settle := time.Now()
	prev, err := apiServerWrites(ctx, clientset)
	if err != nil {
		return err
	}
	for quietSince := time.Now(); time.Since(quietSince) < 3*time.Second; {
		time.Sleep(500 * time.Millisecond)
		cur, err := apiServerWrites(ctx, clientset)
		if err != nil {
			return err
		}
		if cur.total() != prev.total() {
			quietSince = time.Now()
		}
		prev = cur
		if time.Since(settle) > 2*time.Minute {
			return fmt.Errorf("API writes did not stop within 2 minutes after all were ready")
		}
	}
	step("writes settled after %s; measuring a no-op resync window", time.Since(settle).Round(time.Millisecond))

	windowStart := time.Now()
	writesBefore := prev
	reconcilesBefore := reconciles()
	errorsBefore := reconcileErrors()
	for reconciles()-reconcilesBefore < float64(n) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("fewer than %d reconciles in the no-op window before the timeout", n)
		case <-time.After(100 * time.Millisecond):
		}
	}
	window := time.Since(windowStart)
	windowReconciles := reconciles() - reconcilesBefore
	writesAfter, err := apiServerWrites(ctx, clientset)
	if err != nil {
		return err
	}
	writesAfter.sub(writesBefore)
	windowErrors := reconcileErrors() - errorsBefore
	mem.stop()
	_, hwm, _ := procstat.Memory(0)

	fmt.Printf("\nOperator scale benchmark (envtest kube-apiserver + etcd, manager in-process, %d cores, %s)\n", runtime.NumCPU(), runtime.Version())
	fmt.Printf("  SegmentWebhooks (N)                 %d (each with its Secret; children: ConfigMap, Deployment, Service, PDB, Ingress)\n", n)
	fmt.Printf("  created in                          %s\n", created.Round(time.Millisecond))
	fmt.Printf("  time until all ready                %s (all children present, observedGeneration current, SecretsResolved=True)\n", allReady.Round(time.Millisecond))
	fmt.Printf("  reconciles until ready              %.0f (%.1f per SegmentWebhook, %.0f reconciles/s)\n",
		reconcilesToReady, reconcilesToReady/float64(n), reconcilesToReady/allReady.Seconds())
	fmt.Printf("  operator API writes until ready     %.0f (%.1f per SegmentWebhook: %s)\n", writesToReady.total(), writesToReady.total()/float64(n), writesToReady)
	fmt.Printf("  no-op resync window                 %s, %.0f reconciles (%.0f/s, %.0f errors), sync period %s\n",
		window.Round(time.Millisecond), windowReconciles, windowReconciles/window.Seconds(), windowErrors, syncPeriod)
	fmt.Printf("  API writes in the no-op window      %.0f %s\n", writesAfter.total(), writesAfter)
	fmt.Printf("  manager Go heap in use              %.1f MiB before start, %.1f MiB peak (sampled every 100ms)\n", mib(heapBefore), mib(mem.peak()))
	fmt.Printf("  process VmHWM                       %.1f MiB (manager + benchmark client)\n\n", mib(hwm))

	stopManager()
	if err := <-managerDone; err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	if writesAfter.total() != 0 {
		return fmt.Errorf("%.0f API writes while nothing changed: %s", writesAfter.total(), writesAfter)
	}
	return nil
}

func sample(ns string, i int) (*corev1.Secret, *segmentv1alpha1.SegmentWebhook) {
	name := fmt.Sprintf("events-%04d", i)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-segment"},
		StringData: map[string]string{"shared-secret": fmt.Sprintf("secret-%d", i)},
	}
	swh := &segmentv1alpha1.SegmentWebhook{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: segmentv1alpha1.SegmentWebhookSpec{
			SecretRefs: []segmentv1alpha1.SecretKeyRef{{Name: secret.Name, Key: "shared-secret"}},
			Targets: []segmentv1alpha1.Target{
				{
					Name: "warehouse",
					HTTP: &segmentv1alpha1.HTTPTarget{
						URL: "https://collector.example.com/segment",
						HeadersFrom: []segmentv1alpha1.HeaderFromSecret{{
							Name: "Authorization", SecretKeyRef: segmentv1alpha1.SecretKeyRef{Name: "collector", Key: "auth"},
						}},
					},
				},
				{
					Name: "analytics", Optional: true, DropFields: []string{"context.ip"},
					Filter: &segmentv1alpha1.TargetFilter{EventTypes: []segmentv1alpha1.EventType{"track"}},
					HTTP:   &segmentv1alpha1.HTTPTarget{URL: "http://analytics.tools.svc:8080/events"},
				},
			},
			Ingress: &segmentv1alpha1.IngressSpec{
				ClassName: ptr.To("nginx"), Host: name + ".segment.example.com", TLSSecretName: "segment-tls",
			},
		},
	}
	return secret, swh
}

func createAll(ctx context.Context, c client.Client, ns string, n, workers int) error {
	next := atomic.Int64{}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				secret, swh := sample(ns, i)
				if err := c.Create(ctx, secret); err != nil {
					errs <- err
					return
				}
				if err := c.Create(ctx, swh); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// countReady counts the SegmentWebhooks that have every child and an up-to-date status.
func countReady(ctx context.Context, c client.Client, ns string, n int) (int, error) {
	children := map[string]int{} // owner name -> kinds present
	managed := client.MatchingLabels{"app.kubernetes.io/managed-by": "segment-webhook-operator"}
	for _, list := range []client.ObjectList{
		&corev1.ConfigMapList{}, &appsv1.DeploymentList{}, &corev1.ServiceList{},
		&policyv1.PodDisruptionBudgetList{}, &networkingv1.IngressList{},
	} {
		if err := c.List(ctx, list, client.InNamespace(ns), managed); err != nil {
			return 0, err
		}
		if err := meta.EachListItem(list, func(o kruntime.Object) error {
			obj := o.(client.Object)
			if owner := metav1.GetControllerOf(obj); owner != nil && owner.Kind == "SegmentWebhook" {
				children[owner.Name]++
			}
			return nil
		}); err != nil {
			return 0, err
		}
	}
	var swhs segmentv1alpha1.SegmentWebhookList
	if err := c.List(ctx, &swhs, client.InNamespace(ns)); err != nil {
		return 0, err
	}
	ready := 0
	for _, swh := range swhs.Items {
		if children[swh.Name] != 5 || swh.Status.ObservedGeneration != swh.Generation {
			continue
		}
		if meta.IsStatusConditionTrue(swh.Status.Conditions, segmentv1alpha1.ConditionSecretsResolved) {
			ready++
		}
	}
	return min(ready, n), nil
}

// writes counts API server write requests by "verb resource".
type writes map[string]float64

func (w writes) total() float64 {
	var t float64
	for _, v := range w {
		t += v
	}
	return t
}

func (w writes) sub(o writes) {
	for k, v := range o {
		w[k] -= v
		if w[k] == 0 {
			delete(w, k)
		}
	}
}

func (w writes) String() string {
	keys := make([]string, 0, len(w))
	for k := range w {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%.0f", k, w[k]))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// writtenByOperator are the resources the operator writes: its children, its status and Events.
var writtenByOperator = []string{"configmaps", "deployments", "services", "ingresses", "horizontalpodautoscalers",
	"poddisruptionbudgets", "segmentwebhooks", "events"}

// apiServerWrites reads the API server's own request counter, so every write by any client counts.
// The benchmark itself writes only before the measurements it takes.
func apiServerWrites(ctx context.Context, cs *kubernetes.Clientset) (writes, error) {
	raw, err := cs.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	out := writes{}
	for _, m := range families["apiserver_request_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if slices.Contains([]string{"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"}, labels["verb"]) &&
			slices.Contains(writtenByOperator, labels["resource"]) {
			key := labels["verb"] + " " + labels["resource"]
			if labels["subresource"] != "" {
				key += "/" + labels["subresource"]
			}
			out[key] += m.GetCounter().GetValue()
		}
	}
	return out, nil
}

func reconcileCounter(result string) float64 {
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		return 0
	}
	var total float64
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			ours := false
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == "segmentwebhook" {
					ours = true
				}
				if result != "" && l.GetName() == "result" && l.GetValue() != result {
					continue series
				}
			}
			if ours {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

func reconciles() float64      { return reconcileCounter("") }
func reconcileErrors() float64 { return reconcileCounter("error") }

func heapInuse() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

type sampler struct {
	max  atomic.Uint64
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

func startSampler(every time.Duration) *sampler {
	s := &sampler{done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if h := heapInuse(); h > s.max.Load() {
				s.max.Store(h)
			}
			select {
			case <-s.done:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) stop() {
	s.once.Do(func() { close(s.done) })
	s.wg.Wait()
}

func (s *sampler) peak() uint64 { return s.max.Load() }

func mib[T uint64 | int64 | float64](b T) float64 { return float64(b) / (1 << 20) }
