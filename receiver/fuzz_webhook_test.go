package receiver

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// fuzzPlan plans Order Completed (closed), identify's traits and the context.
const fuzzPlan = `{
  "$defs": {"n": {"type": "object", "additionalProperties": {"$ref": "#/$defs/n"}}},
  "track": {"Order Completed": {"type": "object",
    "properties": {"order_id": {"type": "string", "pattern": "^o-[0-9]+$"}, "total": {"type": "number", "minimum": 0},
      "products": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}}, "nested": {"$ref": "#/$defs/n"}},
    "required": ["order_id"], "additionalProperties": false}},
  "identify": {"type": "object", "properties": {"email": {"type": "string", "format": "email"}, "age": {"type": "integer", "maximum": 150}}},
  "context": {"type": "object", "properties": {"locale": {"type": "string", "enum": ["en-US", "fr-FR", "日本語"]}}}
}`

// fuzzSink is a target that checks, as events arrive, that no field its route drops is there; it
// keeps nothing but the first problem. An event whose bytes hold "refuse-me" is refused for good
// (422), one holding "fail-me" answered 503.
type fuzzSink struct {
	mu      sync.Mutex
	problem string
}

func (s *fuzzSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var events []json.RawMessage
	switch r.URL.Path {
	case "/all", "/orders":
		if r.URL.Path == "/orders" { // a batch target: a JSON array
			if err := json.Unmarshal(body, &events); err != nil {
				s.report("the orders target got %q, not an array: %v", body, err)
			}
		} else {
			events = []json.RawMessage{body}
		}
	case "/dlq":
		if !json.Valid(body) {
			s.report("a dead letter is not JSON: %q", body)
		}
	}
	for _, ev := range events {
		var e map[string]json.RawMessage // exact keys; of duplicates, the last
		if err := json.Unmarshal(ev, &e); err != nil {
			s.report("target %s got an event that is not an object: %q", r.URL.Path, ev)
			continue
		}
		if r.URL.Path == "/all" {
			s.absent(r.URL.Path, e["context"], "ip", ev)
			s.absent(r.URL.Path, e["traits"], "email", ev)
		} else {
			s.absent(r.URL.Path, e["properties"], "total", ev)
		}
	}
	switch {
	case bytes.Contains(body, []byte("refuse-me")):
		w.WriteHeader(http.StatusUnprocessableEntity)
	case bytes.Contains(body, []byte("fail-me")):
		w.WriteHeader(http.StatusServiceUnavailable)
	}
}

// absent reports field in member, an object; any occurrence of it, duplicates and escaped
// spellings ("\u0069p") included, would show in the decoded map.
func (s *fuzzSink) absent(target string, member json.RawMessage, field string, ev []byte) {
	var m map[string]json.RawMessage
	if json.Unmarshal(member, &m) != nil {
		return // absent, or not an object: nothing to drop
	}
	if _, ok := m[field]; ok {
		s.report("target %s got dropped field %q: %q", target, field, ev)
	}
}

func (s *fuzzSink) report(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.problem == "" {
		s.problem = fmt.Sprintf(format, args...)
	}
}

func (s *fuzzSink) take() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.problem
	s.problem = ""
	return p
}

// fuzzHarness is a receiver with two targets that drop fields (one of them batching), a tracking
// plan and, in Strict mode, a dead-letter target.
func fuzzHarness(f *testing.F, sink *httptest.Server, strict bool) *harness {
	secrets := newVolume(f, map[string]string{"hmac": testSecret})
	configVol := newVolume(f, map[string]string{planFile: fuzzPlan})
	all := config.Target{Name: "all", DropFields: []string{"context.ip", "traits.email"}, HTTP: &config.HTTPTarget{URL: sink.URL + "/all"}}
	orders := config.Target{Name: "orders", DropFields: []string{"properties.total"},
		Filter: config.Filter{EventTypes: []string{"track"}, TrackEvents: []string{"Order Completed"}},
		HTTP:   &config.HTTPTarget{URL: sink.URL + "/orders", Batch: &config.HTTPBatch{MaxEvents: 3}}}
	cfg := testConfig(secrets, all, orders)
	cfg.Limits.MaxEvents = 50
	cfg.TrackingPlan = &config.TrackingPlan{Files: []string{configVol.Path(planFile)}}
	if strict {
		cfg.Validation = config.ValidationStrict
		cfg.DeadLetter = &config.Target{HTTP: &config.HTTPTarget{URL: sink.URL + "/dlq"}}
		cfg.TrackingPlan.OnViolation = config.ViolationOmitProperties
	} else {
		cfg.Validation = config.ValidationLenient
		cfg.TrackingPlan.OnViolation = config.ViolationForward
		cfg.TrackingPlan.UnplannedEvents = config.UnplannedBlock
	}
	configVol.Update(f, map[string]string{planFile: fuzzPlan, config.FileName: configJSON(f, cfg)})
	return startHarnessOn(f, configVol, secrets, func(o *Options) {
		o.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil)) // millions of requests
	})
}

