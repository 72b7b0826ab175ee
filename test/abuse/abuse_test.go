package abuse

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segment-webhook-operator/segment-webhook-operator/internal/kubevolume"
	"github.com/segment-webhook-operator/segment-webhook-operator/internal/segmentsim"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

const secret = "abuse-secret"

// env is one case's receiver, sink and config volume.
type env struct {
	t         *testing.T
	recv      *receiverProc
	sink      *sink
	configVol *kubevolume.TestDir
	files     map[string]string // in configVol, config.json included
}

// abuseCase runs attack until ctx ends, beside the sender, and returns how many attacks it made
// (connections or requests). Attack events that are valid and must arrive are returned in must.
type abuseCase struct {
	name, attack string
	configure    func(cfg *config.Config, files map[string]string)
	attackFn     func(ctx context.Context, e *env) (attacks int, must []string)
	after        func(e *env)
	maxPeakRSS   uint64 // the case's own bound on the receiver's peak RSS; 0: the memory limit
}

// duration of each case's attack, and the sender's events over it.
func sizes() (time.Duration, int) {
	if long() {
		return 20 * time.Second, 2000
	}
	return 4 * time.Second, 200
}

func TestAbuse(t *testing.T) {
	fds := raiseFileLimit()
	idle := 10_000
	if need := uint64(idle + 2000); fds < need {
		idle = int(fds) - 2000
		fmt.Printf("abuse: the fd limit is %d; idle keep-alive connections scaled down from 10000 to %d\n", fds, idle)
	}
	overCap := 3 * 4 * config.DefaultMaxInFlight // three times the receiver's connection cap
	if need := uint64(overCap + 2000); fds < need {
		overCap = int(fds) - 2000
	}
	cases := []abuseCase{
		{name: "slow headers+bodies", attack: "1000 conns, 1 B / 500 ms, reconnecting", attackFn: slowConnections(1000)},
		// Past the connection cap the receiver closes the connections that wait longest, the
		// sender's new ones among them now and then: it retries (first tries drop), memory stays
		// low (234 MiB before the cap).
		{name: "slow conns 3x the cap", attack: fmt.Sprintf("%d conns, 1 B / 500 ms, reconnecting", overCap), attackFn: slowConnections(overCap)},
		// The receiver keeps at most 4 x maxInFlight (1,024) connections, about 20 KB each, closing
		// the longest idle: 10,000 idle ones held 216 MiB before that cap, about 64 MiB with it.
		{name: "idle keep-alive", attack: fmt.Sprintf("%d idle conns after one request", idle), attackFn: idleConnections(idle),
			maxPeakRSS: 96 << 20},
		{name: "3M members dropFields", attack: "signed 16 MiB events, 3 M members each",
			configure: func(cfg *config.Config, _ map[string]string) {
				cfg.Targets[0].DropFields = []string{"context.ip", "traits.email"}
			},
			attackFn: signedLoop(func(i int) []byte { return manyMembers(fmt.Sprintf("members-%d", i), config.DefaultMaxBodyBytes) })},
		{name: "100k extra properties", attack: "signed 1 MB events, OmitProperties",
			configure: withPlan(config.ViolationOmitProperties, orderPlan),
			attackFn:  signedLoop(extraProperties)},
		{name: "absurd numbers", attack: "batches of 1e999999..1e10000000; plan 1e1000000",
			configure: withPlan(config.ViolationDeadLetter, orderPlan),
			attackFn:  signedLoop(absurdNumbers),
			after: func(e *env) {
				// A plan with such a number is refused: the last good one stays.
				e.files["plan.json"] = strings.Replace(orderPlan, `"minimum": 0`, `"minimum": 1e1000000`, 1)
				e.configVol.Update(e.t, e.files)
			}},
		{name: "deep nesting", attack: "batches of events 1000 and 9000 deep",
			configure: withPlan(config.ViolationDeadLetter, deepPlan),
			attackFn:  signedLoop(deepEvents)},
		{name: "4000 maximal events", attack: "batches of 4000 events of 4 KiB, retried",
			attackFn: maximalBatches},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) { runCase(t, c) })
	}
}

