package fault

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/segment-webhook-operator/segment-webhook-operator/internal/segmentsim"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

const (
	oldSecret = "segment-secret-old"
	newSecret = "segment-secret-new"
	// segmentRetryWindow is how long Segment keeps retrying a delivery.
	segmentRetryWindow = 4 * time.Hour
)

// sizes of a run: events per scenario, how long the sending of them is spread over, and when the
// sender gives up.
type sizes struct {
	events int
	pace   time.Duration
	giveUp time.Duration
}

func runSizes() sizes {
	if long() {
		return sizes{events: 10000, pace: 15 * time.Second, giveUp: 90 * time.Second}
	}
	return sizes{events: 1500, pace: 3 * time.Second, giveUp: 45 * time.Second}
}

// env is one scenario's world: sinks, the receiver process and its mounted volumes.
type env struct {
	t         *testing.T
	sinks     map[string]*sink
	configVol *volume
	secretVol *volume
	cfg       *config.Config
	recv      *receiverProc
	sender    *segmentsim.Sender
	pace      time.Duration
	start     time.Time

	mu           sync.Mutex
	requiredFrom map[string]time.Time // a target must hold events acked on attempts sent after this
	notes        []string
}

// at sleeps until the given fraction of the sending period.
func (e *env) at(fraction float64) {
	time.Sleep(time.Until(e.start.Add(time.Duration(fraction * float64(e.pace)))))
}

func (e *env) note(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.notes = append(e.notes, fmt.Sprintf("%.2fs ", time.Since(e.start).Seconds())+fmt.Sprintf(format, args...))
}

func (e *env) reloads() float64 {
	return e.recv.metric("segment_receiver_config_reloads_total", "result", "success")
}

type scenario struct {
	name     string
	targets  []string // at start; required unless listed in optional
	optional []string
	// deadLetter adds a dead-letter target (sink "dlq"): a required target's refusals go there.
	deadLetter bool
	budget     time.Duration
	// setup prepares the sinks before the receiver starts.
	setup func(e *env)
	// fault runs concurrently with the sending; it uses e.at to time itself.
	fault func(e *env)
	// restartsLoseDedupe: the receiver's in-memory dedupe memory is lost, so duplicates at the
	// targets are expected and only reported.
	restartsLoseDedupe bool
	// happened checks, after the run, that the fault really hit: it returns what is missing, or
	// "" when the fault shows in the figures. A scenario whose fault did not happen proves nothing.
	happened func(e *env) string
}

// refusedBy selects about one event in twenty, the same ones on every attempt.
func refusedBy(id string) bool {
	sum := 0
	for _, c := range id {
		sum += int(c)
	}
	return sum%20 == 0
}

func ptr[T any](v T) *T { return &v }

// above returns "" when got > 0, else a note naming what.
func above(what string, got float64) string {
	if got > 0 {
		return ""
	}
	return what + " is 0"
}