// FuzzWebhook sends arbitrary bodies, signed in each of Segment's ways (or wrongly), through the
// whole handler: signature, decoding and validation, the tracking plan, routing with dropFields
// and filters, delivery, dead letters. Whatever the body: no panic, an answer Segment
// understands, in JSON; 401 exactly for a wrong signature; a 2xx counts the request's events; no
// dropped field reaches a target.
func FuzzWebhook(f *testing.F) {
	for _, b := range fuzzBodies {
		for mode := range byte(8) {
			f.Add([]byte(b), mode)
		}
	}
	f.Add([]byte(`[{"type":"track","event":"Order Completed","userId":"u","messageId":"o1","properties":{"order_id":"o-1","total":1e400,"extra":1},"context":{"ip":"1.2.3.4","IP":"x","locale":"fr-FR"}},{"type":"identify","userId":"u","traits":{"email":"a@b.c","\u0065mail":"d"}}]`), byte(1))
	sink := &fuzzSink{}
	sinkServer := httptest.NewServer(sink)
	f.Cleanup(sinkServer.Close)
	harnesses := [2]*harness{fuzzHarness(f, sinkServer, false), fuzzHarness(f, sinkServer, true)}

	f.Fuzz(func(t *testing.T, body []byte, mode byte) {
		strict := mode&1 == 1
		h := harnesses[mode&1]
		req := httptest.NewRequest(http.MethodPost, config.DefaultPath, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		signOf := func(b []byte) string { return hex.EncodeToString(sign([]byte(testSecret), b)) }
		signed := true
		switch (mode >> 1) & 3 {
		case 0:
			req.Header.Set(SignatureHeader, signOf(body))
		case 1: // Segment Actions batching: element 0 only
			sc := newEventScanner(body, config.ValidationLenient, config.MaxEventsLimit)
			first := sc.firstElement()
			sc.release()
			if first == nil {
				first = body
			}
			req.Header.Set(SignatureHeader, signOf(first))
		case 2:
			req.Header.Set(SegmentSignatureHeader, signOf(body))
		case 3:
			req.Header.Set(SignatureHeader, signOf(append([]byte("x"), body...)))
			signed = false
		}
		rec := httptest.NewRecorder()
		h.server.ServeHTTP(rec, req)

		code := rec.Code
		switch {
		case !signed && code != http.StatusUnauthorized:
			t.Fatalf("a wrong signature got %d %s", code, rec.Body)
		case signed && code == http.StatusUnauthorized:
			t.Fatalf("a signed body got 401")
		}
		switch code {
		case http.StatusOK, http.StatusBadRequest, http.StatusUnauthorized, http.StatusRequestEntityTooLarge, http.StatusServiceUnavailable:
		default:
			t.Fatalf("answer %d %s", code, rec.Body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("answer %d is not JSON: %q", code, rec.Body)
		}
		if p := sink.take(); p != "" {
			t.Fatal(p)
		}
		if code != http.StatusOK {
			return
		}
		var answer acceptedBody
		if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
			t.Fatal(err)
		}
		if answer.Accepted == 0 && answer.DeadLettered == 1 {
			if !strict {
				t.Fatal("a malformed body was dead-lettered without a dead-letter target")
			}
			return // the whole body, malformed, went to the dead-letter target
		}
		var elems []json.RawMessage
		want := 1
		if json.Unmarshal(body, &elems) == nil {
			want = len(elems)
		}
		if answer.Accepted != want {
			t.Fatalf("200 with %d accepted, the body holds %d events: %q", answer.Accepted, want, body)
		}
		if !strict && answer.DeadLettered > 0 {
			t.Fatalf("%d dead-lettered without a dead-letter target", answer.DeadLettered)
		}
	})
}