func runCase(t *testing.T, c abuseCase) {
	duration, events := sizes()
	s := newSink(t)
	secretVol := kubevolume.NewTestDir(t, map[string]string{"hmac": secret})
	configVol := kubevolume.NewTestDir(t, nil)
	cfg := &config.Config{
		Source:         "abuse/" + strings.ReplaceAll(c.name, " ", "-"),
		Authentication: config.Authentication{Mode: config.AuthHMAC, SecretFiles: []string{secretVol.Path("hmac")}},
		Targets:        []config.Target{{Name: "sink", HTTP: &config.HTTPTarget{URL: s.url()}}},
	}
	files := map[string]string{}
	if c.configure != nil {
		c.configure(cfg, files)
	}
	if cfg.TrackingPlan != nil {
		for i, name := range cfg.TrackingPlan.Files {
			cfg.TrackingPlan.Files[i] = configVol.Path(name)
		}
	}
	cfg.Default()
	e := &env{t: t, recv: startReceiver(t, cfg, &configVol, files), sink: s, configVol: &configVol, files: files}
	cpu0 := e.recv.cpu()
	start := time.Now()

	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var attacks int
	var must []string
	attacked := make(chan struct{})
	go func() { defer close(attacked); attacks, must = c.attackFn(ctx, e) }()

	sender := segmentsim.NewSender(e.recv.url(), secret, segmentsim.Config{Concurrency: 8, AttemptTimeout: 5 * time.Second,
		InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, GiveUpAfter: time.Minute})
	reqs := segmentsim.MakeRequests("legit", events, rand.New(rand.NewPCG(1, uint64(len(c.name)))))
	if c.after != nil {
		go func() {
			time.Sleep(duration / 2) // halfway through the attack
			c.after(e)
		}()
	}
	outcomes := sender.Run(reqs, duration)
	cancel()
	<-attacked
	e.recv.alive()
	wall := time.Since(start)

	acked, first := 0, 0
	var latencies []time.Duration
	for _, o := range outcomes {
		if o.Acked {
			acked++
			if o.Attempts == 1 {
				first++
			}
		}
		latencies = append(latencies, o.E2ELatency)
	}
	slices.Sort(latencies)
	missing := 0
	for _, r := range reqs {
		for _, id := range r.IDs {
			if !s.has(id) {
				missing++
			}
		}
	}
	for _, id := range must {
		if !s.has(id) {
			missing++
		}
	}
	r := row{name: c.name, attack: c.attack, attackRate: float64(attacks) / duration.Seconds(),
		success: 100 * float64(acked) / float64(len(outcomes)), firstTry: 100 * float64(first) / float64(len(outcomes)),
		p99: latencies[len(latencies)*99/100], peakRSS: e.recv.peakRSS(), cpu: e.recv.cpu() - cpu0, duration: wall}
	table.Lock()
	table.rows = append(table.rows, r)
	table.Unlock()
	t.Logf("%+v; sender attempts %d (2xx %d, 429 %d, 503 %d, other 4xx %d, network %d)", r, sender.Attempts.Load(),
		sender.OK.Load(), sender.C429.Load(), sender.C503.Load(), sender.C4xx.Load(), sender.NetErrs.Load())
	if acked != len(outcomes) {
		t.Errorf("the sender got %d of %d requests acknowledged, want all", acked, len(outcomes))
	}
	if missing > 0 {
		t.Errorf("%d events are missing at the sink", missing)
	}
	if r.peakRSS >= memoryLimit {
		t.Errorf("the receiver's peak RSS %.1f MiB reached its memory limit %d MiB", float64(r.peakRSS)/(1<<20), memoryLimit>>20)
	} else if c.maxPeakRSS > 0 && r.peakRSS > c.maxPeakRSS {
		t.Errorf("the receiver's peak RSS %.1f MiB is over this case's bound of %d MiB", float64(r.peakRSS)/(1<<20), c.maxPeakRSS>>20)
	}
	if c.after != nil && e.recv.metric("segment_receiver_config_reloads_total", "result", "failure") < 1 {
		t.Errorf("the hostile plan was not refused")
	}
}

