package receiver

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// jsStringify quotes s as JavaScript's JSON.stringify does (QuoteJSONString): only '"', '\' and
// control characters are escaped, with the short forms where they exist and lowercase \u00xx
// otherwise; everything else, U+2028 and U+2029 included, stays raw UTF-8. (Go's encoder escapes
// more, so it cannot stand in for Segment.)
func jsStringify(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < 0x20 {
				fmt.Fprintf(&b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// segmentEvent is event i of an Actions batch as Segment serializes it: JSON.stringify output, no
// spaces, keys in Segment's order, non-ASCII text raw.
func segmentEvent(i int) string {
	name := []string{"Café “Crème” 注文", "Zoë's \"quoted\" back\\slash", "line\u2028separator\u2029", "tab\tbell\u0007🚀"}[i%4]
	return `{"anonymousId":` + jsStringify(fmt.Sprintf("anon-%d", i)) +
		`,"context":{"ip":"203.0.113.9","locale":"de-DE","page":{"title":` + jsStringify(name) + `}}` +
		`,"event":` + jsStringify("Order Completed") +
		`,"messageId":` + jsStringify(fmt.Sprintf("seg-%05d", i)) +
		`,"properties":{"name":` + jsStringify(name) + `,"total":42.5,"items":[1,2,3]}` +
		`,"receivedAt":"2024-05-01T12:00:00.123Z","timestamp":"2024-05-01T12:00:00.000Z","type":"track","userId":` +
		jsStringify(fmt.Sprintf("user-ü-%d", i)) + `}`
}

func segmentBatch(n int) (body, first string) {
	events := make([]string, n)
	for i := range events {
		events[i] = segmentEvent(i)
	}
	return "[" + strings.Join(events, ",") + "]", events[0]
}

// bigBatchConfig admits Segment's largest batch and gives the test sink the default delivery
// budget.
func bigBatchConfig(secretVol *volume, targets ...config.Target) *config.Config {
	cfg := testConfig(secretVol, targets...)
	cfg.Limits.MaxBodyBytes = config.DefaultMaxBodyBytes
	cfg.Delivery.Budget = config.D(config.DefaultBudget)
	return cfg
}

// Segment's batches of 1000 and 4000 events, signed both ways Segment signs them, reach the target
// each event exactly once, byte for byte.
func TestSegmentBatchesSignedBothWays(t *testing.T) {
	target := newSink(t)
	secretVol := newVolume(t, map[string]string{"hmac": testSecret})
	batched := httpTargetTo("batched", target)
	batched.HTTP.Batch = &config.HTTPBatch{}
	h := startHarness(t, secretVol, bigBatchConfig(secretVol, batched))

	for _, n := range []int{1000, 4000} {
		body, first := segmentBatch(n)
		for _, signing := range []struct {
			header, signed string
		}{
			{SignatureHeader, first},       // Actions batching: element 0 only
			{SegmentSignatureHeader, body}, // "Use X-Segment-Signature Header": the whole body
		} {
			t.Run(fmt.Sprintf("%d events, %s", n, signing.header), func(t *testing.T) {
				// Each round uses fresh messageIds, or dedupe would (rightly) skip the target.
				prefix := fmt.Sprintf(`"seg-%d-%s-`, n, signing.header)
				b := strings.ReplaceAll(body, `"seg-`, prefix)
				signed := strings.ReplaceAll(signing.signed, `"seg-`, prefix)
				resp := h.do(http.MethodPost, b, map[string]string{SignatureHeader: "", signing.header: hmacHex(testSecret, signed)})
				if resp.code != 200 {
					t.Fatalf("got %d %s", resp.code, resp.body)
				}
				got := target.acceptedEvents(t)
				for i := range n {
					if id := fmt.Sprintf("seg-%d-%s-%05d", n, signing.header, i); got[id] != 1 {
						t.Fatalf("%s delivered %d times, want 1", id, got[id])
					}
				}
				// Every element of the arrays sent on is the event as Segment sent it, byte for byte.
				for _, r := range target.accepted() {
					if !strings.Contains(r.body, prefix) {
						continue
					}
					var elements []json.RawMessage
					if err := json.Unmarshal([]byte(r.body), &elements); err != nil {
						t.Fatal(err)
					}
					for _, e := range elements {
						var i int
						id := messageIDs(t, string(e))[0]
						if _, err := fmt.Sscanf(id[len(prefix)-1:], "%05d", &i); err != nil {
							t.Fatalf("messageId %q: %v", id, err)
						}
						if want := strings.ReplaceAll(segmentEvent(i), `"seg-`, prefix); string(e) != want {
							t.Fatalf("sent %s\nwant %s", e, want)
						}
					}
				}
			})
		}
	}
}

// A 4000-event batch to a target 20 ms away is answered 2xx within the budget, with batch and
// with per-event requests at the default concurrency. (A 2xx proves it: past the budget the
// receiver answers 503.)
func TestLargestBatchToSlowTarget(t *testing.T) {
	for _, batched := range []bool{true, false} {
		t.Run(fmt.Sprintf("batch=%v", batched), func(t *testing.T) {
			target := newSink(t)
			target.delay.Store(int64(20 * time.Millisecond))
			secretVol := newVolume(t, map[string]string{"hmac": testSecret})
			tc := httpTargetTo("remote", target)
			if batched {
				tc.HTTP.Batch = &config.HTTPBatch{}
			}
			h := startHarness(t, secretVol, bigBatchConfig(secretVol, tc))
			n := 4000
			if raceDetector && !batched {
				n = 1000 // 4000 requests of 20 ms each are CPU-bound under the race detector
			}
			body, first := segmentBatch(n)
			start := time.Now()
			resp := h.do(http.MethodPost, body, map[string]string{SignatureHeader: hmacHex(testSecret, first)})
			t.Logf("%d events, batch=%v: %d in %s", n, batched, resp.code, time.Since(start))
			if resp.code != 200 {
				t.Fatalf("got %d %s", resp.code, resp.body)
			}
			got := target.acceptedEvents(t)
			if len(got) != n {
				t.Fatalf("target has %d distinct events, want %d", len(got), n)
			}
			for id, n := range got {
				if n != 1 {
					t.Fatalf("%s delivered %d times", id, n)
				}
			}
		})
	}
}

// One target refuses some events for a while: the request is answered 503, the events it
// accepted are remembered, and Segment's retry delivers only the rest.
func TestPartialFailureRetriesOnlyTheRest(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch=%v", batched), func(t *testing.T) {
			target := newSink(t)
			secretVol := newVolume(t, map[string]string{"hmac": testSecret})
			tc := httpTargetTo("picky", target)
			if batched {
				tc.HTTP.Batch = &config.HTTPBatch{MaxEvents: 2}
			}
			h := startHarness(t, secretVol, testConfig(secretVol, tc))
			refuse := func(body string) int {
				if strings.Contains(body, `"p-3"`) || strings.Contains(body, `"p-4"`) {
					return http.StatusServiceUnavailable
				}
				return http.StatusOK
			}
			target.decide.Store(&refuse)
			body := batch(track("p-1"), track("p-2"), track("p-3"), track("p-4"), track("p-5"))
			if resp := h.post(body); resp.code != 503 {
				t.Fatalf("got %d %s, want 503", resp.code, resp.body)
			}
			firstRound := len(target.all())
			target.decide.Store(nil)
			if resp := h.post(body); resp.code != 200 {
				t.Fatalf("retry: got %d %s", resp.code, resp.body)
			}
			var retried []string
			for _, r := range target.all()[firstRound:] {
				retried = append(retried, messageIDs(t, r.body)...)
			}
			slices.Sort(retried) // sent concurrently, so in any order
			if strings.Join(retried, ",") != "p-3,p-4" {
				t.Fatalf("the retry sent %v, want only p-3 and p-4", retried)
			}
			for _, id := range []string{"p-1", "p-2", "p-3", "p-4", "p-5"} {
				if got := target.acceptedEvents(t)[id]; got != 1 {
					t.Fatalf("%s accepted %d times, want 1", id, got)
				}
			}
			if h.metric("segment_receiver_target_failures_total", "target", "picky", "kind", "transient") == 0 {
				t.Fatal("the refusals were not counted as transient failures")
			}
		})
	}
}

