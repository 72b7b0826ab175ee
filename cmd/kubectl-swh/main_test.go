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

// The plugin runs against a real kube-apiserver (envtest) with the real operator reconciling, and
// sends to the real receiver, run in-process with the config the operator renders for the
// SegmentWebhook (only secret file paths and target URLs are local), as a kubelet would run it.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
	"github.com/segment-webhook-operator/segment-webhook-operator/controllers"
	"github.com/segment-webhook-operator/segment-webhook-operator/internal/segmentsend"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

var (
	k8sClient  client.Client
	kubeconfig string
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS must name the envtest binaries: run 'make test', "+
			"or KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh) go test ./cmd/kubectl-swh")
		return 1
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(segmentv1alpha1.AddToScheme(scheme))
	if k8sClient, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	user, err := env.AddUser(envtest.User{Name: "swh-user", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	data, err := user.KubeConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "kubectl-swh-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, data, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	// The operator, wired as in cmd/manager.
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mgr, err := controllers.NewManager(ctx, cfg, controllers.ManagerOptions{
		Render:          controllers.RenderOptions{ReceiverImage: "receiver:test"},
		MetricsAddr:     "0",
		InsecureMetrics: true,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "the manager stopped with", err)
		}
	}()
	return m.Run()
}

// kubectlSWH runs the plugin's command line in-process with the test user's kubeconfig.
func kubectlSWH(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := newRootCommand(&out, &out)
	cmd.SetArgs(append([]string{"--kubeconfig", kubeconfig}, args...))
	err := cmd.ExecuteContext(context.Background())
	t.Logf("$ kubectl swh %s\n%s", strings.Join(args, " "), out.String())
	return out.String(), err
}

func wantOutput(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q", w)
		}
	}
}

// sink stands for the targets: it records what each target (URL path) received.
type sink struct {
	*httptest.Server
	status atomic.Int32
	mu     sync.Mutex
	got    map[string][][]byte
}

func newSink(t *testing.T) *sink {
	s := &sink{got: map[string][][]byte{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if code := int(s.status.Load()); code != 0 {
			w.WriteHeader(code)
			return
		}
		s.mu.Lock()
		s.got[strings.TrimPrefix(r.URL.Path, "/")] = append(s.got[strings.TrimPrefix(r.URL.Path, "/")], body)
		s.mu.Unlock()
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *sink) received(target string) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got[target]
}

// startReceiver runs the receiver with the config the operator rendered for swh (its ConfigMap):
// secret files are written from the Secrets, target URLs point at the sink. It returns the
// receiver's base URL.
func startReceiver(t *testing.T, swh *segmentv1alpha1.SegmentWebhook, targets *sink) string {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	cm := &corev1.ConfigMap{}
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		err := k8sClient.Get(ctx, client.ObjectKey{Namespace: swh.Namespace, Name: controllers.ChildName(swh)}, cm)
		return err == nil, client.IgnoreNotFound(err)
	}); err != nil {
		t.Fatalf("the operator rendered no receiver ConfigMap: %v", err)
	}
	cfg := &config.Config{}
	if err := json.Unmarshal([]byte(cm.Data["config.json"]), cfg); err != nil {
		t.Fatal(err)
	}
	local := func(podPath string) string {
		// Mounted Secret files live at .../<secret name>/<key>.
		name, key := filepath.Base(filepath.Dir(podPath)), filepath.Base(podPath)
		s := &corev1.Secret{}
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: swh.Namespace, Name: name}, s); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name, key)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, s.Data[key], 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for i, f := range cfg.Authentication.SecretFiles {
		cfg.Authentication.SecretFiles[i] = local(f)
	}
	for i := range cfg.Targets {
		cfg.Targets[i].HTTP.URL = targets.URL + "/" + cfg.Targets[i].Name
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := receiver.NewServer(path, receiver.Options{
		Addr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0", PollInterval: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("receiver: %v", err)
		}
	})
	return "http://" + srv.Addr()
}

func createNamespace(t *testing.T, name string) {
	t.Helper()
	if err := k8sClient.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
}

func create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := k8sClient.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

func secret(ns, name, key, value string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Data:       map[string][]byte{key: []byte(value)},
	}
}

