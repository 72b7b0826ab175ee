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
// it creates unrelated Secrets (10,000 by default, as in a busy cluster), starts the real manager
// binary (bin/manager) as its own process, creates N SegmentWebhooks, each with its own Secret,
// measures the time until every one has all its children and an up-to-date status, then counts the
// API writes and Secret reads during a resync window in which nothing changed (both must be zero),
// and last restarts the manager and counts what the new one reads and writes until it has
// reconciled every SegmentWebhook (writes must be zero). The manager's memory is its resident set, read from its own /proc/<pid>/status: once its caches
// have synced with only the unrelated Secrets, and at the end. Run it with hack/bench-operator.sh
// (make bench-operator).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sync/errgroup"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
	"github.com/segment-webhook-operator/segment-webhook-operator/internal/procstat"
)

func main() {
	n := flag.Int("n", envInt("BENCH_N", 100), "number of SegmentWebhooks (env BENCH_N)")
	unrelated := flag.Int("unrelated-secrets", 10000, "Secrets no SegmentWebhook references, created before the manager starts")
	syncPeriod := flag.Duration("sync-period", 10*time.Second, "the manager's --sync-period: every SegmentWebhook is reconciled again this often")
	concurrency := flag.Int("max-concurrent-reconciles", 0, "the manager's --max-concurrent-reconciles; 0 keeps its default")
	memLimit := flag.String("gomemlimit", "", "GOMEMLIMIT of the manager (such as 96MiB), as a Deployment would set from its memory limit; empty leaves the Go default")
	profileDir := flag.String("profile-dir", "", "save pprof profiles here: CPU of the manager and the kube-apiserver over the first 20 s after the creates start, and the manager's heap at the end")
	manager := flag.String("manager", filepath.Join("bin", "manager"), "the manager binary (make build)")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	crdDir := flag.String("crd-dir", filepath.Join("config", "crd", "bases"), "directory of the CRD manifests")
	workers := flag.Int("create-workers", 16, "concurrent creates")
	flag.Parse()

	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fail("KUBEBUILDER_ASSETS must name the envtest binaries (hack/envtest-assets.sh prints them)")
	}
	logf.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	// On SIGINT or SIGTERM the run stops and envtest's processes and the manager are stopped too.
	sigCtx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(sigCtx, *timeout)
	defer cancel()
	b := bench{n: *n, unrelated: *unrelated, syncPeriod: *syncPeriod, concurrency: *concurrency,
		managerBin: *manager, crdDir: *crdDir, workers: *workers, profileDir: *profileDir, memLimit: *memLimit}
	if err := b.run(ctx); err != nil {
		fail(err.Error())
	}
}

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

type bench struct {
	n, unrelated, concurrency, workers int
	syncPeriod                         time.Duration
	managerBin, crdDir, profileDir     string
	memLimit                           string

	cfg         *rest.Config
	client      client.Client
	clientset   *kubernetes.Clientset
	metricsAddr string
	pprofAddr   string
}

