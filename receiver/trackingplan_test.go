package receiver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// testPlan plans two track events, identify, group, page and screen, and a common context.
const testPlan = `{
  "$defs": {"product": {"type": "object", "properties": {"product_id": {"type": "string"}, "price": {"type": "number"}}, "required": ["product_id"]}},
  "track": {
    "Order Completed": {
      "type": "object",
      "properties": {"order_id": {"type": "string"}, "total": {"type": "number"}, "products": {"type": "array", "items": {"$ref": "#/$defs/product"}}},
      "required": ["order_id"],
      "additionalProperties": false
    },
    "Product Viewed": {"$ref": "#/$defs/product"}
  },
  "identify": {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}},
  "group": {"type": "object", "properties": {"employees": {"type": "integer"}}},
  "page": {"type": "object", "properties": {"path": {"type": "string"}}},
  "screen": {"type": "object", "properties": {"name": {"type": "string"}}},
  "context": {"type": "object", "properties": {"locale": {"type": "string"}}}
}`

// planFile is where the operator renders a plan key: beside config.json, in the same ConfigMap.
const planFile = "trackingplan.plan.json"

// planEnvelope is a dead letter with the plan's violations.
type planEnvelope struct {
	deadLetterEnvelope
	Violations []struct{ Pointer, Keyword, Message string }
}

func planEnvelopes(t testing.TB, s *sink) []planEnvelope {
	t.Helper()
	var out []planEnvelope
	for _, r := range s.accepted() {
		var e planEnvelope
		if err := json.Unmarshal([]byte(r.body), &e); err != nil {
			t.Fatalf("dead letter is not an envelope: %v: %s", err, r.body)
		}
		out = append(out, e)
	}
	return out
}

// planHarness runs a receiver with testPlan, a target and a dead-letter target.
func planHarness(t *testing.T, unplanned, onViolation string, format string, tune ...func(*config.Config)) (*harness, *sink, *sink) {
	t.Helper()
	return planHarnessWith(t, testPlan, unplanned, onViolation, format, tune...)
}

// planHarnessWith is planHarness with another plan.
func planHarnessWith(t *testing.T, plan, unplanned, onViolation string, format string, tune ...func(*config.Config)) (*harness, *sink, *sink) {
	t.Helper()
	target, dlq := newSink(t), newSink(t)
	secretVol := newVolume(t, map[string]string{"hmac": testSecret})
	configVol := newVolume(t, map[string]string{planFile: plan})
	orders := httpTargetTo("orders", target)
	orders.HTTP.Format = format
	cfg := testConfig(secretVol, orders)
	cfg.DeadLetter = &config.Target{HTTP: &config.HTTPTarget{URL: dlq.URL + "/dlq"}}
	cfg.TrackingPlan = &config.TrackingPlan{Files: []string{configVol.Path(planFile)}, UnplannedEvents: unplanned, OnViolation: onViolation}
	for _, f := range tune {
		f(cfg)
	}
	configVol.Update(t, map[string]string{planFile: plan, config.FileName: configJSON(t, cfg)})
	return startHarnessOn(t, configVol, secretVol), target, dlq
}

// planVectors are one event per case, each with the violation summary the plan gives it ("" when
// it follows the plan).
var planVectors = []struct {
	id, event, event2, violation string
}{
	{"v-track-ok", `{"type":"track","event":"Order Completed","userId":"u","messageId":"v-track-ok","properties":{"order_id":"o1","total":10}}`, "", ""},
	{"v-track-type", `{"type":"track","event":"Order Completed","userId":"u","messageId":"v-track-type","properties":{"order_id":"o1","total":"10"}}`, "", "/properties/total type"},
	{"v-track-extra", `{"type":"track","event":"Order Completed","userId":"u","messageId":"v-track-extra","properties":{"order_id":"o1","coupon":"X"}}`, "", "/properties/coupon additionalProperties"},
	{"v-track-required", `{"type":"track","event":"Order Completed","userId":"u","messageId":"v-track-required","properties":{"total":1}}`, "", "/properties required"},
	{"v-track-ref", `{"type":"track","event":"Product Viewed","userId":"u","messageId":"v-track-ref","properties":{"product_id":7}}`, "", "/properties/product_id type"},
	{"v-identify", `{"type":"identify","userId":"u","messageId":"v-identify","traits":{"email":"nope"}}`, "", "/traits/email format"},
	{"v-group", `{"type":"group","groupId":"g","userId":"u","messageId":"v-group","traits":{"employees":1.5}}`, "", "/traits/employees type"},
	{"v-page", `{"type":"page","userId":"u","messageId":"v-page","properties":{"path":["/"]}}`, "", "/properties/path type"},
	{"v-screen", `{"type":"screen","userId":"u","messageId":"v-screen","properties":{"name":"Home"}}`, "", ""},
	{"v-context", `{"type":"alias","previousId":"a","userId":"u","messageId":"v-context","context":{"locale":42}}`, "", "/context/locale type"},
	{"v-unplanned", `{"type":"track","event":"Cart Viewed","userId":"u","messageId":"v-unplanned","properties":{"x":1}}`, "", ""},
}