// post sends a signed request and returns its status (0 on a network error).
func post(ctx context.Context, url string, body, signed []byte) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Signature", segmentsim.Sign(secret, signed))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// signedLoop posts make(i) bodies, signed, one after another until ctx ends. An authenticated
// attacker: the signature holds.
func signedLoop(make func(i int) []byte) func(ctx context.Context, e *env) (int, []string) {
	return func(ctx context.Context, e *env) (int, []string) {
		n := 0
		for ; ctx.Err() == nil; n++ {
			body := make(n)
			signed := body
			if body[0] == '[' {
				signed = firstElement(body)
			}
			post(ctx, e.recv.url(), body, signed)
		}
		return n, nil
	}
}

// firstElement is a batch's element 0 as this package renders batches: up to the first "},{".
func firstElement(batch []byte) []byte {
	if i := bytes.Index(batch, []byte("},{")); i > 0 {
		return batch[1 : i+1]
	}
	return batch[1 : len(batch)-1]
}

// slowConnections keeps n connections open that send a byte every 500 ms: half are still in
// their headers, half declare a body of 1 MB under a well-formed signature. When the receiver
// closes one, it reconnects.
func slowConnections(n int) func(ctx context.Context, e *env) (int, []string) {
	return func(ctx context.Context, e *env) (int, []string) {
		var conns atomic.Int64
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				head := "POST /webhook HTTP/1.1\r\nHost: x\r\nX-Pad: "
				if i%2 == 1 {
					head = "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Signature: " +
						strings.Repeat("0", 40) + "\r\nContent-Length: 1000000\r\n\r\n{\"type\":\"track\",\"pad\":\""
				}
				for ctx.Err() == nil {
					c, err := net.Dial("tcp", e.recv.addr())
					if err != nil {
						time.Sleep(100 * time.Millisecond)
						continue
					}
					conns.Add(1)
					closed := make(chan struct{})
					go func() { _, _ = io.Copy(io.Discard, c); close(closed) }()
					_, err = c.Write([]byte(head))
					tick := time.NewTicker(500 * time.Millisecond)
					for err == nil {
						select {
						case <-ctx.Done():
							err = ctx.Err()
						case <-closed:
							err = io.EOF
						case <-tick.C:
							_, err = c.Write([]byte("a"))
						}
					}
					tick.Stop()
					c.Close()
					<-closed
				}
			}()
		}
		wg.Wait()
		return int(conns.Load()), nil
	}
}

// idleConnections opens n keep-alive connections, each makes one request, and they stay idle (or
// are closed by the receiver).
func idleConnections(n int) func(ctx context.Context, e *env) (int, []string) {
	return func(ctx context.Context, e *env) (int, []string) {
		var mu sync.Mutex
		var open []net.Conn
		defer func() {
			for _, c := range open {
				c.Close()
			}
		}()
		var wg sync.WaitGroup
		next := make(chan struct{})
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range next {
					c, err := net.Dial("tcp", e.recv.addr())
					if err != nil {
						continue
					}
					_, _ = c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
					if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
					mu.Lock()
					open = append(open, c)
					mu.Unlock()
				}
			}()
		}
		for range n {
			if ctx.Err() != nil {
				break
			}
			next <- struct{}{}
		}
		close(next)
		wg.Wait()
		// The receiver closed the longest idle ones to stay within its connection cap.
		maxConns := 4 * config.DefaultMaxInFlight
		if held := e.recv.metric("segment_receiver_open_connections"); held > float64(maxConns) {
			e.t.Errorf("the receiver holds %v connections after %d idle ones, want at most %d", held, len(open), maxConns)
		}
		<-ctx.Done()
		return len(open), nil
	}
}