func step(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func (b *bench) run(ctx context.Context) (retErr error) {
	testEnv := &envtest.Environment{CRDDirectoryPaths: []string{b.crdDir}, ErrorIfCRDPathMissing: true}
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
	b.cfg = cfg
	if b.client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	if b.clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}

	start := time.Now()
	if err := b.createUnrelatedSecrets(ctx); err != nil {
		return err
	}
	step("%d unrelated Secrets created in %s", b.unrelated, time.Since(start).Round(time.Millisecond))

	mgr, err := b.startManager(ctx, testEnv)
	if err != nil {
		return err
	}
	defer func() {
		mgr.stop()
		if retErr == nil { // keep the manager's log when the run failed
			_ = os.RemoveAll(filepath.Dir(mgr.logPath))
		}
	}()
	baseline, _, err := procstat.Memory(mgr.cmd.Process.Pid)
	if err != nil {
		return err
	}
	step("manager started (pid %d, caches synced, RSS %.1f MiB)", mgr.cmd.Process.Pid, mib(baseline))

	ns := "bench"
	if err := b.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	if err := b.client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "collector"},
		StringData: map[string]string{"auth": "Bearer bench"}}); err != nil {
		return err
	}

	countersAtStart, err := b.apiServerRequests(ctx)
	if err != nil {
		return err
	}
	reconcilesAtStart, err := b.reconciles(ctx, "")
	if err != nil {
		return err
	}
	// Readiness is watched, not polled: listing thousands of children every second would load the
	// API server the benchmark measures.
	watcher, err := client.NewWithWatch(b.cfg, client.Options{Scheme: b.client.Scheme()})
	if err != nil {
		return err
	}
	applied := map[string]bool{}
	// watchApplied lists the SegmentWebhooks, then watches them from there; it is called again
	// when the API server ends the watch.
	watchApplied := func() (watch.Interface, error) {
		var list segmentv1alpha1.SegmentWebhookList
		if err := b.client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return nil, err
		}
		for i := range list.Items {
			if childrenApplied(&list.Items[i]) {
				applied[list.Items[i].Name] = true
			}
		}
		return watcher.Watch(ctx, &segmentv1alpha1.SegmentWebhookList{},
			&client.ListOptions{Namespace: ns, Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
	}
	events, err := watchApplied()
	if err != nil {
		return err
	}
	defer func() { events.Stop() }()
	var profiling errgroup.Group
	if b.profileDir != "" {
		profiling.Go(func() error {
			return b.saveProfile(ctx, b.clientset.RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", strconv.Itoa(profileSeconds)), "kube-apiserver-cpu.pprof")
		})
		profiling.Go(func() error {
			return b.saveProfile(ctx, b.managerPprof().AbsPath("/debug/pprof/profile").Param("seconds", strconv.Itoa(profileSeconds)),
				"manager-cpu.pprof")
		})
	}
	start, cpuAtStart := time.Now(), cpuTimes(mgr.cmd.Process.Pid)
	if err := createAll(ctx, b.client, ns, b.n, b.workers); err != nil {
		return err
	}
	created := time.Since(start)
	step("%d SegmentWebhooks and Secrets created in %s", b.n, created.Round(time.Millisecond))

	report := time.NewTicker(5 * time.Second)
	defer report.Stop()
	for len(applied) < b.n {
		select {
		case ev, ok := <-events.ResultChan():
			if !ok {
				if events, err = watchApplied(); err != nil {
					return err
				}
				continue
			}
			if swh, ok := ev.Object.(*segmentv1alpha1.SegmentWebhook); ok && childrenApplied(swh) {
				applied[swh.Name] = true
			}
		case <-report.C:
			r, _ := b.reconciles(ctx, "")
			step("%d/%d ready (%.0f reconciles)", len(applied), b.n, r-reconcilesAtStart)
		case <-ctx.Done():
			return fmt.Errorf("only %d of %d SegmentWebhooks ready before the timeout", len(applied), b.n)
		case err := <-mgr.done:
			return fmt.Errorf("the manager stopped: %v (log: %s)", err, mgr.logPath)
		}
	}
	allReady := time.Since(start)
	cpuToReady := cpuTimes(mgr.cmd.Process.Pid).since(cpuAtStart, allReady)
	if done, err := countReady(ctx, b.client, ns, b.n); err != nil || done != b.n {
		return fmt.Errorf("the status says all children are applied, yet %d of %d SegmentWebhooks have them all (%v)", done, b.n, err)
	}
	reconcilesNow, err := b.reconciles(ctx, "")
	if err != nil {
		return err
	}
	reconcilesToReady := reconcilesNow - reconcilesAtStart
	toReady, err := b.apiServerRequests(ctx)
	if err != nil {
		return err
	}
	toReady.sub(countersAtStart)
	writesToReady := toReady.writes()
	delete(writesToReady, "POST segmentwebhooks") // the benchmark's own creates
	step("all %d ready after %s", b.n, allReady.Round(time.Millisecond))
	eventReasons, err := b.eventReasons(ctx, ns)
	if err != nil {
		return err
	}

	// Let trailing writes settle (status updates, Events), then measure a window in which the
	// controller reconciles every SegmentWebhook again at least once, with nothing changed.
	settle := time.Now()
	prev, err := b.apiServerRequests(ctx)
	if err != nil {
		return err
	}
	for quietSince := time.Now(); time.Since(quietSince) < 3*time.Second; {
		time.Sleep(500 * time.Millisecond)
		cur, err := b.apiServerRequests(ctx)
		if err != nil {
			return err
		}
		if cur.writes().total() != prev.writes().total() {
			quietSince = time.Now()
		}
		prev = cur
		if time.Since(settle) > 2*time.Minute {
			return fmt.Errorf("API writes did not stop within 2 minutes after all were ready")
		}
	}
	step("writes settled after %s; measuring a no-op resync window", time.Since(settle).Round(time.Millisecond))

	windowStart := time.Now()
	before := prev
	reconcilesBefore, err := b.reconciles(ctx, "")
	if err != nil {
		return err
	}
	errorsBefore, err := b.reconciles(ctx, "error")
	if err != nil {
		return err
	}
	var windowReconciles float64
	for windowReconciles < float64(b.n) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("fewer than %d reconciles in the no-op window before the timeout", b.n)
		case <-time.After(100 * time.Millisecond):
		}
		r, err := b.reconciles(ctx, "")
		if err != nil {
			return err
		}
		windowReconciles = r - reconcilesBefore
	}
	window := time.Since(windowStart)
	after, err := b.apiServerRequests(ctx)
	if err != nil {
		return err
	}
	after.sub(before)
	windowWrites, windowSecretReads := after.writes(), after.secretReads()
	errorsAfter, err := b.reconciles(ctx, "error")
	if err != nil {
		return err
	}
	mem, err := procstat.Read(mgr.cmd.Process.Pid)
	if err != nil {
		return err
	}
	goMemory := map[string]float64{}
	for _, name := range []string{"go_memstats_heap_alloc_bytes", "go_memstats_heap_inuse_bytes", "go_memstats_next_gc_bytes",
		"go_memstats_heap_idle_bytes", "go_memstats_heap_released_bytes", "go_memstats_sys_bytes"} {
		if goMemory[name], err = b.managerMetric(ctx, name, nil); err != nil {
			return err
		}
	}
	if err := profiling.Wait(); err != nil {
		return fmt.Errorf("profiling: %w", err)
	}
	if b.profileDir != "" {
		if err := b.saveProfile(ctx, b.managerPprof().AbsPath("/debug/pprof/heap"), "manager-heap.pprof"); err != nil {
			return fmt.Errorf("profiling: %w", err)
		}
	}

	fmt.Printf("\nOperator scale benchmark (envtest kube-apiserver + etcd, manager as its own process, %d cores, %s)\n", runtime.NumCPU(), runtime.Version())
	fmt.Printf("  SegmentWebhooks (N)                 %d (each with its Secret; children: ConfigMap, Deployment, Service, PDB, Ingress)\n", b.n)
	fmt.Printf("  unrelated Secrets in the cluster    %d\n", b.unrelated)
	if b.memLimit != "" {
		fmt.Printf("  manager GOMEMLIMIT                  %s\n", b.memLimit)
	}
	fmt.Printf("  created in                          %s\n", created.Round(time.Millisecond))
	fmt.Printf("  time until all ready                %s (status current with every child applied, then all 5 children listed)\n", allReady.Round(time.Millisecond))
	fmt.Printf("  CPU until ready                     %s (user+system, /proc/<pid>/stat)\n", cpuToReady)
	fmt.Printf("  reconciles until ready              %.0f (%.1f per SegmentWebhook, %.0f reconciles/s)\n",
		reconcilesToReady, reconcilesToReady/float64(b.n), reconcilesToReady/allReady.Seconds())
	fmt.Printf("  operator API writes until ready     %.0f (%.1f per SegmentWebhook: %s)\n", writesToReady.total(), writesToReady.total()/float64(b.n), writesToReady)
	fmt.Printf("  Events recorded until ready         %s\n", eventReasons)
	fmt.Printf("  Secret reads until ready            %.0f %s\n", toReady.secretReads().total(), toReady.secretReads())
	fmt.Printf("  no-op resync window                 %s, %.0f reconciles (%.0f/s, %.0f errors), sync period %s\n",
		window.Round(time.Millisecond), windowReconciles, windowReconciles/window.Seconds(), errorsAfter-errorsBefore, b.syncPeriod)
	fmt.Printf("  API writes in the no-op window      %.0f %s\n", windowWrites.total(), windowWrites)
	fmt.Printf("  Secret reads in the no-op window    %.0f %s\n", windowSecretReads.total(), windowSecretReads)
	fmt.Printf("  manager RSS (/proc/%d/status)   %.1f MiB with the unrelated Secrets only, %.1f MiB at the end, %.1f MiB peak (VmHWM)\n",
		mgr.cmd.Process.Pid, mib(baseline), mib(mem.RSS), mib(mem.HWM))
	fmt.Printf("  manager resident set at the end     %.1f MiB anonymous (Go heap, stacks, runtime), %.1f MiB file-backed (the binary)\n", mib(mem.Anon), mib(mem.File))
	fmt.Printf("  manager Go memory at the end        heap %.1f MiB allocated, %.1f MiB in use, next GC at %.1f MiB; %.1f MiB idle of which %.1f MiB returned to the OS; %.1f MiB obtained from the OS\n",
		mib(goMemory["go_memstats_heap_alloc_bytes"]), mib(goMemory["go_memstats_heap_inuse_bytes"]), mib(goMemory["go_memstats_next_gc_bytes"]),
		mib(goMemory["go_memstats_heap_idle_bytes"]), mib(goMemory["go_memstats_heap_released_bytes"]), mib(goMemory["go_memstats_sys_bytes"]))
	if windowWrites.total() != 0 || windowSecretReads.total() != 0 {
		return fmt.Errorf("%.0f API writes and %.0f Secret reads while nothing changed", windowWrites.total(), windowSecretReads.total())
	}

	// A restarted manager has no memory of what it applied: it reads each child once, from the
	// API server's watch cache, to verify the fields it owns, and writes nothing.
	step("restarting the manager")
	mgr.stop()
	_ = os.RemoveAll(filepath.Dir(mgr.logPath))
	beforeRestart, err := b.apiServerRequests(ctx)
	if err != nil {
		return err
	}
	restarted := time.Now()
	if mgr, err = b.startManager(ctx, testEnv); err != nil {
		return err
	}
	for {
		r, err := b.reconciles(ctx, "")
		if err != nil {
			return err
		}
		if r >= float64(b.n) {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the restarted manager reconciled %.0f of %d SegmentWebhooks before the timeout", r, b.n)
		case <-time.After(100 * time.Millisecond):
		}
	}
	afterRestart, err := b.apiServerRequests(ctx)
	if err != nil {
		return err
	}
	afterRestart.sub(beforeRestart)
	restartWrites := afterRestart.writes()
	childReads := afterRestart.filter(func(verb, resource string) bool {
		return verb == "GET" && slices.Contains(writtenByOperator, resource) && resource != "segmentwebhooks" && resource != "events"
	})
	fmt.Printf("  after a manager restart             every SegmentWebhook reconciled %s after the start; API writes %.0f %s, child reads %.0f %s, Secret reads %.0f\n\n",
		time.Since(restarted).Round(time.Millisecond), restartWrites.total(), restartWrites, childReads.total(), childReads, afterRestart.secretReads().total())
	if restartWrites.total() != 0 {
		return fmt.Errorf("the restarted manager wrote %.0f times although nothing changed", restartWrites.total())
	}
	return nil
}