func vectorBatch() string {
	var events []string
	for _, v := range planVectors {
		events = append(events, v.event)
	}
	return batch(events...)
}

// byID indexes what the sink accepted, one event per request, by messageId.
func byID(t *testing.T, s *sink) map[string]received {
	out := map[string]received{}
	for _, r := range s.accepted() {
		ids := messageIDs(t, r.body)
		if len(ids) != 1 {
			t.Fatalf("expected one event per request, got %d", len(ids))
		}
		out[ids[0]] = r
	}
	return out
}

func TestTrackingPlanForward(t *testing.T) {
	h, target, dlq := planHarness(t, config.UnplannedAllow, config.ViolationForward, config.FormatSegment)
	resp := h.post(vectorBatch())
	if resp.code != 200 || !strings.Contains(resp.body, fmt.Sprintf(`"accepted":%d`, len(planVectors))) {
		t.Fatalf("got %d %s", resp.code, resp.body)
	}
	got := byID(t, target)
	for _, v := range planVectors {
		r, ok := got[v.id]
		if !ok {
			t.Errorf("%s did not reach the target", v.id)
			continue
		}
		if h := r.header.Get(HTTPHeaderPlanViolation); h != v.violation {
			t.Errorf("%s: violation header %q, want %q", v.id, h, v.violation)
		}
		if r.body != v.event {
			t.Errorf("%s: forwarded bytes changed", v.id)
		}
	}
	if n := len(dlq.all()); n != 0 {
		t.Errorf("dead-letter target got %d requests", n)
	}
	for _, c := range []struct {
		event string
		want  float64
	}{{"Order Completed", 3}, {"Product Viewed", 1}, {"identify", 1}, {"group", 1}, {"page", 1}, {"alias", 1}, {"screen", 0}} {
		if got := h.metric("segment_receiver_tracking_plan_violations_total", "event", c.event, "action", "Forward"); got != c.want {
			t.Errorf("violations{event=%q} = %v, want %v", c.event, got, c.want)
		}
	}
	if got := h.metric("segment_receiver_tracking_plan_unplanned_events_total"); got != 1 {
		t.Errorf("unplanned = %v, want 1", got)
	}
}

func TestTrackingPlanOmitProperties(t *testing.T) {
	h, target, _ := planHarness(t, config.UnplannedAllow, config.ViolationOmitProperties, config.FormatSegment)
	if resp := h.post(vectorBatch()); resp.code != 200 {
		t.Fatalf("got %d %s", resp.code, resp.body)
	}
	got := byID(t, target)
	if len(got) != len(planVectors) {
		t.Fatalf("target got %d events, want %d", len(got), len(planVectors))
	}
	props := func(id string) map[string]any {
		var ev struct {
			Properties, Traits, Context map[string]any
		}
		if err := json.Unmarshal([]byte(got[id].body), &ev); err != nil {
			t.Fatal(err)
		}
		switch {
		case ev.Traits != nil:
			return ev.Traits
		case ev.Context != nil:
			return ev.Context
		}
		return ev.Properties
	}
	for id, want := range map[string]string{
		"v-track-type":  `{"order_id":"o1"}`,
		"v-track-extra": `{"order_id":"o1"}`,
		"v-track-ref":   `{}`,
		"v-identify":    `{}`,
		"v-group":       `{}`,
		"v-page":        `{}`,
		"v-context":     `{}`,
		"v-track-ok":    `{"order_id":"o1","total":10}`,
	} {
		if b, _ := json.Marshal(props(id)); string(b) != want {
			t.Errorf("%s: forwarded members %s, want %s", id, b, want)
		}
		if hv := got[id].header.Get(HTTPHeaderPlanViolation); hv != "" {
			t.Errorf("%s: repaired by omitting, yet marked %q", id, hv)
		}
	}
	// A missing required property cannot be omitted: forwarded as is, and marked.
	if r := got["v-track-required"]; r.body != planVectors[3].event || r.header.Get(HTTPHeaderPlanViolation) != "/properties required" {
		t.Errorf("v-track-required: %q %s", r.header.Get(HTTPHeaderPlanViolation), r.body)
	}
	if got := h.metric("segment_receiver_tracking_plan_violations_total", "event", "Order Completed", "action", "OmitProperties"); got != 3 {
		t.Errorf("violations = %v, want 3", got)
	}
}