// webhook is the README's sample, reduced to what these tests need: a required target for every
// event and an optional one for track "Order Completed" only.
func webhook(ns string) *segmentv1alpha1.SegmentWebhook {
	return &segmentv1alpha1.SegmentWebhook{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "events"},
		Spec: segmentv1alpha1.SegmentWebhookSpec{
			SecretRefs: []segmentv1alpha1.SecretKeyRef{{Name: "segment", Key: "shared-secret"}},
			Targets: []segmentv1alpha1.Target{{
				Name: "warehouse", HTTP: &segmentv1alpha1.HTTPTarget{URL: "https://collector.example.com/segment"},
			}, {
				Name: "analytics", Optional: true,
				Filter: &segmentv1alpha1.TargetFilter{EventTypes: []segmentv1alpha1.EventType{"track"}, TrackEvents: []string{"Order Completed"}},
				HTTP:   &segmentv1alpha1.HTTPTarget{URL: "http://analytics.tools.svc:8080/events"},
			}},
			Delivery: segmentv1alpha1.Delivery{Budget: &metav1.Duration{Duration: time.Second}, MaxAttempts: 2},
			Limits:   segmentv1alpha1.Limits{MaxEvents: 500, MaxBodyBytes: 2 << 20},
		},
	}
}

func TestSendHMAC(t *testing.T) {
	const ns = "send-hmac"
	createNamespace(t, ns)
	// A trailing newline, as --from-file often leaves: the receiver ignores it, so must the plugin.
	create(t, secret(ns, "segment", "shared-secret", "change-me\n"))
	swh := webhook(ns)
	create(t, swh)
	targets := newSink(t)
	base := startReceiver(t, swh, targets)

	out, err := kubectlSWH(t, "send", "events", "-n", ns, "--url", base)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	wantOutput(t, out, "POST "+base+"/webhook", "X-Signature: HMAC-SHA1 over the body with Secret segment, key shared-secret",
		"Answer: 200 OK", "Delivered: every required target accepted every event",
		"warehouse    http https://collector.example.com/segment, required: 1 of 1 events",
		"analytics    http http://analytics.tools.svc:8080/events, optional, delivered in the background: 1 of 1 events")
	if got := targets.received("warehouse"); len(got) != 1 || !strings.Contains(string(got[0]), `"Crème brûlée"`) {
		t.Errorf("warehouse received %q, want the sample track event", got)
	}

	out, err = kubectlSWH(t, "send", "events", "-n", ns, "--url", base, "--type", "batch")
	if err != nil {
		t.Fatalf("send --type batch: %v", err)
	}
	wantOutput(t, out, "an Actions batch of 3 events", "over element 0's bytes only", "Answer: 200 OK",
		"warehouse    http https://collector.example.com/segment, required: 3 of 3 events",
		`0 of 3 events (filter eventTypes=[track] trackEvents=["Order Completed"])`)
	if got := len(targets.received("warehouse")); got != 4 {
		t.Errorf("warehouse has %d events, want 1 + 3", got)
	}

	// The Actions destination's "Use X-Segment-Signature Header": HMAC over the whole body.
	out, err = kubectlSWH(t, "send", "events", "-n", ns, "--url", base, "--type", "batch", "--signature", "x-segment-signature")
	if err != nil {
		t.Fatalf("send --signature x-segment-signature: %v\n%s", err, out)
	}
	wantOutput(t, out, "X-Segment-Signature", "Answer: 200 OK")
	if got := len(targets.received("warehouse")); got != 7 {
		t.Errorf("warehouse has %d events, want 1 + 3 + 3", got)
	}

	// Without an Ingress there is no status.url: the plugin uses the in-cluster status.address,
	// which needs a port-forward from here, and says so.
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		err := k8sClient.Get(ctx, client.ObjectKeyFromObject(swh), swh)
		return err == nil && swh.Status.Address != nil, err
	}); err != nil {
		t.Fatalf("no status.address: %v", err)
	}
	if swh.Status.URL != "" {
		t.Errorf("status.url %q for a receiver reachable only inside the cluster", swh.Status.URL)
	}
	// A signed request over plain http is refused there, with the port-forward to use instead.
	_, err = kubectlSWH(t, "send", "events", "-n", ns)
	if err == nil {
		t.Fatal("sending a signed request over http to the in-cluster URL succeeded")
	}
	for _, want := range []string{"--insecure-http", "kubectl -n " + ns + " port-forward svc/events-receiver 8080:80",
		"kubectl swh send events -n " + ns + " --url http://127.0.0.1:8080"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	out, err = kubectlSWH(t, "send", "events", "-n", ns, "--insecure-http")
	if err == nil {
		t.Fatal("sending to the in-cluster URL from outside the cluster succeeded")
	}
	wantOutput(t, out, "POST http://events-receiver."+ns+".svc/webhook", "No answer",
		"kubectl -n "+ns+" port-forward svc/events-receiver 8080:80",
		"kubectl swh send events -n "+ns+" --url http://127.0.0.1:8080")
}

