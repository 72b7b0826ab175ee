package receiver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segment-webhook-operator/segment-webhook-operator/internal/syncbuf"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

func TestResponseCodes(t *testing.T) {
	target := newSink(t)
	secrets := newVolume(t, map[string]string{"hmac": testSecret + "\n"}) // trailing newline is trimmed
	cfg := testConfig(secrets, httpTargetTo("primary", target))
	cfg.Limits.MaxBodyBytes = 2048
	cfg.Limits.MaxEvents = 3
	h := startHarness(t, secrets, cfg)

	ok := track("m-ok")
	big := track(strings.Repeat("x", 3000))
	tests := []struct {
		name     string
		method   string
		body     string
		headers  map[string]string // "" value deletes the header
		wantCode int
		wantBody string // substring
		wantHdr  [2]string
	}{
		{name: "accepted", body: ok, wantCode: 200, wantBody: `{"accepted":1}`},
		{name: "PUT accepted", method: "PUT", body: track("m-put"), wantCode: 200},
		{name: "PATCH accepted", method: "PATCH", body: track("m-patch"), wantCode: 200},
		{name: "batch accepted", body: batch(track("m-b1"), identify("m-b2")), wantCode: 200, wantBody: `{"accepted":2}`},
		{name: "charset parameter allowed", body: track("m-cs"), headers: map[string]string{"Content-Type": "application/json; charset=utf-8"}, wantCode: 200},
		{name: "GET not allowed", method: "GET", body: ok, wantCode: 405, wantHdr: [2]string{"Allow", "POST, PUT, PATCH"}},
		{name: "DELETE not allowed", method: "DELETE", body: ok, wantCode: 405, wantHdr: [2]string{"Allow", "POST, PUT, PATCH"}},
		{name: "no signature", body: ok, headers: map[string]string{SignatureHeader: ""}, wantCode: 401, wantBody: `{"error":"unauthorized"}`},
		{name: "wrong signature", body: ok, headers: map[string]string{SignatureHeader: hmacHex("wrong", ok)}, wantCode: 401, wantBody: `{"error":"unauthorized"}`},
		{name: "text/plain", body: ok, headers: map[string]string{"Content-Type": "text/plain"}, wantCode: 415},
		{name: "no content type", body: ok, headers: map[string]string{"Content-Type": ""}, wantCode: 415},
		{name: "body over limit", body: big, headers: map[string]string{SignatureHeader: hmacHex(testSecret, big)}, wantCode: 413, wantBody: `"limit":2048`},
		{name: "too many events", body: batch(track("1"), track("2"), track("3"), track("4")), wantCode: 413, wantBody: `"too many events"`},
		{name: "invalid event names index and field", body: batch(track("1"), `{"type":"track","userId":"u"}`), wantCode: 400,
			wantBody: `{"error":"invalid event","index":1,"field":"event","reason":"track events need a non-empty event name"}`},
		{name: "malformed JSON", body: `{"type":`, wantCode: 400},
		{name: "empty batch", body: `[]`, wantCode: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			headers := map[string]string{SignatureHeader: hmacHex(testSecret, tt.body)}
			for k, v := range tt.headers {
				headers[k] = v
			}
			resp := h.do(method, tt.body, headers)
			if resp.code != tt.wantCode || !strings.Contains(resp.body, tt.wantBody) {
				t.Fatalf("got %d %s, want %d containing %s", resp.code, resp.body, tt.wantCode, tt.wantBody)
			}
			if tt.wantHdr[0] != "" && resp.header.Get(tt.wantHdr[0]) != tt.wantHdr[1] {
				t.Fatalf("header %s = %q, want %q", tt.wantHdr[0], resp.header.Get(tt.wantHdr[0]), tt.wantHdr[1])
			}
		})
	}

	t.Run("chunked body over limit", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, h.url, io.MultiReader(strings.NewReader(big))) // no length: chunked
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(SignatureHeader, hmacHex(testSecret, big))
		if resp := send(t, req); resp.code != 413 {
			t.Fatalf("got %d %s", resp.code, resp.body)
		}
	})
	t.Run("oversize Content-Length refused before the body arrives", func(t *testing.T) {
		conn, err := net.Dial("tcp", h.server.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		status := rawRequest(t, conn, "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
			"X-Signature: "+strings.Repeat("ab", 20)+"\r\nContent-Length: 104857600\r\n\r\n")
		if status != "HTTP/1.1 413 Request Entity Too Large" {
			t.Fatalf("got %q", status)
		}
	})
	t.Run("unknown path", func(t *testing.T) {
		if resp := h.get("/other"); resp.code != 404 {
			t.Fatalf("got %d", resp.code)
		}
	})
	t.Run("health", func(t *testing.T) {
		if resp := h.get("/healthz"); resp.code != 200 {
			t.Fatalf("healthz %d", resp.code)
		}
		if resp := h.get("/readyz"); resp.code != 200 {
			t.Fatalf("readyz %d", resp.code)
		}
	})

	// Only accepted requests reached the target, each event once.
	want := map[string]int{"m-ok": 1, "m-put": 1, "m-patch": 1, "m-b1": 1, "m-b2": 1, "m-cs": 1}
	if got := target.acceptedIDs(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("target got %v, want %v", got, want)
	}
	if got := h.metric("segment_receiver_signature_failures_total"); got != 2 {
		t.Fatalf("signature failures = %v, want 2", got)
	}
	if got := h.metric("segment_receiver_requests_total", "code", "401"); got != 2 {
		t.Fatalf("401s counted %v", got)
	}
}

