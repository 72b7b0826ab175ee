package receiver

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/segment-webhook-operator/segment-webhook-operator/internal/kubevolume"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// volume is a directory laid out like a mounted ConfigMap or Secret (see kubevolume).
type volume = kubevolume.TestDir

func newVolume(t testing.TB, files map[string]string) *volume {
	v := kubevolume.NewTestDir(t, files)
	return &v
}

// sink is a downstream HTTP target that records what it receives.
type sink struct {
	*httptest.Server
	status  atomic.Int32                          // answer with this code; 0 means 200
	decide  atomic.Pointer[func(body string) int] // when set, the code for each request
	delay   atomic.Int64                          // answer after this many nanoseconds
	gate    atomic.Pointer[chan struct{}]
	arrived chan struct{} // gets a value for every request, if anyone listens

	mu       sync.Mutex
	received []received
}

type received struct {
	method string
	header http.Header
	body   string
	status int
}

func newSink(t testing.TB) *sink {
	s := &sink{arrived: make(chan struct{}, 1024)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case s.arrived <- struct{}{}:
		default:
		}
		if gate := s.gate.Load(); gate != nil {
			<-*gate
		}
		if d := s.delay.Load(); d > 0 {
			time.Sleep(time.Duration(d)) // a target that far away
		}
		code := int(s.status.Load())
		if decide := s.decide.Load(); decide != nil {
			code = (*decide)(string(body))
		}
		if code == 0 {
			code = http.StatusOK
		}
		s.mu.Lock()
		s.received = append(s.received, received{method: r.Method, header: r.Header.Clone(), body: string(body), status: code})
		s.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(s.Close)
	return s
}

// hold makes the sink wait before answering until the returned func is called.
func (s *sink) hold() (release func()) {
	gate := make(chan struct{})
	s.gate.Store(&gate)
	var once sync.Once
	return func() {
		once.Do(func() {
			s.gate.Store(nil)
			close(gate)
		})
	}
}

func (s *sink) all() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.received...)
}

// accepted returns the requests the sink answered 2xx.
func (s *sink) accepted() []received {
	var out []received
	for _, r := range s.all() {
		if r.status < 300 {
			out = append(out, r)
		}
	}
	return out
}

// acceptedIDs counts accepted deliveries per Idempotency-Key.
func (s *sink) acceptedIDs() map[string]int {
	ids := map[string]int{}
	for _, r := range s.accepted() {
		ids[r.header.Get("Idempotency-Key")]++
	}
	return ids
}

// acceptedEvents counts the events of accepted requests per messageId; a request body may be one
// event or an array of them.
func (s *sink) acceptedEvents(t testing.TB) map[string]int {
	t.Helper()
	ids := map[string]int{}
	for _, r := range s.accepted() {
		for _, id := range messageIDs(t, r.body) {
			ids[id]++
		}
	}
	return ids
}

// messageIDs lists the messageIds of a body holding one event or an array of them.
func messageIDs(t testing.TB, body string) []string {
	t.Helper()
	var events []struct {
		MessageID string `json:"messageId"`
	}
	if strings.HasPrefix(body, "[") {
		if err := json.Unmarshal([]byte(body), &events); err != nil {
			t.Fatalf("sink got an invalid array: %v", err)
		}
	} else {
		events = append(events, struct {
			MessageID string `json:"messageId"`
		}{})
		if err := json.Unmarshal([]byte(body), &events[0]); err != nil {
			t.Fatalf("sink got an invalid event: %v", err)
		}
	}
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.MessageID
	}
	return ids
}

func httpTargetTo(name string, s *sink) config.Target {
	return config.Target{Name: name, HTTP: &config.HTTPTarget{URL: s.URL + "/ingest"}}
}

// harness runs a receiver in-process on loopback listeners.
type harness struct {
	t          testing.TB
	server     *Server
	base       string // http://host:port
	url        string // webhook URL
	metricsURL string
	secret     string // signs requests by default
	configVol  *volume
	secretVol  *volume
	cancel     context.CancelFunc
	done       chan error
}