func TestTrackingPlanDeadLetter(t *testing.T) {
	h, target, dlq := planHarness(t, config.UnplannedAllow, config.ViolationDeadLetter, config.FormatSegment)
	resp := h.post(vectorBatch())
	if resp.code != 200 || !strings.Contains(resp.body, `"deadLettered":8`) {
		t.Fatalf("got %d %s", resp.code, resp.body)
	}
	got := byID(t, target)
	letters := map[string]planEnvelope{}
	for _, e := range planEnvelopes(t, dlq) {
		var ev struct{ MessageID string }
		_ = json.Unmarshal(e.Event, &ev)
		letters[ev.MessageID] = e
	}
	for i, v := range planVectors {
		_, forwarded := got[v.id]
		e, dead := letters[v.id]
		if forwarded == (v.violation != "") || dead != (v.violation != "") {
			t.Errorf("%s: forwarded %v, dead-lettered %v", v.id, forwarded, dead)
			continue
		}
		if !dead {
			continue
		}
		pointer, keyword, _ := strings.Cut(v.violation, " ")
		if e.Reason != ReasonTrackingPlan || e.Index != i || string(e.Event) != v.event || e.Field != pointer ||
			len(e.Violations) != 1 || e.Violations[0].Pointer != pointer || e.Violations[0].Keyword != keyword || e.Violations[0].Message == "" {
			t.Errorf("%s: envelope %+v", v.id, e)
		}
	}
	if got := h.metric("segment_receiver_dead_lettered_events_total", "reason", ReasonTrackingPlan); got != 8 {
		t.Errorf("dead-letter metric %v, want 8", got)
	}
	// Segment's retry of the same request dead-letters nothing twice.
	if resp := h.post(vectorBatch()); resp.code != 200 {
		t.Fatalf("retry: got %d", resp.code)
	}
	if n := len(planEnvelopes(t, dlq)); n != 8 {
		t.Errorf("%d dead letters after the retry, want 8", n)
	}
}

func TestTrackingPlanBlock(t *testing.T) {
	h, target, dlq := planHarness(t, config.UnplannedBlock, config.ViolationBlock, config.FormatSegment)
	resp := h.post(vectorBatch())
	if resp.code != 200 || !strings.Contains(resp.body, `"blocked":9`) || !strings.Contains(resp.body, `"accepted":11`) {
		t.Fatalf("got %d %s", resp.code, resp.body)
	}
	got := byID(t, target)
	if len(got) != 2 || got["v-track-ok"].body == "" || got["v-screen"].body == "" {
		t.Errorf("target got %v, want only the two valid events", slices.Collect(func(yield func(string) bool) {
			for id := range got {
				yield(id)
			}
		}))
	}
	if n := len(dlq.all()); n != 0 {
		t.Errorf("dead-letter target got %d requests", n)
	}
	if got := h.metric("segment_receiver_tracking_plan_violations_total", "event", "Order Completed", "action", "Block"); got != 3 {
		t.Errorf("violations = %v, want 3", got)
	}
	if got := h.metric("segment_receiver_tracking_plan_unplanned_events_total"); got != 1 {
		t.Errorf("unplanned = %v, want 1", got)
	}
}