func TestOverloadAnswers429(t *testing.T) {
	target := newSink(t)
	release := target.hold()
	defer release()
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	cfg := testConfig(secrets, httpTargetTo("primary", target))
	cfg.Limits.MaxInFlight = 1
	cfg.Delivery.Budget = config.D(4 * time.Second)
	h := startHarness(t, secrets, cfg)

	first := make(chan response, 1)
	go func() { first <- h.post(track("slow")) }()
	waitArrival(t, target)
	resp := h.post(track("rejected"))
	if resp.code != http.StatusTooManyRequests || resp.header.Get("Retry-After") == "" {
		t.Fatalf("got %d (Retry-After %q), want 429 with Retry-After", resp.code, resp.header.Get("Retry-After"))
	}
	release()
	if resp := <-first; resp.code != 200 {
		t.Fatalf("first request got %d", resp.code)
	}
	if resp := h.post(track("after")); resp.code != 200 {
		t.Fatalf("after the slot freed: %d", resp.code)
	}
}

func TestBufferedBodiesAreBoundedWith429(t *testing.T) {
	target := newSink(t)
	release := target.hold()
	defer release()
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	cfg := testConfig(secrets, httpTargetTo("primary", target))
	cfg.Limits.MaxBodyBytes = 4096
	cfg.Limits.MaxBufferedBytes = 4096
	h := startHarness(t, secrets, cfg)

	// A request held at the target keeps its body and what its delivery holds: the next body
	// does not fit what is left. (A slow body that is not read yet would give its place instead,
	// see TestSlowLargeUnverifiedBodiesDoNotExhaustTheBudget.)
	first := make(chan response, 1)
	go func() { first <- h.post(paddedTrack("held", 1400)) }()
	waitArrival(t, target)
	resp := h.post(paddedTrack("rejected", 1400))
	if resp.code != http.StatusTooManyRequests || resp.header.Get("Retry-After") == "" {
		t.Fatalf("got %d (Retry-After %q), want 429 with Retry-After", resp.code, resp.header.Get("Retry-After"))
	}
	release()
	if resp := <-first; resp.code != http.StatusOK {
		t.Fatalf("held request: %d %s", resp.code, resp.body)
	}
	if resp := h.post(paddedTrack("after", 1400)); resp.code != http.StatusOK {
		t.Fatalf("after the reservation was released: %d %s", resp.code, resp.body)
	}
}

func TestBearerAndNoneModes(t *testing.T) {
	target := newSink(t)
	secrets := newVolume(t, map[string]string{"token-a": "tok-a\n", "token-b": "tok-b"})
	cfg := testConfig(secrets, httpTargetTo("primary", target))
	cfg.Authentication = config.Authentication{Mode: config.AuthBearer, SecretFiles: []string{secrets.Path("token-a"), secrets.Path("token-b")}}
	h := startHarness(t, secrets, cfg)
	for auth, want := range map[string]int{"Bearer tok-a": 200, "Bearer tok-b": 200, "Bearer tok-c": 401, "": 401} {
		resp := h.do("POST", track("b-"+auth), map[string]string{"Authorization": auth})
		if resp.code != want {
			t.Errorf("Authorization %q: got %d, want %d", auth, resp.code, want)
		}
	}

	cfg.Authentication = config.Authentication{Mode: config.AuthNone}
	none := startHarness(t, secrets, cfg)
	if resp := none.do("POST", track("n-1"), nil); resp.code != 200 {
		t.Fatalf("mode None: got %d", resp.code)
	}
}

func TestStrictVersusLenient(t *testing.T) {
	custom := `{"type":"custom_remapped","payload":{"a":1}}`
	numericUser := `{"type":"track","event":"e","userId":42}`
	for _, mode := range []string{config.ValidationStrict, config.ValidationLenient} {
		t.Run(mode, func(t *testing.T) {
			target := newSink(t)
			secrets := newVolume(t, map[string]string{"hmac": testSecret})
			cfg := testConfig(secrets, httpTargetTo("primary", target))
			cfg.Validation = mode
			h := startHarness(t, secrets, cfg)
			want := 200
			if mode == config.ValidationStrict {
				want = 400
			}
			for _, body := range []string{custom, numericUser, batch(track("ok"), custom)} {
				if resp := h.post(body); resp.code != want {
					t.Errorf("%s: got %d %s, want %d", body, resp.code, resp.body, want)
				}
			}
			if mode == config.ValidationStrict && len(target.all()) != 0 {
				t.Fatalf("a refused batch was partly delivered: %v", target.all())
			}
			if mode == config.ValidationLenient {
				bodies := map[string]bool{}
				for _, r := range target.accepted() {
					bodies[r.body] = true
				}
				if !bodies[custom] || !bodies[numericUser] {
					t.Fatalf("lenient did not forward as received: %v", bodies)
				}
			}
		})
	}
}