// manyMembers is a valid event of about size bytes with millions of tiny members.
func manyMembers(id string, size int) []byte {
	b := make([]byte, 0, size)
	b = fmt.Appendf(b, `{"type":"track","event":"Huge","userId":"u","messageId":%q`, id)
	for i := 0; len(b) < size-16; i++ {
		b = append(b, `,"_`...)
		b = strconv.AppendInt(b, int64(i), 36)
		b = append(b, `":0`...)
	}
	return append(b, '}')
}

// orderPlan closes Order Completed, whose events segmentsim sends.
const orderPlan = `{"track": {"Order Completed": {"type": "object",
  "properties": {"total": {"type": "number", "minimum": 0}, "currency": {"type": "string"}, "n": {"type": "array", "items": {"type": "integer"}}},
  "additionalProperties": false}}}`

// deepPlan follows every level of "nested".
const deepPlan = `{"$defs": {"n": {"type": "object", "additionalProperties": {"$ref": "#/$defs/n"}}},
  "track": {"Order Completed": {"type": "object", "properties": {"nested": {"$ref": "#/$defs/n"}}}}}`

func withPlan(onViolation, plan string) func(cfg *config.Config, files map[string]string) {
	return func(cfg *config.Config, files map[string]string) {
		files["plan.json"] = plan
		cfg.TrackingPlan = &config.TrackingPlan{Files: []string{"plan.json"}, UnplannedEvents: config.UnplannedAllow, OnViolation: onViolation}
		cfg.DeadLetter = &config.Target{HTTP: &config.HTTPTarget{URL: cfg.Targets[0].HTTP.URL}}
	}
}

func extraProperties(i int) []byte {
	b := fmt.Appendf(nil, `{"type":"track","event":"Order Completed","userId":"u","messageId":"extra-%d","properties":{"total":1`, i)
	for j := range 100_000 {
		b = append(b, `,"_`...)
		b = strconv.AppendInt(b, int64(j), 36)
		b = append(b, `":1`...)
	}
	return append(b, "}}"...)
}

func absurdNumbers(i int) []byte {
	events := make([]string, 100)
	for j := range events {
		n := []string{"1e999999", "-1E-999999", "1e10000000", strings.Repeat("9", 100_000)}[j%4]
		events[j] = fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"u","messageId":"num-%d-%d","properties":{"total":%s,"n":[%s,1e999999]}}`, i, j, n, n)
	}
	return []byte("[" + strings.Join(events, ",") + "]")
}

func deepEvents(i int) []byte {
	events := make([]string, 20)
	for j := range events {
		depth := 1000
		if j%2 == 1 {
			depth = 9000
		}
		events[j] = fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"u","messageId":"deep-%d-%d","properties":{"nested":%s{}%s}}`,
			i, j, strings.Repeat(`{"a":`, depth), strings.Repeat("}", depth))
	}
	return []byte("[" + strings.Join(events, ",") + "]")
}

// maximalBatches sends 4000-event batches of events padded to fill 16 MiB, as Segment would
// (retried on 429 and 503); each event must arrive.
func maximalBatches(ctx context.Context, e *env) (int, []string) {
	sender := segmentsim.NewSender(e.recv.url(), secret, segmentsim.Config{Concurrency: 2, AttemptTimeout: 5 * time.Second,
		InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, GiveUpAfter: time.Minute})
	var must []string
	n := 0
	var wg sync.WaitGroup
	for ; ctx.Err() == nil && n < 4; n++ {
		events := make([]string, config.MaxEventsLimit)
		ids := make([]string, len(events))
		pad := strings.Repeat("x", (config.DefaultMaxBodyBytes/config.MaxEventsLimit)-160)
		for j := range events {
			ids[j] = fmt.Sprintf("max-%d-%04d", n, j)
			events[j] = fmt.Sprintf(`{"type":"track","event":"Viewed","userId":"u-%d","messageId":%q,"properties":{"pad":%q}}`, j, ids[j], pad)
		}
		body := []byte("[" + strings.Join(events, ",") + "]")
		must = append(must, ids...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			sender.Send(segmentsim.Request{Body: body, First: []byte(events[0]), IDs: ids})
		}()
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	wg.Wait()
	return n, must
}