// The violation travels as the event's attribute: a CloudEvents extension for that format, and
// array requests never mix events with different violations.
func TestTrackingPlanViolationAttribute(t *testing.T) {
	t.Run("cloudevents", func(t *testing.T) {
		h, target, _ := planHarness(t, config.UnplannedAllow, config.ViolationForward, config.FormatCloudEvents)
		if resp := h.post(vectorBatch()); resp.code != 200 {
			t.Fatalf("got %d", resp.code)
		}
		got := byID(t, target)
		// Percent-encoded as every CloudEvents header value: the space is %20.
		if v := got["v-track-type"].header.Get("ce-planviolation"); v != "/properties/total%20type" {
			t.Errorf("ce-planviolation %q", v)
		}
		if v := got["v-track-ok"].header.Get("ce-planviolation"); v != "" {
			t.Errorf("a valid event is marked %q", v)
		}
	})
	t.Run("batch", func(t *testing.T) {
		target := newSink(t)
		secretVol := newVolume(t, map[string]string{"hmac": testSecret})
		configVol := newVolume(t, map[string]string{planFile: testPlan})
		orders := httpTargetTo("orders", target)
		orders.HTTP.Batch = &config.HTTPBatch{}
		cfg := testConfig(secretVol, orders)
		cfg.TrackingPlan = &config.TrackingPlan{Files: []string{configVol.Path(planFile)}}
		configVol.Update(t, map[string]string{planFile: testPlan, config.FileName: configJSON(t, cfg)})
		h := startHarnessOn(t, configVol, secretVol)
		ok, bad := planVectors[0].event, planVectors[1].event
		okAs := func(id string) string { return strings.Replace(ok, "v-track-ok", id, 1) }
		if resp := h.post(batch(ok, okAs("v-ok-2"), bad, okAs("v-ok-3"))); resp.code != 200 {
			t.Fatalf("got %d %s", resp.code, resp.body)
		}
		var shape []string
		for _, r := range target.accepted() {
			shape = append(shape, fmt.Sprintf("%d:%s", len(messageIDs(t, r.body)), r.header.Get(HTTPHeaderPlanViolation)))
		}
		slices.Sort(shape)
		if want := []string{"1:", "1:/properties/total type", "2:"}; !slices.Equal(shape, want) {
			t.Errorf("array requests %v, want %v", shape, want)
		}
	})
}