func TestFiltersAndDroppedFields(t *testing.T) {
	everything, orders, identities := newSink(t), newSink(t), newSink(t)
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	all := httpTargetTo("everything", everything)
	all.DropFields = []string{"context.ip", "traits.email"}
	orderTarget := httpTargetTo("orders", orders)
	orderTarget.Filter = config.Filter{EventTypes: []string{"track"}, TrackEvents: []string{"Order Completed"}}
	identityTarget := httpTargetTo("identities", identities)
	identityTarget.Filter = config.Filter{EventTypes: []string{"identify"}}
	h := startHarness(t, secrets, testConfig(secrets, all, orderTarget, identityTarget))

	other := `{"type":"track","event":"Page Scrolled","userId":"u","messageId":"m-scroll"}`
	if resp := h.post(batch(track("m-order"), identify("m-id"), other)); resp.code != 200 {
		t.Fatalf("got %d %s", resp.code, resp.body)
	}
	bodies := func(s *sink) map[string]string {
		out := map[string]string{}
		for _, r := range s.accepted() {
			out[r.header.Get("Idempotency-Key")] = r.body
		}
		return out
	}
	gotAll := bodies(everything)
	if len(gotAll) != 3 || gotAll["m-order"] != track("m-order") || gotAll["m-scroll"] != other ||
		gotAll["m-id"] != `{"type":"identify","userId":"u-1","messageId":"m-id","traits":{},"context":{"locale":"en-US"}}` {
		t.Fatalf("everything got %v", gotAll)
	}
	if got := bodies(orders); len(got) != 1 || got["m-order"] != track("m-order") {
		t.Fatalf("orders got %v", got)
	}
	if got := bodies(identities); len(got) != 1 || got["m-id"] != identify("m-id") {
		t.Fatalf("identities got %v (fields dropped for another target must stay)", got)
	}
}

// The delivery guarantee: 503 until every required target has the event, and a target that
// already accepted it is not sent it again when Segment retries.
func TestFailingTargetThenRecovery(t *testing.T) {
	healthy, flaky := newSink(t), newSink(t)
	flaky.status.Store(http.StatusBadGateway)
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	cfg := testConfig(secrets, httpTargetTo("healthy", healthy), httpTargetTo("flaky", flaky))
	cfg.Delivery.Budget = config.D(500 * time.Millisecond)
	h := startHarness(t, secrets, cfg)

	body := batch(track("m-1"), identify("m-2"))
	resp := h.post(body)
	if resp.code != http.StatusServiceUnavailable || resp.header.Get("Retry-After") == "" {
		t.Fatalf("first attempt: got %d (Retry-After %q), want 503 with Retry-After", resp.code, resp.header.Get("Retry-After"))
	}
	if n := len(flaky.all()); n <= 2 {
		t.Fatalf("flaky target saw %d attempts for 2 events, want retries", n)
	}

	flaky.status.Store(http.StatusOK)
	if resp := h.post(body); resp.code != 200 { // Segment's retry
		t.Fatalf("retry: got %d %s", resp.code, resp.body)
	}
	if got := healthy.acceptedIDs(); got["m-1"] != 1 || got["m-2"] != 1 || len(healthy.all()) != 2 {
		t.Fatalf("healthy target got %v in %d requests; want each event exactly once", got, len(healthy.all()))
	}
	if got := flaky.acceptedIDs(); got["m-1"] != 1 || got["m-2"] != 1 {
		t.Fatalf("flaky target accepted %v", got)
	}
	if got := h.metric("segment_receiver_dedupe_hits_total", "target", "healthy"); got != 2 {
		t.Fatalf("dedupe hits for healthy = %v, want 2", got)
	}
	if got := h.metric("segment_receiver_target_failures_total", "target", "flaky", "kind", "transient"); got != 2 {
		t.Fatalf("transient failures = %v, want 2", got)
	}
}

func TestPermanentTargetErrorIsNotRetried(t *testing.T) {
	target := newSink(t)
	target.status.Store(http.StatusUnprocessableEntity)
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	h := startHarness(t, secrets, testConfig(secrets, httpTargetTo("primary", target)))
	if resp := h.post(track("m-perm")); resp.code != http.StatusServiceUnavailable {
		t.Fatalf("got %d, want 503 (a required target refused)", resp.code)
	}
	if n := len(target.all()); n != 1 {
		t.Fatalf("target saw %d attempts, want 1", n)
	}
	if got := h.metric("segment_receiver_target_failures_total", "target", "primary", "kind", "permanent"); got != 1 {
		t.Fatalf("permanent failures = %v", got)
	}
}

func TestRetriedStatusesRecoverWithinBudget(t *testing.T) {
	for _, code := range []int{http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			var calls atomic.Int32
			target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) == 1 {
					w.WriteHeader(code)
				}
			}))
			defer target.Close()
			secrets := newVolume(t, map[string]string{"hmac": testSecret})
			h := startHarness(t, secrets, testConfig(secrets, config.Target{Name: "primary", HTTP: &config.HTTPTarget{URL: target.URL}}))
			if resp := h.post(track("m")); resp.code != 200 {
				t.Fatalf("got %d", resp.code)
			}
			if calls.Load() != 2 {
				t.Fatalf("target called %d times, want 2", calls.Load())
			}
		})
	}
}

func TestOptionalTargets(t *testing.T) {
	required, broken, slowOptional := newSink(t), newSink(t), newSink(t)
	broken.status.Store(http.StatusInternalServerError)
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	brokenTarget := httpTargetTo("broken", broken)
	brokenTarget.Optional = true
	slowTarget := httpTargetTo("slow", slowOptional)
	slowTarget.Optional = true
	h := startHarness(t, secrets, testConfig(secrets, httpTargetTo("required", required), brokenTarget, slowTarget))

	if resp := h.post(track("m-opt")); resp.code != 200 {
		t.Fatalf("got %d; a failing optional target must not fail the request", resp.code)
	}
	if got := required.acceptedIDs(); got["m-opt"] != 1 {
		t.Fatalf("required target got %v", got)
	}
	eventually(t, 30*time.Second, "the optional target to receive the event", func() bool {
		return slowOptional.acceptedIDs()["m-opt"] == 1
	})
	eventually(t, 30*time.Second, "the broken optional target's failure to be counted", func() bool {
		return h.metric("segment_receiver_target_failures_total", "target", "broken", "kind", "transient") == 1
	})
}