// deadLetterEnvelope is the documented envelope.
type deadLetterEnvelope struct {
	Reason    string          `json:"reason"`
	Error     string          `json:"error"`
	Field     string          `json:"field"`
	Target    string          `json:"target"`
	Index     int             `json:"index"`
	MessageID string          `json:"messageId"`
	Source    string          `json:"source"`
	Encoding  string          `json:"encoding"`
	Event     json.RawMessage `json:"event"`
}

func envelopes(t testing.TB, s *sink) []deadLetterEnvelope {
	t.Helper()
	var out []deadLetterEnvelope
	for _, r := range s.accepted() {
		var e deadLetterEnvelope
		if err := json.Unmarshal([]byte(r.body), &e); err != nil {
			t.Fatalf("dead letter is not an envelope: %v: %s", err, r.body)
		}
		out = append(out, e)
	}
	return out
}

func TestDeadLetterTarget(t *testing.T) {
	setup := func(t *testing.T) (*harness, *sink, *sink) {
		target, dlq := newSink(t), newSink(t)
		secretVol := newVolume(t, map[string]string{"hmac": testSecret})
		cfg := testConfig(secretVol, httpTargetTo("orders", target))
		cfg.DeadLetter = &config.Target{HTTP: &config.HTTPTarget{URL: dlq.URL + "/dlq"}}
		return startHarness(t, secretVol, cfg), target, dlq
	}

	t.Run("an invalid event inside a batch", func(t *testing.T) {
		h, target, dlq := setup(t)
		bad := `{"type":"track","userId":"u-1","messageId":"d-2"}` // a track event without its name
		resp := h.post(batch(track("d-1"), bad, track("d-3")))
		if resp.code != 200 || !strings.Contains(resp.body, `"deadLettered":1`) {
			t.Fatalf("got %d %s", resp.code, resp.body)
		}
		if got := target.acceptedEvents(t); got["d-1"] != 1 || got["d-3"] != 1 || got["d-2"] != 0 {
			t.Fatalf("target got %v", got)
		}
		letters := envelopes(t, dlq)
		if len(letters) != 1 {
			t.Fatalf("%d dead letters, want 1", len(letters))
		}
		e := letters[0]
		if e.Reason != ReasonInvalid || e.Index != 1 || e.Field != "event" || e.Error == "" || e.Source != "team-a/checkout" || string(e.Event) != bad {
			t.Fatalf("envelope %+v", e)
		}
		if got := h.metric("segment_receiver_dead_lettered_events_total", "reason", ReasonInvalid); got != 1 {
			t.Fatalf("dead-letter metric %v, want 1", got)
		}
	})

	t.Run("a permanent 4xx from a target", func(t *testing.T) {
		h, target, dlq := setup(t)
		refuse := func(body string) int {
			if strings.Contains(body, `"r-2"`) {
				return http.StatusUnprocessableEntity
			}
			return http.StatusOK
		}
		target.decide.Store(&refuse)
		body := batch(track("r-1"), track("r-2"))
		for range 2 { // Segment's retry of the same request dead-letters nothing twice
			if resp := h.post(body); resp.code != 200 {
				t.Fatalf("got %d %s", resp.code, resp.body)
			}
		}
		letters := envelopes(t, dlq)
		if len(letters) != 1 {
			t.Fatalf("%d dead letters, want 1", len(letters))
		}
		e := letters[0]
		if e.Reason != ReasonRefused || e.Target != "orders" || e.Index != 1 || e.MessageID != "r-2" ||
			!strings.Contains(e.Error, "422") || string(e.Event) != track("r-2") {
			t.Fatalf("envelope %+v", e)
		}
		if got := h.metric("segment_receiver_dead_lettered_events_total", "reason", ReasonRefused); got != 1 {
			t.Fatalf("dead-letter metric %v, want 1", got)
		}
	})

	t.Run("the dead-letter target down", func(t *testing.T) {
		h, target, dlq := setup(t)
		dlq.status.Store(http.StatusServiceUnavailable)
		resp := h.post(batch(track("x-1"), `{"type":"nonsense","userId":"u"}`))
		if resp.code != 503 || resp.header.Get("Retry-After") == "" {
			t.Fatalf("got %d %s, want 503 with Retry-After", resp.code, resp.body)
		}
		if len(dlq.accepted()) != 0 || len(dlq.all()) == 0 {
			t.Fatal("the dead-letter target was not tried, or accepted")
		}
		if got := h.metric("segment_receiver_dead_lettered_events_total", "reason", ReasonInvalid); got != 0 {
			t.Fatalf("dead-letter metric %v, want 0: nothing was dead-lettered", got)
		}
		if len(target.accepted()) != 1 {
			t.Fatalf("the valid event reached the target %d times", len(target.accepted()))
		}
	})

	t.Run("a dead-letter target taking some letters, then the rest on Segment's retry", func(t *testing.T) {
		h, _, dlq := setup(t)
		var down atomic.Bool
		down.Store(true)
		failSecond := func(body string) int {
			if down.Load() && strings.Contains(body, `"u-2"`) {
				return http.StatusServiceUnavailable
			}
			return http.StatusOK
		}
		dlq.decide.Store(&failSecond)
		body := batch(`{"type":"nonsense","userId":"u-1"}`, `{"type":"nonsense","userId":"u-2"}`)
		if resp := h.post(body); resp.code != 503 {
			t.Fatalf("got %d %s, want 503: one letter is not at the dead-letter target", resp.code, resp.body)
		}
		if got := h.metric("segment_receiver_dead_lettered_events_total", "reason", ReasonInvalid); got != 1 {
			t.Fatalf("dead-letter metric %v after the first try, want 1: the letter the target took", got)
		}
		down.Store(false)
		if resp := h.post(body); resp.code != 200 {
			t.Fatalf("retry: got %d %s", resp.code, resp.body)
		}
		if got := h.metric("segment_receiver_dead_lettered_events_total", "reason", ReasonInvalid); got != 2 {
			t.Fatalf("dead-letter metric %v after the retry, want 2: each letter counted once", got)
		}
		if letters := envelopes(t, dlq); len(letters) != 2 {
			t.Fatalf("%d dead letters, want 2", len(letters))
		}
	})

	t.Run("CloudEvents attributes", func(t *testing.T) {
		target, dlq := newSink(t), newSink(t)
		secretVol := newVolume(t, map[string]string{"hmac": testSecret})
		cfg := testConfig(secretVol, httpTargetTo("orders", target))
		cfg.DeadLetter = &config.Target{HTTP: &config.HTTPTarget{URL: dlq.URL, Format: config.FormatCloudEvents}}
		h := startHarness(t, secretVol, cfg)
		if resp := h.post(`{"type":"identify","userId":7,"messageId":"ce-1"}`); resp.code != 200 {
			t.Fatalf("got %d %s", resp.code, resp.body)
		}
		got := dlq.accepted()
		if len(got) != 1 {
			t.Fatalf("%d dead letters", len(got))
		}
		hd := got[0].header
		if hd.Get("ce-type") != "com.segment."+DeadLetterType || hd.Get("ce-deadletterreason") != ReasonInvalid ||
			!strings.HasPrefix(hd.Get("ce-id"), "swh-dl-") || hd.Get("ce-specversion") != "1.0" {
			t.Fatalf("CloudEvents headers %v", hd)
		}
	})
}

