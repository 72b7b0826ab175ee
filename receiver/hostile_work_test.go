package receiver

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// postWithin sends a signed request and fails the test when no answer comes within timeout (a
// handler that panics closes the connection without one).
func (h *harness) postWithin(body string, timeout time.Duration) response {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.url, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(SignatureHeader, hmacHex(h.secret, body))
	resp, err := (&http.Client{Timeout: timeout}).Do(req)
	if err != nil {
		h.t.Fatalf("no answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{code: resp.StatusCode, header: resp.Header, body: string(b)}
}

// allocatedDuring is what the process allocated while f ran, in bytes.
func allocatedDuring(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// manyMembers is an event of about size bytes whose top level holds millions of tiny members.
func manyMembers(id string, size int) string {
	var b strings.Builder
	b.Grow(size + 64)
	fmt.Fprintf(&b, `{"type":"track","event":"E","userId":"u","messageId":%q`, id)
	for i := 0; b.Len() < size-16; i++ {
		b.WriteString(`,"_`)
		b.WriteString(strconv.FormatInt(int64(i), 36))
		b.WriteString(`":0`)
	}
	b.WriteString("}")
	return b.String()
}

// A signed 16 MiB event of 3 M members through a target's dropFields: what the request allocates
// stays a small multiple of the body (its buffer, the sink's copy), not tens of bytes per member.
func TestDropFieldsOnMillionsOfMembersIsBounded(t *testing.T) {
	target := newSink(t)
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	tc := httpTargetTo("primary", target)
	tc.DropFields = []string{"context.ip", "traits.email"}
	cfg := testConfig(secrets, tc)
	cfg.Limits.MaxBodyBytes = config.DefaultMaxBodyBytes
	h := startHarness(t, secrets, cfg)

	event := manyMembers("huge", config.DefaultMaxBodyBytes)
	var resp response
	allocated := allocatedDuring(func() { resp = h.postWithin(event, 60*time.Second) })
	t.Logf("a %d MiB event: %d MiB allocated", len(event)>>20, allocated>>20)
	if resp.code != http.StatusOK {
		t.Fatalf("got %d %s", resp.code, resp.body)
	}
	if got := target.acceptedIDs()["huge"]; got != 1 {
		t.Fatalf("the sink got the event %d times", got)
	}
	if limit := uint64(8 * len(event)); allocated > limit {
		t.Errorf("the request allocated %d MiB, want at most %d MiB (8 times the body)", allocated>>20, limit>>20)
	}
}

// numberPlan checks a number with a minimum: the validator compares it as a big.Rat.
const numberPlan = `{"track": {"Order Completed": {"type": "object",
  "properties": {"order_id": {"type": "string"}, "total": {"type": "number", "minimum": 0}, "n": {"type": "array", "items": {"type": "integer"}}},
  "required": ["order_id"], "additionalProperties": false}}}`

func hostilePlanHarness(t *testing.T, plan, onViolation string, maxBody int64) (*harness, *sink, *sink) {
	t.Helper()
	return planHarnessWith(t, plan, config.UnplannedAllow, onViolation, config.FormatSegment, func(c *config.Config) {
		c.Limits.MaxBodyBytes = maxBody
	})
}

// Numbers whose exponents big.Rat cannot, or can only slowly, hold: a dead letter each, within
// the delivery budget, rather than a panic (1e10000000: big.Rat gives up, and the validator
// dereferences its nil) or seconds of CPU per number (1e999999).
func TestAbsurdNumbersAgainstAPlan(t *testing.T) {
	h, target, dlq := hostilePlanHarness(t, numberPlan, config.ViolationDeadLetter, 1<<20)
	events := []string{
		`{"type":"track","event":"Order Completed","userId":"u","messageId":"beyond","properties":{"order_id":"o","total":1e10000000}}`,
		`{"type":"track","event":"Order Completed","userId":"u","messageId":"fine","properties":{"order_id":"o","total":1e300}}`,
	}
	for i := range 100 {
		events = append(events, fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"u","messageId":"slow-%d","properties":{"order_id":"o","total":1e999999,"n":[1e999999,-1E-999999]}}`, i))
	}
	resp := h.postWithin(batch(events...), 30*time.Second)
	if resp.code != http.StatusOK || !strings.Contains(resp.body, `"deadLettered":101`) {
		t.Fatalf("got %d %s, want 200 with 101 dead letters", resp.code, resp.body)
	}
	if got := target.acceptedIDs(); len(got) != 1 || got["fine"] != 1 {
		t.Errorf("the target got %v, want only fine", got)
	}
	for _, e := range planEnvelopes(t, dlq) {
		if e.Violations[0].Pointer != "/properties/total" || e.Violations[0].Keyword != "number" {
			t.Errorf("dead letter %d: violations %+v, want /properties/total number first", e.Index, e.Violations)
		}
	}
}

// 100 k properties the plan does not allow, under OmitProperties: omitted, within the budget.
func TestOmitHundredThousandProperties(t *testing.T) {
	h, target, _ := hostilePlanHarness(t, numberPlan, config.ViolationOmitProperties, 2<<20)
	var b strings.Builder
	b.WriteString(`{"type":"track","event":"Order Completed","userId":"u","messageId":"wide","properties":{"order_id":"o"`)
	for i := range 100_000 {
		fmt.Fprintf(&b, `,"%s":1`, strconv.FormatInt(int64(i), 36))
	}
	b.WriteString("}}")
	resp := h.postWithin(b.String(), 30*time.Second)
	if resp.code != http.StatusOK {
		t.Fatalf("got %d %s", resp.code, resp.body)
	}
	got := target.accepted()
	if len(got) != 1 || got[0].body != `{"type":"track","event":"Order Completed","userId":"u","messageId":"wide","properties":{"order_id":"o"}}` {
		t.Fatalf("the target got %d requests, the first %.200s", len(got), got[0].body)
	}
}

// deepPlan follows every level of an object: "nested" checks each one.
const deepPlan = `{"$defs": {"n": {"type": "object", "additionalProperties": {"$ref": "#/$defs/n"}}},
  "track": {"Nested": {"type": "object", "properties": {"nested": {"$ref": "#/$defs/n"}}}}}`

// Events nested 1,000 and 5,000 deep (the decoder allows 10,000) against a plan that follows the
// nesting: refused as too deep, quickly, instead of the validator's cost growing with the square
// of the depth (5,000 deep: about 80 ms and 60 MB an event).
func TestDeepNestingAgainstAPlan(t *testing.T) {
	h, target, dlq := hostilePlanHarness(t, deepPlan, config.ViolationDeadLetter, 4<<20)
	nested := func(depth int) string { return strings.Repeat(`{"a":`, depth) + "{}" + strings.Repeat("}", depth) }
	events := []string{`{"type":"track","event":"Nested","userId":"u","messageId":"shallow","properties":{"nested":{"a":{"b":{}}}}}`}
	for i := range 50 {
		depth := 5000
		if i == 0 {
			depth = 1000
		}
		events = append(events, fmt.Sprintf(`{"type":"track","event":"Nested","userId":"u","messageId":"deep-%d","properties":{"nested":%s}}`, i, nested(depth)))
	}
	body := batch(events...)
	var resp response
	allocated := allocatedDuring(func() { resp = h.postWithin(body, 60*time.Second) })
	t.Logf("a %d KiB batch: %d MiB allocated", len(body)>>10, allocated>>20)
	if limit := uint64(32 * len(body)); allocated > limit {
		t.Errorf("the request allocated %d MiB, want at most %d MiB (32 times the body)", allocated>>20, limit>>20)
	}
	if resp.code != http.StatusOK || !strings.Contains(resp.body, `"deadLettered":50`) {
		t.Fatalf("got %d %s, want 200 with 50 dead letters", resp.code, resp.body)
	}
	if got := target.acceptedIDs(); len(got) != 1 || got["shallow"] != 1 {
		t.Errorf("the target got %v, want only shallow", got)
	}
	letters := planEnvelopes(t, dlq)
	var v []struct{ Pointer, Keyword string }
	_ = json.Unmarshal(mustJSON(t, letters[0].Violations), &v)
	if len(v) != 1 || v[0].Keyword != "depth" {
		t.Errorf("violations %+v, want one depth violation", v)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A plan check reserves its memory before it runs (trackingplan.CheckMemoryFactor per byte of
// the largest member): beside a held request, a body that fits but whose check does not is
// refused 429 unchecked; alone, it is checked and delivered.
func TestPlanCheckReservesBeforeItRuns(t *testing.T) {
	// The budget is one body (1 MiB); without a dead-letter target no envelope is counted.
	h, target, _ := planHarnessWith(t, numberPlan, config.UnplannedAllow, config.ViolationOmitProperties, config.FormatSegment, func(c *config.Config) {
		c.DeadLetter = nil
		c.Limits.MaxBodyBytes, c.Limits.MaxBufferedBytes = 1<<20, 1<<20
	})
	release := target.hold()
	defer release()
	first := make(chan response, 1)
	go func() {
		first <- h.post(`{"type":"track","event":"Order Completed","userId":"u","messageId":"held","properties":{"order_id":"` +
			strings.Repeat("x", 400<<10) + `"}}`)
	}()
	waitArrival(t, target)

	wide := `{"type":"track","event":"Order Completed","userId":"u","messageId":"wide","properties":{"order_id":"o","pad":"` +
		strings.Repeat("y", 100<<10) + `"}}`
	if resp := h.post(wide); resp.code != http.StatusTooManyRequests {
		t.Fatalf("beside the held request: got %d %s, want 429", resp.code, resp.body)
	}
	release()
	if resp := <-first; resp.code != http.StatusOK {
		t.Fatalf("held request: %d %s", resp.code, resp.body)
	}
	if resp := h.post(wide); resp.code != http.StatusOK {
		t.Fatalf("alone: %d %s", resp.code, resp.body)
	}
}