// TestSendKeepsCredentialsOffPlainHTTP: the bearer token or a signed request (replayable) is not
// sent over plain http to a host other than loopback without --insecure-http, and a redirect is
// the answer, never followed.
func TestSendKeepsCredentialsOffPlainHTTP(t *testing.T) {
	const ns = "send-plain-http"
	createNamespace(t, ns)
	create(t, secret(ns, "segment", "shared-secret", "change-me"), secret(ns, "segment-token", "token", "tok-123"))
	hmacHook := webhook(ns)
	bearerHook := webhook(ns)
	bearerHook.Name, bearerHook.Spec.SecretRefs = "bearer", nil
	bearerHook.Spec.Authentication = segmentv1alpha1.Authentication{
		Mode:                 segmentv1alpha1.AuthenticationBearer,
		BearerTokenSecretRef: &segmentv1alpha1.SecretKeyRef{Name: "segment-token", Key: "token"},
	}
	create(t, hmacHook, bearerHook)

	// A name that never resolves: had the request been sent, the answer would be "No answer".
	const remote = "http://receiver.invalid:8080"
	for _, name := range []string{"events", "bearer"} {
		out, err := kubectlSWH(t, "send", name, "-n", ns, "--url", remote)
		if err == nil || !strings.Contains(err.Error(), "--insecure-http") || strings.Contains(out, "No answer") {
			t.Errorf("%s over plain http to a remote host: err %v, want a refusal naming --insecure-http, nothing sent", name, err)
		}
		out, err = kubectlSWH(t, "send", name, "-n", ns, "--url", remote, "--insecure-http")
		if err == nil || !strings.Contains(out, "No answer") {
			t.Errorf("%s with --insecure-http: err %v, want it sent (and unanswered)", name, err)
		}
	}

	// A load balancer's redirect (http to https, say) is shown, not followed.
	var followed atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { followed.Add(1) }))
	t.Cleanup(elsewhere.Close)
	redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/webhook", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirecting.Close)
	for _, name := range []string{"events", "bearer"} {
		out, err := kubectlSWH(t, "send", name, "-n", ns, "--url", redirecting.URL)
		if err == nil {
			t.Errorf("%s: a redirect counted as delivered", name)
		}
		wantOutput(t, out, "Answer: 307 Temporary Redirect", `Redirected to "`+elsewhere.URL+`/webhook": not followed`)
	}
	if n := followed.Load(); n != 0 {
		t.Errorf("the redirect was followed %d times, with the credentials", n)
	}
}