func TestCloudEventsFormat(t *testing.T) {
	target := newSink(t)
	secrets := newVolume(t, map[string]string{"hmac": testSecret, "api-key": "key-123\n"})
	ce := httpTargetTo("events", target)
	ce.HTTP.Format = config.FormatCloudEvents
	ce.HTTP.Method = http.MethodPut
	ce.HTTP.Headers = map[string]string{"X-Team": "checkout"}
	ce.HTTP.HeaderFiles = map[string]string{"X-Api-Key": secrets.Path("api-key")}
	h := startHarness(t, secrets, testConfig(secrets, ce))

	event := `{"type":"identify","userId":"user-9","messageId":"msg-42","timestamp":"2024-05-01T12:00:00.250+02:00","traits":{"x":"é"}}`
	if resp := h.post(event); resp.code != 200 {
		t.Fatalf("got %d", resp.code)
	}
	got := target.accepted()
	if len(got) != 1 {
		t.Fatalf("target got %d requests", len(got))
	}
	r := got[0]
	want := map[string]string{
		"Ce-Specversion":  "1.0",
		"Ce-Id":           "msg-42",
		"Ce-Type":         "com.segment.identify",
		"Ce-Source":       "segment-webhook-operator/team-a/checkout",
		"Ce-Time":         "2024-05-01T10:00:00.25Z",
		"Ce-Subject":      "user-9",
		"Content-Type":    "application/json",
		"Idempotency-Key": "msg-42",
		"X-Team":          "checkout",
		"X-Api-Key":       "key-123",
	}
	for k, v := range want {
		if r.header.Get(k) != v {
			t.Errorf("header %s = %q, want %q", k, r.header.Get(k), v)
		}
	}
	if r.method != http.MethodPut || r.body != event {
		t.Fatalf("got %s %s", r.method, r.body)
	}
}