const testSecret = "test-secret"

// testConfig is a small-budget config with one HMAC secret file from secretVol ("hmac").
func testConfig(secretVol *volume, targets ...config.Target) *config.Config {
	return &config.Config{
		Source:         "team-a/checkout",
		Authentication: config.Authentication{Mode: config.AuthHMAC, SecretFiles: []string{secretVol.Path("hmac")}},
		Limits:         config.Limits{MaxBodyBytes: 64 << 10},
		Delivery: config.Delivery{
			Budget:         config.D(2 * time.Second),
			MaxAttempts:    3,
			InitialBackoff: config.D(5 * time.Millisecond),
			MaxBackoff:     config.D(20 * time.Millisecond),
		},
		Targets: targets,
	}
}

func configJSON(t testing.TB, cfg *config.Config) string {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// startHarness writes cfg into a fresh config volume and runs a receiver on it. The secret
// volume must be the one cfg's files point into.
func startHarness(t testing.TB, secretVol *volume, cfg *config.Config, tune ...func(*Options)) *harness {
	t.Helper()
	configVol := newVolume(t, map[string]string{config.FileName: configJSON(t, cfg)})
	return startHarnessOn(t, configVol, secretVol, tune...)
}

func startHarnessOn(t testing.TB, configVol, secretVol *volume, tune ...func(*Options)) *harness {
	t.Helper()
	opts := Options{
		Logger:       testLogger(t),
		Registry:     prometheus.NewRegistry(),
		Addr:         "127.0.0.1:0",
		MetricsAddr:  "127.0.0.1:0",
		PollInterval: 50 * time.Millisecond,
	}
	for _, f := range tune {
		f(&opts)
	}
	server, err := NewServer(configVol.Path(config.FileName), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{
		t: t, server: server, secret: testSecret, configVol: configVol, secretVol: secretVol,
		base: "http://" + server.Addr(), metricsURL: "http://" + server.MetricsAddr() + "/metrics",
		cancel: cancel, done: make(chan error, 1),
	}
	h.url = h.base + config.DefaultPath
	go func() { h.done <- server.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-h.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return h
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewJSONHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testWriter sends logs to t.Log, so they show only for failing tests.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

type response struct {
	code   int
	header http.Header
	body   string
}

// post sends a signed JSON request.
func (h *harness) post(body string) response {
	h.t.Helper()
	return h.do(http.MethodPost, body, map[string]string{SignatureHeader: hmacHex(h.secret, body)})
}

func (h *harness) do(method, body string, headers map[string]string) response {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	return send(h.t, req)
}

func send(t testing.TB, req *http.Request) response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{code: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (h *harness) get(path string) response {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.base+path, nil)
	return send(h.t, req)
}

// metric reads a counter or gauge value from the server's registry; labels select the series.
func (h *harness) metric(name string, labels ...string) float64 {
	h.t.Helper()
	families, err := h.server.Registry().Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if labelValue(m, labels[i]) != labels[i+1] {
					continue series
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return 0
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitArrival waits until the sink has received a request (it may still be held).
func waitArrival(t testing.TB, s *sink) {
	t.Helper()
	select {
	case <-s.arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for the sink to receive a request")
	}
}

func track(id string) string {
	return fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"u-1","messageId":%q,"properties":{"total":12.50}}`, id)
}

func identify(id string) string {
	return fmt.Sprintf(`{"type":"identify","userId":"u-1","messageId":%q,"traits":{"email":"a@example.com"},"context":{"ip":"203.0.113.9","locale":"en-US"}}`, id)
}

func batch(events ...string) string { return "[" + strings.Join(events, ",") + "]" }

// rawRequest writes a hand-made HTTP request and returns the status line, for cases the Go
// client will not produce.
func rawRequest(t testing.TB, conn io.ReadWriter, request string) string {
	t.Helper()
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(line)
}