// TestSendExplainsRefusals: a target that fails gives 503, a secret that differs from the
// receiver's 401, another path 404, a batch over the limits 413, each with what to check; the
// command then exits non-zero.
func TestSendExplainsRefusals(t *testing.T) {
	const ns = "send-refusals"
	createNamespace(t, ns)
	s := secret(ns, "segment", "shared-secret", "change-me")
	create(t, s)
	swh := webhook(ns)
	create(t, swh)
	targets := newSink(t)
	base := startReceiver(t, swh, targets)

	targets.status.Store(http.StatusInternalServerError)
	out, err := kubectlSWH(t, "send", "events", "-n", ns, "--url", base, "--type", "identify")
	var nd *notDeliveredError
	if !errors.As(err, &nd) || nd.code != http.StatusServiceUnavailable {
		t.Fatalf("send to a failing target: %v, want a 503 answer", err)
	}
	wantOutput(t, out, "Answer: 503 Service Unavailable", "Retry-After: 5", "Segment retries 503 for up to four hours",
		"warehouse    http https://collector.example.com/segment, required: 1 of 1 events",
		"kubectl -n "+ns+" logs deploy/events-receiver", `segment_receiver_target_failures_total{kind="transient"}`)
	targets.status.Store(0)

	// The Secret changes, the running receiver still has the old value.
	s.Data["shared-secret"] = []byte("rotated-in-the-secret-only")
	if err := k8sClient.Update(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	out, err = kubectlSWH(t, "send", "events", "-n", ns, "--url", base)
	if !errors.As(err, &nd) || nd.code != http.StatusUnauthorized {
		t.Fatalf("send with a secret the receiver does not have: %v, want a 401 answer", err)
	}
	wantOutput(t, out, "Answer: 401 Unauthorized", "Not authenticated", "signed with secretRefs[0]",
		"kubelet's sync", "Shared Secret must be exactly the Secret's value", "kubectl swh status events -n "+ns)
	if n := len(targets.received("warehouse")); n != 0 {
		t.Errorf("the targets received %d events from refused requests", n)
	}

	// A URL whose path the receiver does not serve.
	out, err = kubectlSWH(t, "send", "events", "-n", ns, "--url", base+"/segment")
	if !errors.As(err, &nd) || nd.code != http.StatusNotFound {
		t.Fatalf("send to another path: %v, want a 404 answer", err)
	}
	wantOutput(t, out, "Answer: 404 Not Found", "the receiver serves only /webhook")

	// A batch over limits.maxEvents.
	small := webhook(ns)
	small.Name = "small"
	small.Spec.Limits.MaxEvents = 2
	create(t, small)
	smallBase := startReceiver(t, small, targets)
	out, err = kubectlSWH(t, "send", "small", "-n", ns, "--url", smallBase, "--type", "batch")
	if !errors.As(err, &nd) || nd.code != http.StatusRequestEntityTooLarge {
		t.Fatalf("send a batch of 3 to maxEvents 2: %v, want a 413 answer", err)
	}
	wantOutput(t, out, "Answer: 413 Request Entity Too Large", "Segment does not retry 413",
		"limits.maxBodyBytes=2 MiB, limits.maxEvents=2", "lower the batch size in Segment")

	if _, err := kubectlSWH(t, "send", "missing", "-n", ns, "--url", base); err == nil ||
		!strings.Contains(err.Error(), "SegmentWebhook "+ns+"/missing not found") {
		t.Errorf("send to a missing SegmentWebhook: %v", err)
	}
	if _, err := kubectlSWH(t, "send", "events", "-n", ns, "--url", base, "--type", "delete"); err == nil {
		t.Error("an unknown --type was accepted")
	}
}

func TestSendBearer(t *testing.T) {
	const ns = "send-bearer"
	createNamespace(t, ns)
	create(t, secret(ns, "segment-token", "token", "tok-123"))
	swh := webhook(ns)
	swh.Spec.SecretRefs = nil
	swh.Spec.Authentication = segmentv1alpha1.Authentication{
		Mode:                 segmentv1alpha1.AuthenticationBearer,
		BearerTokenSecretRef: &segmentv1alpha1.SecretKeyRef{Name: "segment-token", Key: "token"},
	}
	create(t, swh)
	targets := newSink(t)
	base := startReceiver(t, swh, targets)

	out, err := kubectlSWH(t, "send", "events", "-n", ns, "--url", base+"/", "--type", "group")
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	wantOutput(t, out, "Authorization: Bearer <token from Secret segment-token, key token>", "Answer: 200 OK")
	if got := targets.received("warehouse"); len(got) != 1 || !strings.Contains(string(got[0]), `"type":"group"`) {
		t.Errorf("warehouse received %q", got)
	}
}

// TestStatus shows what the operator made of a SegmentWebhook and what to paste into Segment.
func TestStatus(t *testing.T) {
	const ns = "status"
	createNamespace(t, ns)
	create(t, secret(ns, "segment", "shared-secret", "change-me"))
	swh := webhook(ns)
	swh.Spec.Ingress = &segmentv1alpha1.IngressSpec{Host: "segment.example.com", Path: "/hooks/segment", TLSSecretName: "segment-tls"}
	create(t, swh)
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		err := k8sClient.Get(ctx, client.ObjectKeyFromObject(swh), swh)
		return err == nil && swh.Status.ObservedGeneration == swh.Generation &&
			meta.FindStatusCondition(swh.Status.Conditions, segmentv1alpha1.ConditionReady) != nil, err
	}); err != nil {
		t.Fatalf("the operator did not report a status: %v", err)
	}

	// No kubelet runs pods here: report the rollout done, as the Deployment controller would, so
	// the operator marks the SegmentWebhook Ready and records the Event that status shows.
	dep := &appsv1.Deployment{}
	if err := k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "events-receiver"}, dep); err != nil {
		t.Fatal(err)
	}
	n := *dep.Spec.Replicas
	dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: n, UpdatedReplicas: n,
		ReadyReplicas: n, AvailableReplicas: n}
	if err := k8sClient.Status().Update(context.Background(), dep); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		err := k8sClient.Get(ctx, client.ObjectKeyFromObject(swh), swh)
		return err == nil && meta.IsStatusConditionTrue(swh.Status.Conditions, segmentv1alpha1.ConditionReady), err
	}); err != nil {
		t.Fatalf("the operator did not report Ready: %v", err)
	}

	out, err := kubectlSWH(t, "status", "events", "-n", ns)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	// A PodDisruptionBudget exists exactly when the operator made one.
	pdbErr := k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "events-receiver"}, &policyv1.PodDisruptionBudget{})
	if hasPDB := strings.Contains(out, "PodDisruptionBudget/events-receiver"); hasPDB != (pdbErr == nil) {
		t.Errorf("status shows a PodDisruptionBudget: %t, the operator made one: %v", hasPDB, pdbErr)
	}
	wantOutput(t, out,
		"SegmentWebhook "+ns+"/events", "the status describes the current spec",
		"URL        https://segment.example.com/hooks/segment",
		"Conditions:", "Ready", "SecretsResolved",
		"ConfigMap/events-receiver", "Deployment/events-receiver", fmt.Sprintf("%d/%d ready, image receiver:test", n, n),
		"Service/events-receiver", "Ingress/events-receiver", "segment.example.com, TLS segment-tls",
		"Webhook URL    https://segment.example.com/hooks/segment",
		"Shared Secret  the value of Secret segment, key shared-secret",
		"Batch Size at most 500 (limits.maxEvents",
		"limits.maxBodyBytes=2 MiB: events averaging up to 4 KiB each",
		"batches of up to 64 always fit",
		"the receiver answers within 1s (delivery.budget)",
		"Events (last 10):", "Normal", "Ready", "the receiver is serving at https://segment.example.com/hooks/segment")
	if strings.Contains(out, "change-me") {
		t.Error("status printed the secret's value")
	}
	if _, err := kubectlSWH(t, "status", "nothing", "-n", ns); err == nil {
		t.Error("status of a missing SegmentWebhook succeeded")
	}
}

// TestExplainOtherAnswers covers the answers a sample request cannot provoke from a healthy
// receiver here: each one says whether Segment retries and what to look at.
func TestExplainOtherAnswers(t *testing.T) {
	swh := webhook("any")
	events, err := segmentsend.SampleEvents("track", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req, err := segmentsend.NewRequest(events, false, segmentsend.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	for code, want := range map[int][]string{
		http.StatusBadRequest:           {"Segment does not retry 400", "validation is Strict", "validation: Lenient"},
		http.StatusUnsupportedMediaType: {"a proxy on the way changed it"},
		http.StatusTooManyRequests:      {"Segment retries 429; Retry-After: 2", "Add replicas or spec.autoscaling"},
		http.StatusBadGateway:           {"502 does not come from the receiver", "kubectl swh status events -n any"},
	} {
		h := http.Header{}
		h.Set("Retry-After", "2")
		got := explain(swh, req, &segmentsend.Response{Code: code, Header: h}, segmentsend.XSignature)
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%d: explanation lacks %q:\n%s", code, w, got)
			}
		}
	}
}