// A Segment-sized batch with a few violations: the valid events reach the target, the others the
// dead-letter target, and Segment gets a 2xx.
func TestTrackingPlanBatchDeadLetter(t *testing.T) {
	h, target, dlq := planHarness(t, config.UnplannedAllow, config.ViolationDeadLetter, config.FormatSegment,
		func(c *config.Config) {
			c.Limits.MaxBodyBytes = 1 << 20
			c.Targets[0].HTTP.Batch = &config.HTTPBatch{} // arrays, as a target of Segment-sized batches should
		})
	events := make([]string, 1000)
	violating := map[string]bool{}
	for i := range events {
		id := fmt.Sprintf("b-%04d", i)
		total := "12.5"
		if i%100 == 7 {
			total = `"12.5"`
			violating[id] = true
		}
		events[i] = fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"zoë-%d","messageId":%q,"properties":{"order_id":"ø-%d","total":%s}}`, i, id, i, total)
	}
	resp := h.post(batch(events...))
	if resp.code != 200 || !strings.Contains(resp.body, `"accepted":1000`) || !strings.Contains(resp.body, `"deadLettered":10`) {
		t.Fatalf("got %d %s", resp.code, resp.body)
	}
	delivered := target.acceptedEvents(t)
	if len(delivered) != 990 {
		t.Errorf("target got %d events, want 990", len(delivered))
	}
	for id := range delivered {
		if violating[id] {
			t.Errorf("violating %s reached the target", id)
		}
	}
	letters := planEnvelopes(t, dlq)
	if len(letters) != 10 {
		t.Fatalf("%d dead letters, want 10", len(letters))
	}
	for _, e := range letters {
		var ev struct{ MessageID string }
		_ = json.Unmarshal(e.Event, &ev)
		if !violating[ev.MessageID] || e.Field != "/properties/total" {
			t.Errorf("dead letter %s at %s", ev.MessageID, e.Field)
		}
	}
}

// updatePlan rewrites the plan file beside an unchanged config, as the kubelet does when the
// operator renders a new plan into the receiver's ConfigMap.
func updatePlan(t *testing.T, h *harness, plan string) {
	t.Helper()
	cfg, err := config.Load(h.configVol.Path(config.FileName))
	if err != nil {
		t.Fatal(err)
	}
	h.configVol.Update(t, map[string]string{planFile: plan, config.FileName: configJSON(t, cfg)})
}

// A changed plan swaps in while requests flow: every request is answered 2xx and every event
// reaches the target or the dead-letter target; an invalid plan keeps the last good one.
func TestTrackingPlanReload(t *testing.T) {
	h, target, dlq := planHarness(t, config.UnplannedAllow, config.ViolationDeadLetter, config.FormatSegment)
	var sent atomic.Int64
	var failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("r-%d-%d", w, i)
				body := fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"u","messageId":%q,"properties":{"order_id":"o","total":1}}`, id)
				if resp := h.post(body); resp.code != 200 {
					failed.Add(1)
				}
				sent.Add(1)
			}
		}()
	}
	eventually(t, 30*time.Second, "traffic to flow", func() bool { return sent.Load() > 20 })

	// The new plan no longer allows "total": from now on, the traffic is dead-lettered.
	updatePlan(t, h, strings.Replace(testPlan, `"total": {"type": "number"}, `, "", 1))
	eventually(t, 10*time.Second, "the new plan to dead-letter traffic", func() bool { return len(dlq.accepted()) > 5 })

	// A plan that does not compile is refused, counted, and the last good one stays.
	failures := h.metric("segment_receiver_config_reloads_total", "result", "failure")
	updatePlan(t, h, `{"track":{"Order Completed":{"type":"objekt"}}}`)
	eventually(t, 10*time.Second, "the invalid plan to be counted", func() bool {
		return h.metric("segment_receiver_config_reloads_total", "result", "failure") == failures+1
	})
	atBadPlan := len(dlq.accepted())
	eventually(t, 30*time.Second, "traffic after the invalid plan", func() bool { return len(dlq.accepted()) > atBadPlan+5 })
	if resp := h.get("/readyz"); resp.code != 200 {
		t.Fatalf("readyz after an invalid plan: %d", resp.code)
	}
	close(stop)
	wg.Wait()

	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed across plan reloads", failed.Load(), sent.Load())
	}
	delivered := target.acceptedEvents(t)
	for _, e := range planEnvelopes(t, dlq) {
		var ev struct{ MessageID string }
		_ = json.Unmarshal(e.Event, &ev)
		delivered[ev.MessageID]++
	}
	if int64(len(delivered)) != sent.Load() {
		t.Fatalf("%d of %d events reached a target or the dead-letter target", len(delivered), sent.Load())
	}
	for id, n := range delivered {
		if n != 1 {
			t.Fatalf("%s delivered %d times", id, n)
		}
	}
}

// Config validation: DeadLetter needs the dead-letter target.
func TestTrackingPlanConfig(t *testing.T) {
	cfg := &config.Config{Authentication: config.Authentication{Mode: config.AuthNone},
		Targets:      []config.Target{{Name: "a", HTTP: &config.HTTPTarget{URL: "http://a"}}},
		TrackingPlan: &config.TrackingPlan{Files: []string{"/p.json"}, OnViolation: config.ViolationDeadLetter}}
	cfg.Default()
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "DeadLetter needs a deadLetter target") {
		t.Errorf("Validate = %v", err)
	}
	cfg.TrackingPlan.OnViolation, cfg.TrackingPlan.UnplannedEvents = "Drop", "Maybe"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "onViolation") || !strings.Contains(err.Error(), "unplannedEvents") {
		t.Errorf("Validate = %v", err)
	}
	cfg.TrackingPlan = &config.TrackingPlan{Files: []string{"/p.json"}}
	cfg.Default()
	if err := cfg.Validate(); err != nil || cfg.TrackingPlan.OnViolation != config.ViolationForward || cfg.TrackingPlan.UnplannedEvents != config.UnplannedAllow {
		t.Errorf("defaults: %v %+v", err, cfg.TrackingPlan)
	}
	if !slices.Contains(cfg.Files(), "/p.json") {
		t.Errorf("Files() %v lacks the plan", cfg.Files())
	}
}