// createUnrelatedSecrets fills a namespace with Secrets no SegmentWebhook references, each
// carrying a kubectl last-applied annotation like Secrets applied with kubectl do.
func (b *bench) createUnrelatedSecrets(ctx context.Context) error {
	if b.unrelated == 0 {
		return nil
	}
	ns := "unrelated"
	if err := b.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	value := strings.Repeat("x", 512)
	return parallel(ctx, b.unrelated, 32, func(i int) error {
		name := fmt.Sprintf("app-%05d", i)
		return b.client.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name},
				Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"data":{"token":"` + value + `"}}`}},
			StringData: map[string]string{"token": value},
		})
	})
}

type managerProcess struct {
	cmd     *exec.Cmd
	done    chan error
	logPath string
}

//nolint:errcheck // it waits for the process it stops; the exit status is the stop's
func (m *managerProcess) stop() {
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
}

// startManager runs bin/manager against envtest with a kubeconfig of its own, plain-HTTP metrics
// on loopback (to count reconciles), and waits until it is ready (caches synced).
func (b *bench) startManager(ctx context.Context, testEnv *envtest.Environment) (*managerProcess, error) {
	user, err := testEnv.AddUser(envtest.User{Name: "segment-webhook-operator", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bench-operator-")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "kubeconfig"), kubeconfig, 0o600); err != nil {
		return nil, err
	}
	metricsPort, probePort, pprofPort, err := freePorts()
	if err != nil {
		return nil, err
	}
	b.metricsAddr = fmt.Sprintf("127.0.0.1:%d", metricsPort)
	args := []string{
		"--receiver-image=example.com/segment-webhook-receiver:bench",
		"--metrics-bind-address=" + b.metricsAddr, "--metrics-secure=false",
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", probePort),
		"--sync-period=" + b.syncPeriod.String(),
	}
	if b.profileDir != "" {
		b.pprofAddr = fmt.Sprintf("127.0.0.1:%d", pprofPort)
		args = append(args, "--pprof-bind-address="+b.pprofAddr)
	}
	if b.concurrency > 0 {
		args = append(args, fmt.Sprintf("--max-concurrent-reconciles=%d", b.concurrency))
	}
	logFile, err := os.Create(filepath.Join(dir, "manager.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(b.managerBin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(dir, "kubeconfig"))
	if b.memLimit != "" {
		cmd.Env = append(cmd.Env, "GOMEMLIMIT="+b.memLimit)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (make build): %w", b.managerBin, err)
	}
	m := &managerProcess{cmd: cmd, done: make(chan error, 1), logPath: logFile.Name()}
	go func() { m.done <- cmd.Wait(); logFile.Close() }()
	ready := fmt.Sprintf("http://127.0.0.1:%d/readyz", probePort)
	for {
		if resp, err := http.Get(ready); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				// readyz answers before the informers have listed; the first reconcile metric
				// series appears once the controller has started, after its caches synced.
				if _, err := b.reconciles(ctx, ""); err == nil {
					return m, nil
				}
			}
		}
		select {
		case err := <-m.done:
			return nil, fmt.Errorf("the manager exited: %v (log: %s)", err, m.logPath)
		case <-ctx.Done():
			m.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// eventReasons counts the Events in namespace ns by type, reason and the controller that reported
// them (the API server reports some too).
func (b *bench) eventReasons(ctx context.Context, ns string) (counts, error) {
	list, err := b.clientset.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := counts{}
	for _, e := range list.Items {
		out[e.Type+" "+e.Reason+" by "+e.ReportingController]++
	}
	return out, nil
}

// procStat returns a process's command name, parent and user+system CPU time, from
// /proc/<pid>/stat (clock ticks of 1/100 s).
func procStat(pid int) (comm string, ppid int, cpu float64, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, 0, err
	}
	open, end := strings.IndexByte(string(raw), '('), strings.LastIndexByte(string(raw), ')')
	// Fields after the parenthesised command name: the parent is the 4th, utime and stime the
	// 14th and 15th.
	fields := strings.Fields(string(raw[end+2:]))
	ppid, _ = strconv.Atoi(fields[1])
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return string(raw[open+1 : end]), ppid, (utime + stime) / 100, nil
}

// cpuTime is the CPU time used so far by each process of the benchmark, by role.
type cpuTime map[string]float64

// cpuRoles are the processes of the benchmark, in the order they are reported.
var cpuRoles = []string{"kube-apiserver", "etcd", "manager", "benchmark"}

// cpuTimes reads the CPU time of envtest's kube-apiserver and etcd (this process's children),
// the manager and the benchmark itself: the machine is shared, so time to ready is the sum of
// their work divided by the cores.
func cpuTimes(manager int) cpuTime {
	use := cpuTime{}
	_, _, use["manager"], _ = procStat(manager)
	_, _, use["benchmark"], _ = procStat(os.Getpid())
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if comm, ppid, cpu, err := procStat(pid); err == nil && ppid == os.Getpid() && (comm == "kube-apiserver" || comm == "etcd") {
			use[comm] += cpu
		}
	}
	return use
}

// since describes the CPU time used since start, and how many cores that kept busy during d.
func (use cpuTime) since(start cpuTime, d time.Duration) string {
	parts := make([]string, 0, len(cpuRoles))
	var total float64
	for _, role := range cpuRoles {
		used := use[role] - start[role]
		total += used
		parts = append(parts, fmt.Sprintf("%s %.1f s", role, used))
	}
	return fmt.Sprintf("%s; %.2f of %d cores busy", strings.Join(parts, ", "), total/d.Seconds(), runtime.NumCPU())
}

func freePorts() (int, int, int, error) {
	var ports []int
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, 0, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports[0], ports[1], ports[2], nil
}

// managerPprof is a REST client of the manager's net/http/pprof endpoint.
func (b *bench) managerPprof() *rest.Request {
	c, err := rest.RESTClientFor(&rest.Config{Host: "http://" + b.pprofAddr, ContentConfig: rest.ContentConfig{
		GroupVersion: &corev1.SchemeGroupVersion, NegotiatedSerializer: clientgoscheme.Codecs.WithoutConversion()}})
	if err != nil {
		panic(err) // the config is static
	}
	return c.Get()
}

// saveProfile saves the pprof profile req answers into the profile directory.
func (b *bench) saveProfile(ctx context.Context, req *rest.Request, name string) error {
	raw, err := req.Timeout(time.Minute + profileSeconds*time.Second).DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return os.WriteFile(filepath.Join(b.profileDir, name), raw, 0o644)
}

// profileSeconds is how long CPU profiles last.
const profileSeconds = 20

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
	return parallel(ctx, n, workers, func(i int) error {
		secret, swh := sample(ns, i)
		if err := c.Create(ctx, secret); err != nil {
			return err
		}
		return c.Create(ctx, swh)
	})
}

// parallel runs do(0..n-1) on workers goroutines and returns the first error.
func parallel(ctx context.Context, n, workers int, do func(i int) error) error {
	g, ctx := errgroup.WithContext(ctx)
	next := atomic.Int64{}
	for range workers {
		g.Go(func() error {
			for i := int(next.Add(1)) - 1; i < n && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				if err := do(i); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// childrenApplied: the status describes the current generation, the Secrets resolved and every
// child was applied; the receiver now waits for its Deployment to roll out (no kubelet runs here).
func childrenApplied(swh *segmentv1alpha1.SegmentWebhook) bool {
	ready := meta.FindStatusCondition(swh.Status.Conditions, segmentv1alpha1.ConditionReady)
	return swh.Status.ObservedGeneration == swh.Generation && ready != nil &&
		meta.IsStatusConditionTrue(swh.Status.Conditions, segmentv1alpha1.ConditionSecretsResolved) &&
		(ready.Reason == segmentv1alpha1.ReasonDeploymentProgressing || ready.Reason == segmentv1alpha1.ReasonReady)
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

// counts tallies by key: API server requests by "verb resource[/subresource]", Events by
// "type reason by controller".
type counts map[string]float64

func (w counts) total() float64 {
	var t float64
	for _, v := range w {
		t += v
	}
	return t
}

func (w counts) sub(o counts) {
	for k, v := range o {
		w[k] -= v
		if w[k] == 0 {
			delete(w, k)
		}
	}
}

func (w counts) filter(keep func(verb, resource string) bool) counts {
	out := counts{}
	for k, v := range w {
		verb, resource, _ := strings.Cut(k, " ")
		resource, _, _ = strings.Cut(resource, "/")
		if keep(verb, resource) {
			out[k] = v
		}
	}
	return out
}

// writes are the write requests to what the operator writes: its children, its status, Events.
func (w counts) writes() counts {
	return w.filter(func(verb, resource string) bool {
		return slices.Contains([]string{"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"}, verb) &&
			slices.Contains(writtenByOperator, resource)
	})
}

// secretReads are the GETs and LISTs of Secrets (the manager's one watch is not a read).
func (w counts) secretReads() counts {
	return w.filter(func(verb, resource string) bool {
		return resource == "secrets" && (verb == "GET" || verb == "LIST")
	})
}

func (w counts) String() string {
	keys := slices.Sorted(maps.Keys(w))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%.0f", k, w[k]))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// writtenByOperator are the resources the operator writes: its children, its status and Events.
var writtenByOperator = []string{"configmaps", "deployments", "services", "ingresses", "horizontalpodautoscalers",
	"poddisruptionbudgets", "segmentwebhooks", "events"}

// apiServerRequests reads the API server's own request counter, so every request by any client
// counts. The benchmark itself writes only before the measurements it takes, and reads Secrets
// never; its own polling lists only children and SegmentWebhooks.
func (b *bench) apiServerRequests(ctx context.Context) (counts, error) {
	raw, err := b.clientset.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	out := counts{}
	for _, m := range families["apiserver_request_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		key := labels["verb"] + " " + labels["resource"]
		if labels["subresource"] != "" {
			key += "/" + labels["subresource"]
		}
		out[key] += m.GetCounter().GetValue()
	}
	return out, nil
}

// reconciles reads controller_runtime_reconcile_total of the SegmentWebhook controller from the
// manager's metrics endpoint, for one result ("" sums all).
func (b *bench) reconciles(ctx context.Context, result string) (float64, error) {
	return b.managerMetric(ctx, "controller_runtime_reconcile_total", func(labels map[string]string) bool {
		return labels["controller"] == "segmentwebhook" && (result == "" || labels["result"] == result)
	})
}

// managerMetric sums the series of one metric of the manager whose labels match (nil: all).
func (b *bench) managerMetric(ctx context.Context, name string, match func(labels map[string]string) bool) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.metricsAddr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, err
	}
	family, ok := families[name]
	if !ok {
		return 0, fmt.Errorf("the manager has no %s yet", name)
	}
	var total float64
	for _, m := range family.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if match == nil || match(labels) {
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return total, nil
}

func mib[T uint64 | int64 | float64](b T) float64 { return float64(b) / (1 << 20) }