// Event data in headers (ids, the type, the userId) may hold line breaks and NULs, which the HTTP
// client refuses: percent-encoded as CloudEvents requires, every such event is delivered, not
// retried until Segment gives up.
func TestEventDataInHeadersIsPercentEncoded(t *testing.T) {
	ceSink, plainSink, dlq := newSink(t), newSink(t), newSink(t)
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	ce := httpTargetTo("events", ceSink)
	ce.HTTP.Format = config.FormatCloudEvents
	cfg := testConfig(secrets, ce, httpTargetTo("plain", plainSink))
	cfg.Validation = config.ValidationLenient
	cfg.DeadLetter = &config.Target{HTTP: &config.HTTPTarget{URL: dlq.URL}}
	h := startHarness(t, secrets, cfg)

	type sent struct{ id, typ, user string }
	events := []sent{
		{`h-1`, `identify`, `alice\n`},
		{`h-2\r\n`, `odd\u0000type`, `bob`},
		{`h 3%\"`, `track`, `carol\u00e9`},
	} // JSON string contents
	var body []string
	for _, e := range events {
		body = append(body, fmt.Sprintf(`{"type":"%s","userId":"%s","messageId":"%s"}`, e.typ, e.user, e.id))
	}
	if resp := h.post(batch(body...)); resp.code != 200 || strings.TrimSpace(resp.body) != `{"accepted":3}` {
		t.Fatalf("got %d %s, want all 3 accepted", resp.code, resp.body)
	}
	if n := len(dlq.all()); n != 0 {
		t.Fatalf("%d dead letters, want none", n)
	}
	unquote := func(s string) string {
		var out string
		if err := json.Unmarshal([]byte(`"`+s+`"`), &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	decode := func(hd http.Header, name string) string {
		v := hd.Get(name)
		for _, c := range []byte(v) {
			if c <= ' ' || c > '~' || c == '"' {
				t.Errorf("header %s = %q holds a byte the encoding should have escaped", name, v)
			}
		}
		d, err := url.PathUnescape(v)
		if err != nil {
			t.Errorf("header %s = %q: %v", name, v, err)
		}
		return d
	}
	byID := func(s *sink) map[string]http.Header {
		out := map[string]http.Header{}
		for _, r := range s.accepted() {
			out[decode(r.header, "Idempotency-Key")] = r.header
		}
		return out
	}
	ceGot, plainGot := byID(ceSink), byID(plainSink)
	for _, e := range events {
		id, typ, user := unquote(e.id), unquote(e.typ), unquote(e.user)
		hd := ceGot[id]
		if hd == nil || plainGot[id] == nil {
			t.Errorf("event %q did not reach both targets under its Idempotency-Key", id)
			continue
		}
		if got := decode(hd, "ce-id"); got != id {
			t.Errorf("ce-id decodes to %q, want %q", got, id)
		}
		if got := decode(hd, "ce-type"); got != "com.segment."+typ {
			t.Errorf("ce-type decodes to %q, want %q", got, "com.segment."+typ)
		}
		if got := decode(hd, "ce-subject"); got != user {
			t.Errorf("ce-subject decodes to %q, want %q", got, user)
		}
	}
}

func TestDerivedMessageIDAcrossRetries(t *testing.T) {
	target := newSink(t)
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	h := startHarness(t, secrets, testConfig(secrets, httpTargetTo("primary", target)))
	body := `{"type":"identify","userId":"no-message-id"}`
	for range 2 {
		if resp := h.post(body); resp.code != 200 {
			t.Fatalf("got %d", resp.code)
		}
	}
	got := target.accepted()
	if len(got) != 1 || !strings.HasPrefix(got[0].header.Get("Idempotency-Key"), "swh-") || got[0].body != body {
		t.Fatalf("target got %+v; want the event once with a derived key", got)
	}
}

// Identical events without a messageId (remapped Actions payloads in Lenient mode) are distinct
// events: each reaches the target, in one batch or in a later request; only a retry of the same
// request is deduplicated.
func TestIdenticalEventsWithoutMessageIDAreNotDeduplicated(t *testing.T) {
	target := newSink(t)
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	cfg := testConfig(secrets, httpTargetTo("primary", target))
	cfg.Validation = config.ValidationLenient
	h := startHarness(t, secrets, cfg)
	click := `{"type":"track","event":"Clicked"}`
	first := batch(click, click)
	for _, body := range []string{first, first, click, batch(click, click, click)} {
		if resp := h.post(body); resp.code != 200 {
			t.Fatalf("got %d %s", resp.code, resp.body)
		}
	}
	// 2 from the first request (its retry adds none), 1 alone, 3 in the last batch.
	keys := target.acceptedIDs()
	if len(target.accepted()) != 6 || len(keys) != 6 {
		t.Fatalf("target got %d requests under %d keys, want 6 under 6", len(target.accepted()), len(keys))
	}
	if hits := h.metric("segment_receiver_dedupe_hits_total", "target", "primary"); hits != 2 {
		t.Fatalf("%v dedupe hits, want 2 (the retry of the first request)", hits)
	}
}

// Config and secret swap mid-traffic: no request fails because of a swap, the new secret is
// accepted after the reload, a bad config keeps the old one, the dedupe memory survives.
func TestHotReloadMidTraffic(t *testing.T) {
	before, after := newSink(t), newSink(t)
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	cfg := testConfig(secrets, httpTargetTo("primary", before))
	configVol := newVolume(t, map[string]string{config.FileName: configJSON(t, cfg)})
	h := startHarnessOn(t, configVol, secrets, func(o *Options) { o.PollInterval = -1 }) // file events only

	if resp := h.post(track("m-before")); resp.code != 200 {
		t.Fatalf("got %d", resp.code)
	}

	// Traffic signed with the old secret, throughout.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent, failed atomic.Int64
	var firstFailure atomic.Value
	for worker := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body := track(fmt.Sprintf("loop-%d-%d", worker, i))
				req, _ := http.NewRequest(http.MethodPost, h.url, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set(SignatureHeader, hmacHex(testSecret, body))
				resp, err := http.DefaultClient.Do(req)
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, resp.Status)
				}
			}
		}()
	}
	eventually(t, 30*time.Second, "traffic to flow", func() bool { return sent.Load() > 20 })

	// Rotation: add a second secret, and move the target.
	const newSecret = "rotated-secret"
	secrets.Update(t, map[string]string{"hmac": testSecret, "hmac-next": newSecret})
	cfg.Authentication.SecretFiles = append(cfg.Authentication.SecretFiles, secrets.Path("hmac-next"))
	cfg.Targets = []config.Target{httpTargetTo("primary", after)}
	configVol.Update(t, map[string]string{config.FileName: configJSON(t, cfg)})
	h.secret = newSecret
	eventually(t, 10*time.Second, "the new secret to be accepted", func() bool {
		return h.post(track("m-new-secret")).code == 200
	})
	eventually(t, 30*time.Second, "traffic to reach the new target", func() bool { return len(after.accepted()) > 5 })

	// Dedupe memory belongs to the target's identity (name and destination): "primary" now
	// points elsewhere, and the new destination has never seen "m-before", so it gets it, once.
	h.secret = testSecret
	for range 2 {
		if resp := h.post(track("m-before")); resp.code != 200 {
			t.Fatalf("resend: got %d", resp.code)
		}
	}
	if got := after.acceptedIDs()["m-before"]; got != 1 {
		t.Fatalf("the moved target got m-before %d times, want 1", got)
	}

	// A bad config is refused and the running one keeps working.
	failures := h.metric("segment_receiver_config_reloads_total", "result", "failure")
	configVol.Update(t, map[string]string{config.FileName: `{"source": "x", "targets": [`})
	eventually(t, 10*time.Second, "the bad config to be counted", func() bool {
		return h.metric("segment_receiver_config_reloads_total", "result", "failure") == failures+1
	})
	sentAtBadConfig := sent.Load()
	eventually(t, 30*time.Second, "traffic after the bad config", func() bool { return sent.Load() > sentAtBadConfig+20 })
	h.secret = newSecret
	if resp := h.post(track("m-after-bad")); resp.code != 200 {
		t.Fatalf("after a bad config: got %d", resp.code)
	}
	if resp := h.get("/readyz"); resp.code != 200 {
		t.Fatalf("readyz after a bad config: %d", resp.code)
	}

	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during reloads; first: %v", failed.Load(), sent.Load(), firstFailure.Load())
	}
	if got := h.metric("segment_receiver_config_reloads_total", "result", "success"); got < 2 {
		t.Fatalf("successful reloads = %v", got)
	}
}