// A body that cannot be split into events would get a 400, which Segment does not retry; with a
// dead-letter target it goes there whole, once authenticated.
func TestMalformedBodyDeadLettered(t *testing.T) {
	setup := func(t *testing.T) (*harness, *sink, *sink) {
		target, dlq := newSink(t), newSink(t)
		secretVol := newVolume(t, map[string]string{"hmac": testSecret})
		cfg := testConfig(secretVol, httpTargetTo("orders", target))
		cfg.Limits.MaxBodyBytes = 1024
		cfg.DeadLetter = &config.Target{HTTP: &config.HTTPTarget{URL: dlq.URL + "/dlq"}}
		return startHarness(t, secretVol, cfg), target, dlq
	}

	for _, tc := range []struct {
		name, body, encoding string
	}{
		{"truncated JSON", `{"type":"track","event":"Order Completed","userId":"u-1",`, "base64"},
		{"truncated batch", batch(track("m-1")) + `,{"type":`, "base64"},
		{"trailing data", track("m-2") + " garbage", "base64"},
		{"invalid UTF-8 outside JSON", "ÿþ not JSON", "base64"},
		{"a JSON string", `"not an event"`, ""},
		{"an empty batch", `[]`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, target, dlq := setup(t)
			resp := h.post(tc.body)
			if resp.code != 200 || strings.TrimSpace(resp.body) != `{"accepted":0,"deadLettered":1}` {
				t.Fatalf("got %d %s", resp.code, resp.body)
			}
			letters := envelopes(t, dlq)
			if len(letters) != 1 {
				t.Fatalf("%d dead letters, want 1", len(letters))
			}
			e := letters[0]
			if e.Reason != ReasonMalformed || e.Index != -1 || e.Error == "" || e.Source != "team-a/checkout" || e.Encoding != tc.encoding {
				t.Fatalf("envelope %+v", e)
			}
			got := []byte(e.Event)
			if tc.encoding == "base64" {
				var encoded string
				if err := json.Unmarshal(e.Event, &encoded); err != nil {
					t.Fatalf("event is not a JSON string: %s", e.Event)
				}
				var err error
				if got, err = base64.StdEncoding.DecodeString(encoded); err != nil {
					t.Fatal(err)
				}
			}
			if string(got) != tc.body {
				t.Fatalf("dead-lettered %q, want the body %q", got, tc.body)
			}
			if len(target.all()) != 0 {
				t.Fatal("part of a malformed body reached the target")
			}
			if got := h.metric("segment_receiver_dead_lettered_events_total", "reason", ReasonMalformed); got != 1 {
				t.Fatalf("dead-letter metric %v, want 1", got)
			}
		})
	}

	t.Run("unauthenticated: refused, never dead-lettered", func(t *testing.T) {
		h, _, dlq := setup(t)
		body := `{"type":"track",`
		for name, headers := range map[string]map[string]string{
			"wrong secret": {SignatureHeader: hmacHex("wrong-secret", body)},
			"unsigned":     {SignatureHeader: ""},
		} {
			if resp := h.do(http.MethodPost, body, headers); resp.code != 401 {
				t.Fatalf("%s: got %d %s, want 401", name, resp.code, resp.body)
			}
		}
		// Signed over element 0 as Segment signs a batch, but element 0 cannot be read.
		if resp := h.do(http.MethodPost, "["+body, map[string]string{SignatureHeader: hmacHex(testSecret, body)}); resp.code != 401 {
			t.Fatalf("unreadable element 0: got %d %s, want 401", resp.code, resp.body)
		}
		if len(dlq.all()) != 0 {
			t.Fatal("an unauthenticated body reached the dead-letter target")
		}
	})

	t.Run("the dead-letter target down", func(t *testing.T) {
		h, _, dlq := setup(t)
		dlq.status.Store(http.StatusServiceUnavailable)
		resp := h.post(`{"type":`)
		if resp.code != 503 || resp.header.Get("Retry-After") == "" {
			t.Fatalf("got %d %s, want 503 with Retry-After", resp.code, resp.body)
		}
		if len(dlq.all()) == 0 {
			t.Fatal("the dead-letter target was not tried")
		}
		if got := h.metric("segment_receiver_dead_lettered_events_total", "reason", ReasonMalformed); got != 0 {
			t.Fatalf("dead-letter metric %v, want 0: nothing was dead-lettered", got)
		}
	})

	t.Run("over the size limit: still 413", func(t *testing.T) {
		h, _, dlq := setup(t)
		resp := h.post(`{"type":"` + strings.Repeat("x", 2048))
		if resp.code != 413 {
			t.Fatalf("got %d %s, want 413", resp.code, resp.body)
		}
		if len(dlq.all()) != 0 {
			t.Fatal("a body over the limit was dead-lettered")
		}
	})
}