var scenarios = []scenario{
	{
		name: "target 500s on 30%", targets: []string{"flaky", "steady"}, budget: 2 * time.Second,
		fault: func(e *env) { e.sinks["flaky"].failRate.store(0.3) },
		happened: func(e *env) string {
			return above("requests the flaky target answered 500", float64(e.sinks["flaky"].failed.load()))
		},
	},
	{
		name: "target down, then back", targets: []string{"down", "steady"}, budget: 2 * time.Second,
		fault: func(e *env) {
			e.at(0.3)
			e.sinks["down"].down()
			e.note("target down")
			e.at(0.6)
			e.sinks["down"].up()
			e.note("target up")
		},
		happened: func(e *env) string {
			return above("receiver answers 503", float64(e.sender.C503.Load())) +
				above(" transient failures at target down", e.recv.metric("segment_receiver_target_failures_total", "target", "down", "kind", "transient"))
		},
	},
	{
		name: "target slower than budget", targets: []string{"slow", "steady"}, budget: time.Second,
		fault: func(e *env) {
			e.at(0.3)
			e.sinks["slow"].delay.store(1500 * time.Millisecond)
			e.note("target slow (1.5s, budget 1s)")
			e.at(0.6)
			e.sinks["slow"].delay.store(0)
			e.note("target fast again")
		},
		happened: func(e *env) string {
			return above("receiver answers 503", float64(e.sender.C503.Load())) +
				above(" transient failures at target slow", e.recv.metric("segment_receiver_target_failures_total", "target", "slow", "kind", "transient"))
		},
	},
	{
		name: "receiver SIGKILL + restart", targets: []string{"a", "b"}, budget: 2 * time.Second, restartsLoseDedupe: true,
		fault: func(e *env) {
			// A target that takes 30ms per event keeps requests in flight, half delivered, when
			// the receiver dies.
			e.sinks["a"].delay.store(30 * time.Millisecond)
			e.at(0.4)
			e.recv.kill()
			e.note("receiver killed (SIGKILL)")
			time.Sleep(300 * time.Millisecond)
			e.recv.start()
			e.note("receiver restarted and ready")
		},
		happened: func(e *env) string {
			return above("sender connection errors and 503s at the kill", float64(e.sender.NetErrs.Load()+e.sender.C503.Load()))
		},
	},
	{
		name: "config reload: target added", targets: []string{"a"}, budget: 2 * time.Second,
		fault: func(e *env) {
			e.at(0.4)
			before := e.reloads()
			cfg := *e.cfg
			cfg.Targets = append(slices.Clone(cfg.Targets), config.Target{Name: "b", HTTP: &config.HTTPTarget{URL: e.sinks["b"].url()}})
			writeConfig(e.t, e.configVol, &cfg)
			e.recv.waitReloads(before + 1)
			e.mu.Lock()
			e.requiredFrom["b"] = time.Now()
			e.mu.Unlock()
			e.note("config with target b loaded")
		},
		happened: func(e *env) string {
			return above("events at the added target b", float64(len(e.sinks["b"].snapshot())))
		},
	},
	{
		name: "secret rotation", targets: []string{"a", "b"}, budget: 2 * time.Second,
		fault: func(e *env) {
			e.at(0.3)
			before := e.reloads()
			e.secretVol.Update(e.t, map[string]string{"hmac-a": oldSecret + "\n", "hmac-b": newSecret + "\n"})
			e.recv.waitReloads(before + 1)
			e.note("secret swapped: both secrets accepted")
			e.sender.Rotate(newSecret)
			e.note("sender signs with the new secret")
			e.at(0.6)
			for e.sender.InFlightWithOlderSecrets() > 0 {
				time.Sleep(5 * time.Millisecond)
			}
			before = e.reloads()
			e.secretVol.Update(e.t, map[string]string{"hmac-a": newSecret + "\n", "hmac-b": newSecret + "\n"})
			e.recv.waitReloads(before + 1)
			e.note("old secret retired")
		},
		happened: func(e *env) string {
			if got := e.reloads(); got < 3 {
				return fmt.Sprintf("%v successful loads, want the first and two rotations", got)
			}
			return ""
		},
	},
	{
		// An optional target goes down: its failures never reach Segment as 503s.
		name: "optional target down", targets: []string{"steady", "down"}, optional: []string{"down"}, budget: 2 * time.Second,
		fault: func(e *env) {
			e.at(0.3)
			e.sinks["down"].down()
			e.note("optional target down")
			e.at(0.6)
			e.sinks["down"].up()
			e.note("optional target up")
		},
		happened: func(e *env) string {
			if c := e.sender.C503.Load(); c > 0 {
				return fmt.Sprintf("%d answers were 503: an optional target must not fail requests", c)
			}
			return above("failures at the optional target", e.recv.metric("segment_receiver_target_failures_total", "target", "down", "kind", "transient"))
		},
	},
	{
		// A target refuses some events for good (422). Segment would not retry a 4xx, so the
		// receiver must not answer one: the refused events go to the dead-letter target and the
		// requests are acknowledged.
		name: "target refuses 5% (422), dead-letter", targets: []string{"picky", "steady"}, deadLetter: true, budget: 2 * time.Second,
		setup: func(e *env) { e.sinks["picky"].refuse.Store(ptr(refusedBy)) },
		fault: func(*env) {},
		happened: func(e *env) string {
			return above("events the target refused", float64(e.sinks["picky"].refused.load())) +
				above(" refused events dead-lettered", e.recv.metric("segment_receiver_dead_lettered_events_total", "reason", "refused"))
		},
	},
}

// result is one row of the table.
type result struct {
	name                                    string
	events, requests                        int
	attempts, ok, c503, c429, c4xx, netErrs int64
	dupes                                   []string
	maxLatency, maxE2E                      time.Duration
	expectedDupes                           bool
}

var (
	resultsMu sync.Mutex
	results   []result
)

