package abuse

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segment-webhook-operator/segment-webhook-operator/internal/kubevolume"
	"github.com/segment-webhook-operator/segment-webhook-operator/internal/procstat"
	"github.com/segment-webhook-operator/segment-webhook-operator/internal/receiverbin"
	"github.com/segment-webhook-operator/segment-webhook-operator/internal/syncbuf"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// receiverBin is the receiver binary, built once in TestMain.
var receiverBin string

// memoryLimit is the receiver container's default memory limit in the operator's render, which
// also sets GOMEMLIMIT to it and GOGC=200.
const memoryLimit = 256 << 20

func long() bool { return os.Getenv("ABUSE_LONG") == "1" }

func TestMain(m *testing.M) {
	bin, remove, err := receiverbin.Build("abuse-receiver-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	receiverBin = bin
	code := m.Run()
	printTable()
	remove()
	os.Exit(code)
}

// raiseFileLimit lifts this process's soft fd limit to the hard one (children inherit it) and
// returns the limit now in force.
func raiseFileLimit() uint64 {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil {
		return 0
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	return lim.Cur
}

// receiverProc is the receiver binary running as a child process on loopback ports.
type receiverProc struct {
	t          testing.TB
	cmd        *exec.Cmd
	port       int
	metricsURL string
	logs       *syncbuf.Buffer
	exited     chan struct{}
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startReceiver writes cfg and files beside it into a volume and runs the receiver on it, as
// the operator does: GOMEMLIMIT at the memory limit, GOGC=200.
func startReceiver(t testing.TB, cfg *config.Config, configVol *kubevolume.TestDir, files map[string]string) *receiverProc {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	files[config.FileName] = string(b)
	configVol.Update(t, files)
	r := &receiverProc{t: t, port: freePort(t), logs: &syncbuf.Buffer{}, exited: make(chan struct{})}
	metricsPort := freePort(t)
	r.metricsURL = "http://127.0.0.1:" + strconv.Itoa(metricsPort) + "/metrics"
	r.cmd = exec.Command(receiverBin, "--config="+configVol.Path(config.FileName), "--drain-delay=0",
		"--shutdown-timeout=10s", "--log-level=error",
		"--addr=127.0.0.1:"+strconv.Itoa(r.port), "--metrics-addr=127.0.0.1:"+strconv.Itoa(metricsPort))
	r.cmd.Env = append(os.Environ(), "GOMEMLIMIT="+strconv.Itoa(memoryLimit), "GOGC=200")
	r.cmd.Stdout, r.cmd.Stderr = r.logs, r.logs
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.cmd.Wait(); close(r.exited) }()
	t.Cleanup(func() {
		_ = r.cmd.Process.Kill()
		<-r.exited
		if t.Failed() {
			logs := r.logs.String()
			t.Logf("receiver logs (last 4 KiB):\n%s", logs[max(0, len(logs)-4096):])
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-r.exited:
			t.Fatalf("the receiver exited during start:\n%s", r.logs.String())
		default:
		}
		if resp, err := http.Get(r.base() + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the receiver is not ready after 20 s:\n%s", r.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *receiverProc) base() string { return "http://127.0.0.1:" + strconv.Itoa(r.port) }
func (r *receiverProc) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }
func (r *receiverProc) url() string  { return r.base() + config.DefaultPath }

// alive fails the test when the receiver has exited (out of memory, a panic).
func (r *receiverProc) alive() {
	select {
	case <-r.exited:
		r.t.Fatalf("the receiver exited: %v", r.cmd.ProcessState)
	default:
	}
}

// peakRSS is the process's VmHWM.
func (r *receiverProc) peakRSS() uint64 {
	_, hwm, err := procstat.Memory(r.cmd.Process.Pid)
	if err != nil {
		r.t.Fatal(err)
	}
	return hwm
}

// cpu is the process's user and system CPU time so far (/proc/<pid>/stat, clock ticks of 10 ms).
func (r *receiverProc) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", r.cmd.Process.Pid))
	if err != nil {
		r.t.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) start at state, field 3.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// metric reads one unlabelled sample, or the sum of a metric's samples whose labels include
// the given name=value pairs, from the text exposition.
func (r *receiverProc) metric(name string, labels ...string) float64 {
	resp, err := http.Get(r.metricsURL)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sum float64
lines:
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(line, labels[i]+`="`+labels[i+1]+`"`) {
				continue lines
			}
		}
		v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		sum += v
	}
	return sum
}

// sink is an HTTP target that counts the events it accepted by Idempotency-Key.
type sink struct {
	srv    *http.Server
	addr   string
	mu     sync.Mutex
	counts map[string]int
}

func newSink(t testing.TB) *sink {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{addr: l.Addr().String(), counts: map[string]int{}}
	s.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		s.mu.Lock()
		s.counts[r.Header.Get("Idempotency-Key")]++
		s.mu.Unlock()
	})}
	go func() { _ = s.srv.Serve(l) }()
	t.Cleanup(func() { _ = s.srv.Close() })
	return s
}

func (s *sink) url() string { return "http://" + s.addr + "/ingest" }

func (s *sink) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[id] > 0
}

// row is one case's line of the table printed after the run.
type row struct {
	name       string
	attack     string
	attackRate float64 // per second
	success    float64 // share of the sender's requests acknowledged, in %
	firstTry   float64 // share acknowledged at the first attempt, in %
	p99        time.Duration
	peakRSS    uint64
	cpu        time.Duration
	duration   time.Duration
}

var table struct {
	sync.Mutex
	rows []row
}

func printTable() {
	table.Lock()
	defer table.Unlock()
	if len(table.rows) == 0 {
		return
	}
	fmt.Printf("\n%-22s %-44s %10s %9s %9s %9s %9s %9s %8s\n", "case", "attack", "rate/s", "sender %", "1st try %", "p99", "peak RSS", "CPU", "wall")
	for _, r := range table.rows {
		fmt.Printf("%-22s %-44s %10.1f %9.1f %9.1f %9s %7.1fMi %9s %8s\n", r.name, r.attack, r.attackRate, r.success, r.firstTry,
			r.p99.Round(time.Millisecond), float64(r.peakRSS)/(1<<20), r.cpu.Round(10*time.Millisecond), r.duration.Round(100*time.Millisecond))
	}
	fmt.Printf("(sender: Segment-like retries; %% of its requests acknowledged in all, and at the first attempt. Peak RSS: the receiver's VmHWM; limit %d Mi.)\n", memoryLimit>>20)
}