// Without a dead-letter target, today's answers stay: an invalid event refuses the whole request
// with 400 naming it, and a permanent refusal answers 503.
func TestWithoutDeadLetterTarget(t *testing.T) {
	target := newSink(t)
	secretVol := newVolume(t, map[string]string{"hmac": testSecret})
	h := startHarness(t, secretVol, testConfig(secretVol, httpTargetTo("orders", target)))
	resp := h.post(batch(track("w-1"), `{"type":"track","userId":"u"}`))
	if resp.code != 400 || !strings.Contains(resp.body, `"index":1`) || !strings.Contains(resp.body, `"field":"event"`) {
		t.Fatalf("got %d %s", resp.code, resp.body)
	}
	if len(target.all()) != 0 {
		t.Fatal("part of a refused request was delivered")
	}
	if resp := h.post(`{"type":"track",`); resp.code != 400 || !strings.Contains(resp.body, "malformed JSON") {
		t.Fatalf("malformed body: got %d %s, want 400", resp.code, resp.body)
	}
	target.status.Store(http.StatusBadRequest)
	if resp := h.post(track("w-2")); resp.code != 503 {
		t.Fatalf("permanent refusal: got %d, want 503", resp.code)
	}
}

// FullBody refuses a batch signed over element 0 only, and takes whole-body signatures.
func TestFullBodySignatureMode(t *testing.T) {
	target := newSink(t)
	secretVol := newVolume(t, map[string]string{"hmac": testSecret})
	cfg := testConfig(secretVol, httpTargetTo("orders", target))
	cfg.Authentication.Signature = config.SignatureFullBody
	h := startHarness(t, secretVol, cfg)
	first := track("f-1")
	body := batch(first, track("forged"))
	if resp := h.do(http.MethodPost, body, map[string]string{SignatureHeader: hmacHex(testSecret, first)}); resp.code != 401 {
		t.Fatalf("element-0 signature: got %d, want 401", resp.code)
	}
	for _, header := range []string{SignatureHeader, SegmentSignatureHeader} {
		if resp := h.do(http.MethodPost, body, map[string]string{SignatureHeader: "", header: hmacHex(testSecret, body)}); resp.code != 200 {
			t.Fatalf("whole-body %s: got %d %s", header, resp.code, resp.body)
		}
	}
	if len(target.all()) == 0 || target.acceptedEvents(t)["forged"] != 1 {
		t.Fatal("the whole-body-signed batch was not delivered")
	}
}

// Twenty reloads of unchanged files, with several header files, rebuild nothing.
func TestUnchangedReloadsRebuildNothing(t *testing.T) {
	target := newSink(t)
	secretVol := newVolume(t, map[string]string{"hmac": testSecret, "a": "1", "b": "2", "c": "3", "d": "4"})
	tc := httpTargetTo("orders", target)
	tc.HTTP.HeaderFiles = map[string]string{"X-A": secretVol.Path("a"), "X-B": secretVol.Path("b"), "X-C": secretVol.Path("c"), "X-D": secretVol.Path("d")}
	h := startHarness(t, secretVol, testConfig(secretVol, tc), func(o *Options) { o.PollInterval = -1 })
	loaded := h.server.current.Load()
	successes := h.metric("segment_receiver_config_reloads_total", "result", "success")
	for range 20 {
		if err := h.server.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	if h.server.current.Load() != loaded || h.metric("segment_receiver_config_reloads_total", "result", "success") != successes {
		t.Fatal("a reload of unchanged files built a new pipeline")
	}
}