func TestFaultMatrix(t *testing.T) {
	sz := runSizes()
	scfg := segmentsim.Config{
		Concurrency:    16,
		AttemptTimeout: 5 * time.Second,
		InitialBackoff: 50 * time.Millisecond,
		MaxBackoff:     time.Second,
		GiveUpAfter:    sz.giveUp,
	}
	for i, sc := range scenarios {
		t.Run(strings.ReplaceAll(sc.name, " ", "_"), func(t *testing.T) {
			runScenario(t, sc, sz, scfg, uint64(i))
		})
	}
	resultsMu.Lock()
	defer resultsMu.Unlock()
	var b strings.Builder
	mode := "short"
	if long() {
		mode = "long (-fault.long / FAULT_LONG=1)"
	}
	fmt.Fprintf(&b, "\nReceiver fault matrix, %s mode: %d events per scenario sent over %s by a Segment-like sender\n", mode, sz.events, sz.pace)
	fmt.Fprintf(&b, "(%d attempts in flight; retries timeouts, 5xx but 501, 408, 423, 429 with randomized exponential backoff %s..%s;\n",
		scfg.Concurrency, scfg.InitialBackoff, scfg.MaxBackoff)
	fmt.Fprintf(&b, " time compressed: Segment's %s retry window -> %s here, x%.0f).\n", segmentRetryWindow, scfg.GiveUpAfter,
		segmentRetryWindow.Seconds()/scfg.GiveUpAfter.Seconds())
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tevents\trequests\tattempts\t2xx\t503\t429\tother 4xx\tconn err\tretries\tduplicates per target\tmax attempt\tmax until 2xx\t")
	for _, r := range results {
		dup := strings.Join(r.dupes, " ")
		if r.expectedDupes {
			dup += " (expected)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t\n", r.name, r.events, r.requests, r.attempts, r.ok,
			r.c503, r.c429, r.c4xx, r.netErrs, r.attempts-int64(r.requests), dup,
			r.maxLatency.Round(time.Millisecond), r.maxE2E.Round(time.Millisecond))
	}
	_ = tw.Flush()
	addReport("%s", b.String())
	t.Log(b.String())
}

