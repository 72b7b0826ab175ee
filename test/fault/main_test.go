package fault

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/segment-webhook-operator/segment-webhook-operator/internal/kubevolume"
	"github.com/segment-webhook-operator/segment-webhook-operator/internal/procstat"
	"github.com/segment-webhook-operator/segment-webhook-operator/internal/receiverbin"
	"github.com/segment-webhook-operator/segment-webhook-operator/internal/syncbuf"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

var longFlag = flag.Bool("fault.long", false, "run the fault matrix with more events per scenario (or set FAULT_LONG=1)")

// receiverBin is the receiver binary built once in TestMain.
var receiverBin string

// report collects the lines printed after the run (shown with -v or on failure).
var report struct {
	sync.Mutex
	lines []string
}

func addReport(format string, args ...any) {
	report.Lock()
	defer report.Unlock()
	report.lines = append(report.lines, fmt.Sprintf(format, args...))
}

func long() bool { return *longFlag || os.Getenv("FAULT_LONG") == "1" }

func TestMain(m *testing.M) {
	flag.Parse()
	bin, remove, err := receiverbin.Build("fault-receiver-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	receiverBin = bin
	code := m.Run()
	report.Lock()
	for _, l := range report.lines {
		fmt.Println(l)
	}
	report.Unlock()
	remove()
	os.Exit(code)
}

// volume is a directory laid out like a mounted ConfigMap or Secret (see kubevolume).
type volume = kubevolume.TestDir

func newVolume(t testing.TB, files map[string]string) *volume {
	v := kubevolume.NewTestDir(t, files)
	return &v
}

func writeConfig(t testing.TB, vol *volume, cfg *config.Config) {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	vol.Update(t, map[string]string{config.FileName: string(b)})
}

// freePort asks the kernel for a free loopback port.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// logBuffer keeps the receiver's JSON logs across restarts.
type logBuffer struct{ syncbuf.Buffer }

// entries decodes the JSON log lines.
func (l *logBuffer) entries() []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e map[string]any
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

// receiverProc is the real receiver binary running as a subprocess on fixed loopback ports, so
// that a restart comes back at the same address.
type receiverProc struct {
	t                 testing.TB
	configPath        string
	port, metricsPort int
	logs              *logBuffer

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

func startReceiver(t testing.TB, configPath string) *receiverProc {
	t.Helper()
	r := &receiverProc{t: t, configPath: configPath, port: freePort(t), metricsPort: freePort(t), logs: &logBuffer{}}
	r.start()
	t.Cleanup(func() {
		r.mu.Lock()
		cmd, exited := r.cmd, r.exited
		r.mu.Unlock()
		if cmd != nil {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("receiver logs (last 8 KiB):\n%s", tail(r.logs.String(), 8<<10))
		}
	})
	return r
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (r *receiverProc) start() {
	r.t.Helper()
	cmd := exec.Command(receiverBin,
		"--config="+r.configPath,
		"--drain-delay=0",
		"--shutdown-timeout=10s",
		"--log-level=info",
		"--addr=127.0.0.1:"+strconv.Itoa(r.port),
		"--metrics-addr=127.0.0.1:"+strconv.Itoa(r.metricsPort))
	cmd.Stdout, cmd.Stderr = r.logs, r.logs
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	exited := make(chan struct{})
	r.mu.Lock()
	r.cmd, r.exited = cmd, exited
	r.mu.Unlock()
	go func() {
		err := cmd.Wait()
		r.mu.Lock()
		r.err = err
		r.mu.Unlock()
		close(exited)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			r.t.Fatalf("receiver exited during start: %v\n%s", r.err, tail(r.logs.String(), 4<<10))
		default:
		}
		if resp, err := http.Get(r.base() + "/readyz"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("receiver not ready after 20s\n%s", tail(r.logs.String(), 4<<10))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *receiverProc) pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cmd.Process.Pid
}

// kill sends SIGKILL and waits for the process to be gone.
func (r *receiverProc) kill() {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.cmd = nil
	r.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// stop sends SIGTERM and expects a clean exit.
func (r *receiverProc) stop() {
	r.t.Helper()
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.cmd = nil
	r.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		r.t.Fatal("receiver did not stop within 30s of SIGTERM")
	}
	r.mu.Lock()
	err := r.err
	r.mu.Unlock()
	if err != nil {
		r.t.Errorf("receiver exited uncleanly after SIGTERM: %v", err)
	}
}

func (r *receiverProc) base() string { return "http://127.0.0.1:" + strconv.Itoa(r.port) }
func (r *receiverProc) url() string  { return r.base() + config.DefaultPath }

// metrics scrapes the receiver's metrics endpoint.
func (r *receiverProc) metrics() (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(r.metricsPort) + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

// metric sums the series of a family whose labels match the given pairs.
func (r *receiverProc) metric(name string, labels ...string) float64 {
	r.t.Helper()
	families, err := r.metrics()
	if err != nil {
		r.t.Fatalf("scraping metrics: %v", err)
	}
	var total float64
series:
	for _, m := range families[name].GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue series
			}
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		case m.Untyped != nil:
			total += m.Untyped.GetValue()
		}
	}
	return total
}

// waitReloads waits until the receiver has counted at least n successful config loads.
func (r *receiverProc) waitReloads(n float64) {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for r.metric("segment_receiver_config_reloads_total", "result", "success") < n {
		if time.Now().After(deadline) {
			r.t.Fatalf("the receiver did not load the new config within 20s\n%s", tail(r.logs.String(), 4<<10))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// memory reads VmRSS and VmHWM of the process from /proc, in bytes.
func (r *receiverProc) memory() (rss, hwm int64) {
	r.t.Helper()
	rs, hw, err := procstat.Memory(r.pid())
	if err != nil {
		r.t.Fatalf("reading the receiver's memory: %v", err)
	}
	return int64(rs), int64(hw)
}

// sink is a downstream HTTP target. It records every delivery it accepted, by Idempotency-Key,
// and can fail a share of requests, be slow, or go down (its listener closed) and come back on
// the same address.
type sink struct {
	t    testing.TB
	name string
	addr string

	failRate atomicFloat   // share of requests answered 500 (not recorded)
	delay    atomicDur     // sleep before accepting; the delivery is recorded even if the client left
	requests atomicCounter // every request that reached the handler
	failed   atomicCounter // requests answered 500
	refused  atomicCounter // requests answered 422
	// refuse, when set, answers 422 (a permanent refusal) to the events it selects.
	refuse atomic.Pointer[func(messageID string) bool]
	// byBodyID records deliveries by the messageId in the body instead of the Idempotency-Key
	// header: a dead-letter sink records the refused event's own id.
	byBodyID   bool
	mu         sync.Mutex
	srv        *http.Server
	counts     map[string]int
	missingKey int
}

func newSink(t testing.TB, name string) *sink {
	t.Helper()
	s := &sink{t: t, name: name, counts: map[string]int{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	s.serve(l)
	t.Cleanup(func() {
		s.mu.Lock()
		srv := s.srv
		s.mu.Unlock()
		if srv != nil {
			_ = srv.Close()
		}
	})
	return s
}

func (s *sink) url() string { return "http://" + s.addr + "/ingest" }

func (s *sink) serve(l net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(s.handle), ReadHeaderTimeout: 10 * time.Second}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
}

func (s *sink) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.requests.add(1)
	if rate := s.failRate.load(); rate > 0 && rand.Float64() < rate {
		s.failed.add(1)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	id := r.Header.Get("Idempotency-Key")
	if refuse := s.refuse.Load(); refuse != nil && (*refuse)(id) {
		s.refused.add(1)
		w.WriteHeader(http.StatusUnprocessableEntity)
		return
	}
	if s.byBodyID {
		var envelope struct {
			MessageID string `json:"messageId"`
		}
		_ = json.Unmarshal(body, &envelope)
		id = envelope.MessageID
	}
	if d := s.delay.load(); d > 0 {
		time.Sleep(d) // a slow target still commits what it was sent
	}
	s.mu.Lock()
	if id == "" {
		s.missingKey++
	}
	s.counts[id]++
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// down closes the listener gracefully: requests being handled finish, new connections are
// refused until up.
func (s *sink) down() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		s.t.Errorf("sink %s shutdown: %v", s.name, err)
	}
}

func (s *sink) up() {
	var l net.Listener
	var err error
	for range 100 {
		if l, err = net.Listen("tcp", s.addr); err == nil {
			s.serve(l)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("sink %s cannot listen on %s again: %v", s.name, s.addr, err)
}

func (s *sink) snapshot() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.counts))
	for k, v := range s.counts {
		out[k] = v
	}
	return out
}

// isConnClosed reports whether err means the peer closed or reset the connection.
func isConnClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed)
}

type atomicCounter struct{ v atomic.Int64 }

func (c *atomicCounter) add(n int64) { c.v.Add(n) }
func (c *atomicCounter) load() int64 { return c.v.Load() }

type atomicFloat struct{ v atomic.Uint64 }

func (f *atomicFloat) store(x float64) { f.v.Store(math.Float64bits(x)) }
func (f *atomicFloat) load() float64   { return math.Float64frombits(f.v.Load()) }

type atomicDur struct{ v atomic.Int64 }

func (d *atomicDur) store(x time.Duration) { d.v.Store(int64(x)) }
func (d *atomicDur) load() time.Duration   { return time.Duration(d.v.Load()) }