func TestStartsUnreadyWithoutValidConfig(t *testing.T) {
	target := newSink(t)
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	configVol := newVolume(t, map[string]string{config.FileName: `{"not": "a config"}`})
	h := startHarnessOn(t, configVol, secrets)
	if resp := h.get("/readyz"); resp.code != 503 {
		t.Fatalf("readyz: %d", resp.code)
	}
	if resp := h.get("/healthz"); resp.code != 200 {
		t.Fatalf("healthz: %d", resp.code)
	}
	if resp := h.post(track("m")); resp.code != 503 || resp.header.Get("Retry-After") == "" {
		t.Fatalf("webhook without config: %d", resp.code)
	}
	configVol.Update(t, map[string]string{config.FileName: configJSON(t, testConfig(secrets, httpTargetTo("primary", target)))})
	eventually(t, 10*time.Second, "readiness", func() bool { return h.get("/readyz").code == 200 })
	if resp := h.post(track("m")); resp.code != 200 {
		t.Fatalf("after config appeared: %d", resp.code)
	}
}

// A header the HTTP client would refuse, static or from a file, fails the reload (the running
// config keeps delivering) instead of failing every request.
func TestReloadRefusesInvalidHeaders(t *testing.T) {
	target := newSink(t)
	secrets := newVolume(t, map[string]string{"hmac": testSecret, "api-key": "key\x01123"})
	good := testConfig(secrets, httpTargetTo("primary", target))
	h := startHarness(t, secrets, good)
	for name, mutate := range map[string]func(*config.HTTPTarget){
		"static value": func(c *config.HTTPTarget) { c.Headers = map[string]string{"X-Shard": "2\n"} },
		"static name":  func(c *config.HTTPTarget) { c.Headers = map[string]string{"X Shard": "2"} },
		"file value":   func(c *config.HTTPTarget) { c.HeaderFiles = map[string]string{"X-Api-Key": secrets.Path("api-key")} },
	} {
		t.Run(name, func(t *testing.T) {
			bad := testConfig(secrets, httpTargetTo("primary", target))
			mutate(bad.Targets[0].HTTP)
			failures := h.metric("segment_receiver_config_reloads_total", "result", "failure")
			h.configVol.Update(t, map[string]string{config.FileName: configJSON(t, bad)})
			eventually(t, 10*time.Second, "the bad config to be refused", func() bool {
				return h.metric("segment_receiver_config_reloads_total", "result", "failure") == failures+1
			})
			id := "m-" + strings.ReplaceAll(name, " ", "-")
			if resp := h.post(track(id)); resp.code != 200 {
				t.Fatalf("got %d %s, want the running config to deliver", resp.code, resp.body)
			}
			if target.acceptedIDs()[id] != 1 {
				t.Fatalf("target got %v", target.acceptedIDs())
			}
			h.configVol.Update(t, map[string]string{config.FileName: configJSON(t, good)})
		})
	}
}