// Kafka and NATS carry the violation as a record or message header.
func TestTrackingPlanViolationHeaderOnBrokers(t *testing.T) {
	start := func(t *testing.T, target config.Target) *harness {
		secretVol := newVolume(t, map[string]string{"hmac": testSecret})
		configVol := newVolume(t, map[string]string{planFile: testPlan})
		cfg := testConfig(secretVol, target)
		cfg.TrackingPlan = &config.TrackingPlan{Files: []string{configVol.Path(planFile)}}
		configVol.Update(t, map[string]string{planFile: testPlan, config.FileName: configJSON(t, cfg)})
		return startHarnessOn(t, configVol, secretVol)
	}
	ok, bad := planVectors[0], planVectors[1]
	t.Run("kafka", func(t *testing.T) {
		cluster := startKafka(t)
		h := start(t, kafkaTargetTo("stream", cluster))
		if r := h.post(batch(ok.event, bad.event)); r.code != 200 {
			t.Fatalf("got %d %s", r.code, r.body)
		}
		for _, rec := range consume(t, 2, kgo.SeedBrokers(cluster.ListenAddrs()...)) {
			want := ""
			if header(rec, KafkaHeaderMessageID) == bad.id {
				want = bad.violation
			}
			if got := header(rec, KafkaHeaderPlanViolation); got != want {
				t.Errorf("%s: %s %q, want %q", header(rec, KafkaHeaderMessageID), KafkaHeaderPlanViolation, got, want)
			}
		}
	})
	t.Run("nats", func(t *testing.T) {
		srv := startNATS(t, -1, t.TempDir())
		js := natsClient(t, natsURL(srv))
		createStream(t, js)
		h := start(t, natsTargetTo("stream", natsURL(srv)))
		if r := h.post(batch(ok.event, bad.event)); r.code != 200 {
			t.Fatalf("got %d %s", r.code, r.body)
		}
		msgs := streamMessages(t, js)
		if len(msgs) != 2 {
			t.Fatalf("stream holds %d messages, want 2", len(msgs))
		}
		for _, m := range msgs {
			want := ""
			if m.Header.Get(NATSHeaderMessageID) == bad.id {
				want = bad.violation
			}
			if got := m.Header.Get(NATSHeaderPlanViolation); got != want {
				t.Errorf("%s: %s %q, want %q", m.Header.Get(NATSHeaderMessageID), NATSHeaderPlanViolation, got, want)
			}
		}
	})
}

// The events OmitProperties rewrites are new bytes beside the body, and count against the memory
// budget: with what a held request leaves, a body that fits is refused 429 once its rewritten
// copy is counted.
func TestOmittedPropertiesCountInTheBudget(t *testing.T) {
	h, target, _ := planHarness(t, config.UnplannedAllow, config.ViolationOmitProperties, config.FormatSegment, func(c *config.Config) {
		c.DeadLetter = nil // its envelopes would count the body again
		c.Limits.MaxBufferedBytes = c.Limits.MaxBodyBytes
	})
	release := target.hold()
	defer release()
	held := `{"type":"track","event":"Order Completed","userId":"u","messageId":"held","properties":{"order_id":"o1"}}`
	first := make(chan response, 1)
	go func() { first <- h.post(held) }()
	waitArrival(t, target)

	// Half of what the held request leaves: the body and its event's reservation fit, its
	// rewritten copy (all but the omitted coupon) does not.
	rest := 64<<10 - len(held) - eventMemory - memoryPerDelivered
	omitted := func(pad int) string {
		return fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"u","messageId":"omitted","properties":{"order_id":%q,"coupon":"X"}}`,
			strings.Repeat("x", pad))
	}
	body := omitted(rest/2 - len(omitted(0)))
	if resp := h.post(body); resp.code != http.StatusTooManyRequests {
		t.Fatalf("got %d %s, want 429", resp.code, resp.body)
	}
	release()
	if resp := <-first; resp.code != http.StatusOK {
		t.Fatalf("held request: %d %s", resp.code, resp.body)
	}
	if resp := h.post(body); resp.code != http.StatusOK {
		t.Fatalf("alone: %d %s", resp.code, resp.body)
	}
}