func runScenario(t *testing.T, sc scenario, sz sizes, scfg segmentsim.Config, seed uint64) {
	e := &env{t: t, sinks: map[string]*sink{}, pace: sz.pace, requiredFrom: map[string]time.Time{}}
	for _, name := range []string{"flaky", "steady", "down", "slow", "a", "b", "picky", "dlq"} {
		e.sinks[name] = newSink(t, name)
	}
	e.sinks["dlq"].byBodyID = true
	if sc.setup != nil {
		sc.setup(e)
	}
	e.secretVol = newVolume(t, map[string]string{"hmac-a": oldSecret + "\n", "hmac-b": oldSecret + "\n"})
	e.cfg = &config.Config{
		Source: "fault/" + sc.name,
		Authentication: config.Authentication{Mode: config.AuthHMAC,
			SecretFiles: []string{e.secretVol.Path("hmac-a"), e.secretVol.Path("hmac-b")}},
		Validation: config.ValidationStrict,
		Limits:     config.Limits{MaxInFlight: 12},
		Delivery: config.Delivery{
			Budget:         config.D(sc.budget),
			MaxAttempts:    3,
			InitialBackoff: config.D(10 * time.Millisecond),
			MaxBackoff:     config.D(100 * time.Millisecond),
		},
	}
	for _, name := range sc.targets {
		optional := slices.Contains(sc.optional, name)
		e.cfg.Targets = append(e.cfg.Targets, config.Target{Name: name, Optional: optional, HTTP: &config.HTTPTarget{URL: e.sinks[name].url()}})
		if !optional {
			e.requiredFrom[name] = time.Time{}
		}
	}
	if sc.deadLetter {
		e.cfg.DeadLetter = &config.Target{HTTP: &config.HTTPTarget{URL: e.sinks["dlq"].url()}}
	}
	e.configVol = newVolume(t, nil)
	writeConfig(t, e.configVol, e.cfg)
	e.recv = startReceiver(t, e.configVol.Path(config.FileName))
	e.sender = segmentsim.NewSender(e.recv.url(), oldSecret, scfg)

	reqs := segmentsim.MakeRequests(fmt.Sprintf("s%d", seed), sz.events, rand.New(rand.NewPCG(seed, 42)))
	e.start = time.Now()
	faultDone := make(chan struct{})
	go func() {
		defer close(faultDone)
		sc.fault(e)
	}()
	outcomes := e.sender.Run(reqs, sz.pace)
	<-faultDone
	for _, n := range e.notes {
		t.Log(n)
	}

	// Invariant 1: every event was eventually accepted (nothing given up, nothing refused).
	var failed []string
	var maxE2E time.Duration
	for i, o := range outcomes {
		if !o.Acked {
			failed = append(failed, fmt.Sprintf("request %d (%d events) after %d attempts: %s", i, len(reqs[i].IDs), o.Attempts, o.LastErr))
		}
		maxE2E = max(maxE2E, o.E2ELatency)
	}
	if len(failed) > 0 {
		t.Errorf("%d of %d requests never accepted, first: %s", len(failed), len(reqs), strings.Join(failed[:min(5, len(failed))], "; "))
	}

	// Invariant 2: every event the receiver answered 2xx for is at every required target. Sinks
	// record a delivery before answering, and the receiver answers 2xx only after that.
	snap := map[string]map[string]int{}
	for name := range e.requiredFrom {
		snap[name] = e.sinks[name].snapshot()
	}
	deadLettered := e.sinks["dlq"].snapshot()
	for name, from := range e.requiredFrom {
		missing := 0
		var example string
		for i, o := range outcomes {
			if !o.Acked || o.AckStart.Before(from) {
				continue
			}
			for _, id := range reqs[i].IDs {
				// A refused event counts as delivered once the dead-letter target has it.
				refuse := e.sinks[name].refuse.Load()
				if snap[name][id] == 0 && !(refuse != nil && (*refuse)(id) && deadLettered[id] > 0) {
					missing++
					example = id
				}
			}
		}
		if missing > 0 {
			t.Errorf("target %s lacks %d acknowledged events (e.g. %s)", name, missing, example)
		}
		if k := e.sinks[name].missingKey; k > 0 {
			t.Errorf("target %s got %d deliveries without an Idempotency-Key", name, k)
		}
	}

	// Invariant 3: duplicates. Without a restart the receiver's dedupe memory spares targets
	// that already accepted an event, so a duplicate can only come from an ambiguous attempt:
	// one the receiver abandoned at its deadline after the target had received it (or a Segment
	// attempt that timed out while the receiver went on). Each such attempt can cause at most one.
	ambiguous := deadlineFailures(e.recv.logs)
	names := make([]string, 0, len(snap))
	for name := range snap {
		names = append(names, name)
	}
	slices.Sort(names)
	var dupCells []string
	for _, name := range names {
		dupes := 0
		for _, c := range snap[name] {
			dupes += c - 1
		}
		dupCells = append(dupCells, fmt.Sprintf("%s=%d", name, dupes))
		if sc.restartsLoseDedupe {
			continue
		}
		if allowed := ambiguous[name] + int(e.sender.Timeouts.Load()); dupes > allowed {
			t.Errorf("target %s got %d duplicates, but only %d deliveries were ambiguous (%d abandoned at the receiver's deadline, %d sender timeouts)",
				name, dupes, allowed, ambiguous[name], e.sender.Timeouts.Load())
		}
	}
	t.Logf("ambiguous (deadline) failures by target: %v", ambiguous)

	// The fault really happened: a scenario whose fault did not hit proves nothing.
	if missing := sc.happened(e); missing != "" {
		t.Errorf("the fault did not show: %s", missing)
	}

	// The receiver still answers and stops cleanly.
	e.recv.stop()

	resultsMu.Lock()
	results = append(results, result{
		name: sc.name, events: sz.events, requests: len(reqs),
		attempts: e.sender.Attempts.Load(), ok: e.sender.OK.Load(), c503: e.sender.C503.Load(), c429: e.sender.C429.Load(),
		c4xx: e.sender.C4xx.Load(), netErrs: e.sender.NetErrs.Load(),
		dupes: dupCells, maxLatency: time.Duration(e.sender.MaxLatency.Load()), maxE2E: maxE2E,
		expectedDupes: sc.restartsLoseDedupe,
	})
	resultsMu.Unlock()
}

// deadlineFailures counts, per target, the events the receiver logged as abandoned at the
// deadline: the target may have received those events.
func deadlineFailures(logs *logBuffer) map[string]int {
	out := map[string]int{}
	for _, e := range logs.entries() {
		if e["msg"] != "delivery failed" {
			continue
		}
		abandoned, _ := e["abandonedAtDeadline"].(float64)
		target, _ := e["target"].(string)
		out[target] += int(abandoned)
	}
	return out
}