func TestGracefulShutdown(t *testing.T) {
	target := newSink(t)
	release := target.hold()
	defer release()
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	cfg := testConfig(secrets, httpTargetTo("primary", target))
	cfg.Delivery.Budget = config.D(4500 * time.Millisecond)
	configVol := newVolume(t, map[string]string{config.FileName: configJSON(t, cfg)})
	server, err := NewServer(configVol.Path(config.FileName), Options{
		Logger:      testLogger(t),
		Addr:        "127.0.0.1:0",
		MetricsAddr: "127.0.0.1:0",
		DrainDelay:  1500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx) }()
	base := "http://" + server.Addr()
	h := &harness{t: t, server: server, base: base, url: base + "/webhook", secret: testSecret}

	inFlight := make(chan response, 1)
	go func() { inFlight <- h.post(track("m-inflight")) }()
	waitArrival(t, target)

	cancel() // what SIGTERM does in cmd/receiver
	eventually(t, time.Second, "readyz to report draining", func() bool { return h.get("/readyz").code == 503 })
	eventually(t, 10*time.Second, "the listener to close", func() bool {
		conn, err := net.Dial("tcp", server.Addr())
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
	release() // the in-flight request completes during Shutdown
	if resp := <-inFlight; resp.code != 200 {
		t.Fatalf("in-flight request: %d %s", resp.code, resp.body)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := target.acceptedIDs()["m-inflight"]; got != 1 {
		t.Fatalf("target got the event %d times", got)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	target := newSink(t)
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	h := startHarness(t, secrets, testConfig(secrets, httpTargetTo("primary", target)))
	h.post(track("m"))
	h.do("POST", track("x"), map[string]string{SignatureHeader: "00"})
	resp := send(t, mustRequest(t, http.MethodGet, h.metricsURL))
	for _, name := range []string{
		`segment_receiver_requests_total{code="200"} 1`,
		`segment_receiver_requests_total{code="401"} 1`,
		`segment_receiver_events_total{type="track"} 1`,
		`segment_receiver_signature_failures_total 1`,
		`segment_receiver_target_deliveries_total{target="primary"} 1`,
		`segment_receiver_target_attempts_total{target="primary"} 1`,
		`segment_receiver_target_attempt_duration_seconds_count{target="primary"} 1`,
		`segment_receiver_config_reloads_total{result="success"} 1`,
		`segment_receiver_config_reloads_total{result="failure"} 0`,
		`segment_receiver_in_flight_requests 0`,
		`segment_receiver_ready 1`,
	} {
		if !strings.Contains(resp.body, name) {
			t.Errorf("metrics lack %s", name)
		}
	}
	if strings.Contains(resp.body, testSecret) || strings.Contains(resp.body, "u-1") {
		t.Error("metrics leak a secret or payload")
	}
}

func mustRequest(t testing.TB, method, target string) *http.Request {
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// Logs carry no secrets and no payloads, whatever happens to a request.
func TestLogsLeakNoSecretsOrPayloads(t *testing.T) {
	var logs syncbuf.Buffer
	target, broken := newSink(t), newSink(t)
	broken.status.Store(http.StatusInternalServerError)
	secrets := newVolume(t, map[string]string{"hmac": testSecret, "api-key": "header-secret-value"})
	withHeader := httpTargetTo("primary", target)
	withHeader.HTTP.HeaderFiles = map[string]string{"X-Api-Key": secrets.Path("api-key")}
	cfg := testConfig(secrets, withHeader, httpTargetTo("broken", broken))
	cfg.Delivery.Budget = config.D(300 * time.Millisecond)
	h := startHarness(t, secrets, cfg, func(o *Options) {
		o.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	h.post(track("m-1"))
	h.post(`{"type":"track","userId":"u-1","properties":{"card":"4111"}}`)
	h.do("POST", track("m-2"), map[string]string{SignatureHeader: hmacHex("wrong", track("m-2"))})
	h.do("POST", track("m-3"), map[string]string{"Content-Type": "text/plain"})
	eventually(t, 30*time.Second, "logs", func() bool { return strings.Contains(logs.String(), "delivery failed") })
	for _, secret := range []string{testSecret, "header-secret-value", "u-1", "Order Completed", "4111", "a@example.com", hmacHex(testSecret, track("m-1"))} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("logs contain %q", secret)
		}
	}
}

func TestOversizeHeadersRefused(t *testing.T) {
	target := newSink(t)
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	cfg := testConfig(secrets, httpTargetTo("primary", target))
	cfg.Limits.MaxHeaderBytes = 8 << 10
	h := startHarness(t, secrets, cfg)
	resp := h.do("POST", track("m"), map[string]string{SignatureHeader: hmacHex(testSecret, track("m")), "X-Padding": strings.Repeat("p", 16<<10)})
	if resp.code != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("got %d", resp.code)
	}
}

// Rotating only the Secret (same config) takes effect without a restart.
func TestSecretOnlyRotation(t *testing.T) {
	target := newSink(t)
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	h := startHarness(t, secrets, testConfig(secrets, httpTargetTo("primary", target)))
	if resp := h.post(track("m-1")); resp.code != 200 {
		t.Fatalf("got %d", resp.code)
	}
	secrets.Update(t, map[string]string{"hmac": "next-secret\n"})
	h.secret = "next-secret"
	eventually(t, 10*time.Second, "the rotated secret to be accepted", func() bool { return h.post(track("m-2")).code == 200 })
	h.secret = testSecret
	if resp := h.post(track("m-3")); resp.code != 401 {
		t.Fatalf("the replaced secret still works: %d", resp.code)
	}
}

// The accepted answer is appended by hand; it must be what encoding/json makes of acceptedBody.
func TestAcceptedBodyMatchesEncodingJSON(t *testing.T) {
	for _, a := range []acceptedBody{{}, {Accepted: 1}, {Accepted: 4000, DeadLettered: 3}, {Accepted: 12, Blocked: 2},
		{Accepted: 7, DeadLettered: 1, Blocked: 5}, {DeadLettered: 1}} {
		want, got := httptest.NewRecorder(), httptest.NewRecorder()
		writeJSON(want, http.StatusOK, a)
		a.write(got)
		if got.Code != want.Code || got.Body.String() != want.Body.String() || !reflect.DeepEqual(got.Header(), want.Header()) {
			t.Errorf("%+v: got %d %v %q, want %d %v %q", a, got.Code, got.Header(), got.Body, want.Code, want.Header(), want.Body)
		}
	}
}

// The memory budget is sized by the first config loaded, so a later reload that raises
// maxBodyBytes over it is refused: otherwise every larger body would get 429 until a restart.
func TestReloadRefusesBodiesOverTheMemoryBudget(t *testing.T) {
	target := newSink(t)
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	cfg := testConfig(secrets, httpTargetTo("primary", target))
	cfg.Limits.MaxBufferedBytes = cfg.Limits.MaxBodyBytes // 64 KiB
	configVol := newVolume(t, map[string]string{config.FileName: configJSON(t, cfg)})
	h := startHarnessOn(t, configVol, secrets)

	failures := h.metric("segment_receiver_config_reloads_total", "result", "failure")
	cfg.Limits.MaxBodyBytes, cfg.Limits.MaxBufferedBytes = 256<<10, 256<<10
	configVol.Update(t, map[string]string{config.FileName: configJSON(t, cfg)})
	eventually(t, 30*time.Second, "the reload to be refused", func() bool {
		return h.metric("segment_receiver_config_reloads_total", "result", "failure") == failures+1
	})
	if resp := h.post(paddedTrack("big", 100<<10)); resp.code != http.StatusRequestEntityTooLarge {
		t.Fatalf("a body over the running limit got %d %s, want 413", resp.code, resp.body)
	}
	if resp := h.post(track("small")); resp.code != http.StatusOK {
		t.Fatalf("the running config stopped serving: %d %s", resp.code, resp.body)
	}
}

// A body's memory is reserved as it arrives: clients that declare large bodies (signed or not,
// the signature is checked once the body is read) and send little cannot hold the budget.
func TestSlowLargeBodiesReserveWhatArrives(t *testing.T) {
	target := newSink(t)
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	cfg := testConfig(secrets, httpTargetTo("primary", target))
	cfg.Limits.MaxBodyBytes, cfg.Limits.MaxBufferedBytes = 1<<20, 1<<20
	h := startHarness(t, secrets, cfg)

	const slowClients = 8
	for range slowClients {
		conn, err := net.Dial("tcp", strings.TrimPrefix(h.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Signature: %s\r\nContent-Length: %d\r\n\r\n{",
			strings.TrimPrefix(h.url, h.base), strings.Repeat("0", 40), 1<<20)
	}
	eventually(t, 30*time.Second, "the slow clients to be reading their bodies", func() bool {
		return h.metric("segment_receiver_reading_requests") == slowClients
	})
	if resp := h.post(track("m-1")); resp.code != http.StatusOK {
		t.Fatalf("with %d slow clients each declaring the whole budget: got %d %s, want 200", slowClients, resp.code, resp.body)
	}
}

// A request alone always fits: a body of exactly maxBodyBytes, declared or chunked, is accepted
// when the budget is maxBodyBytes too (the body's buffer never passes the limit).
func TestBodyOfTheWholeBudgetFits(t *testing.T) {
	target := newSink(t)
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	cfg := testConfig(secrets, httpTargetTo("primary", target))
	cfg.Limits.MaxBufferedBytes = cfg.Limits.MaxBodyBytes
	h := startHarness(t, secrets, cfg)

	limit := int(cfg.Limits.MaxBodyBytes)
	body := paddedTrack("whole", 0)
	body = paddedTrack("whole", limit-len(body))
	if len(body) != limit {
		t.Fatalf("test body is %d bytes, want %d", len(body), limit)
	}
	for _, chunked := range []bool{false, true} {
		var reader io.Reader = strings.NewReader(body)
		if chunked {
			reader = struct{ io.Reader }{reader} // unknown length: sent chunked
		}
		req, err := http.NewRequest(http.MethodPost, h.url, reader)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(SignatureHeader, hmacHex(h.secret, body))
		if resp := send(t, req); resp.code != http.StatusOK {
			t.Fatalf("chunked=%v: a body of exactly maxBodyBytes with maxBufferedBytes equal got %d %s, want 200", chunked, resp.code, resp.body)
		}
	}
}

// The memory budget is sized by the first config that loads, not by the defaults a receiver
// starts with when its first load fails: a secret mounted late must not leave a config whose
// bodies pass the default budget refused forever.
func TestBudgetSizedByTheFirstConfigLoaded(t *testing.T) {
	target := newSink(t)
	secrets := newVolume(t, map[string]string{"other": "x"})
	cfg := testConfig(secrets, httpTargetTo("primary", target))
	cfg.Limits.MaxBodyBytes = 2 * config.DefaultMaxBufferedBytes
	h := startHarness(t, secrets, cfg)
	if resp := h.post(track("m-1")); resp.code != http.StatusServiceUnavailable {
		t.Fatalf("without the secret file: got %d %s, want 503", resp.code, resp.body)
	}

	secrets.Update(t, map[string]string{"hmac": testSecret})
	eventually(t, 10*time.Second, "readiness once the secret file appears", func() bool { return h.get("/readyz").code == 200 })
	if resp := h.post(track("m-1")); resp.code != http.StatusOK {
		t.Fatalf("after the secret file appeared: got %d %s, want 200", resp.code, resp.body)
	}
}

// A request refused 429 once its events are routed (what it would hold does not fit the budget)
// counts none of them: Segment's retry counts them when it proceeds.
func TestRequestRefusedForMemoryCountsNoEvents(t *testing.T) {
	target := newSink(t)
	release := target.hold()
	defer release()
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	cfg := testConfig(secrets, httpTargetTo("primary", target))
	cfg.Limits.MaxBufferedBytes = cfg.Limits.MaxBodyBytes
	h := startHarness(t, secrets, cfg)

	held := track("held")
	first := make(chan response, 1)
	go func() { first <- h.post(held) }()
	waitArrival(t, target)
	// The held request reserves its body and, once routed, one event to one target: the next
	// body fits the rest but what its event would hold does not.
	rest := int(cfg.Limits.MaxBufferedBytes) - len(held) - eventMemory - memoryPerDelivered
	refused := paddedTrack("refused", 0)
	refused = paddedTrack("refused", rest-1-len(refused))
	tracks := func() float64 { return h.metric("segment_receiver_events_total", "type", "track") }
	before := tracks()
	if resp := h.post(refused); resp.code != http.StatusTooManyRequests {
		t.Fatalf("got %d %s, want 429", resp.code, resp.body)
	}
	if got := tracks(); got != before {
		t.Fatalf("events_total{type=track} went from %v to %v for a request refused 429", before, got)
	}
	release()
	if resp := <-first; resp.code != http.StatusOK {
		t.Fatalf("held request: %d %s", resp.code, resp.body)
	}
	if resp := h.post(refused); resp.code != http.StatusOK {
		t.Fatalf("retry: %d %s", resp.code, resp.body)
	}
	if got := tracks(); got != before+1 {
		t.Fatalf("events_total{type=track} = %v after the retry, want %v", got, before+1)
	}
}
