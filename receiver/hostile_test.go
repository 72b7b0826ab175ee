package receiver

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// hostileClients is how many slow connections the hostile-input tests open; more than the default
// maxInFlight, so that holding a slot each would refuse everyone else.
var hostileClients = config.DefaultMaxInFlight + 44

// slowBody opens a connection that sends a webhook request's headers, declaring a body of
// declared bytes, and only the first byte of that body, then waits. The signature is
// well-formed unless given.
func slowBody(t testing.TB, h *harness, declared int, signature string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if signature == "" {
		signature = strings.Repeat("0", 40)
	}
	if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Signature: %s\r\nContent-Length: %d\r\n\r\n{",
		strings.TrimPrefix(h.url, h.base), signature, declared); err != nil {
		t.Fatal(err)
	}
	return conn
}

// answered counts the slow requests the server has taken up: being read, in flight, or answered.
func (h *harness) takenUp() float64 {
	n := h.metric("segment_receiver_in_flight_requests") + h.metric("segment_receiver_reading_requests")
	for _, code := range []string{"401", "408", "429"} {
		n += h.metric("segment_receiver_requests_total", "code", code)
	}
	return n
}

// statusOf reads the status code a slow connection is answered with, or 0 when it is closed
// without one, within timeout.
func statusOf(conn net.Conn, timeout time.Duration) (int, error) {
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return 0, err
		}
		return 0, nil // closed
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Hundreds of connections that send headers and a byte of their body, and wait, hold no slot
// a signed request needs: it gets 200 and its event reaches the target, and each slow one is
// answered 401 (malformed signature), 408 or closed, long before readTimeout.
func TestSlowUnverifiedBodiesDoNotHoldSegmentOff(t *testing.T) {
	for _, signature := range []string{"00", ""} { // the reproduction's, and a well-formed wrong one
		t.Run("signature="+signature, func(t *testing.T) {
			target := newSink(t)
			secrets := newVolume(t, map[string]string{"hmac": testSecret})
			cfg := testConfig(secrets, httpTargetTo("primary", target))
			h := startHarness(t, secrets, cfg) // the default grace: the signed requests come well within it

			conns := make([]net.Conn, hostileClients)
			for i := range conns {
				conns[i] = slowBody(t, h, 1000, signature)
			}
			eventually(t, 30*time.Second, "the slow requests to be taken up", func() bool {
				return h.takenUp() >= float64(hostileClients)
			})
			for i := range 3 {
				id := fmt.Sprintf("signed-%d", i)
				if resp := h.post(track(id)); resp.code != http.StatusOK {
					t.Fatalf("signed request %d beside %d slow ones: got %d %s, want 200", i, hostileClients, resp.code, strings.TrimSpace(resp.body))
				}
				if got := target.acceptedIDs()[id]; got != 1 {
					t.Fatalf("the sink got %s %d times, want once", id, got)
				}
			}
			var wg sync.WaitGroup
			var mu sync.Mutex
			codes := map[int]int{}
			for _, conn := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					code, err := statusOf(conn, 5*time.Second)
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						codes[-1]++
					} else {
						codes[code]++
					}
				}()
			}
			wg.Wait()
			t.Logf("the slow connections' answers (0: closed): %v", codes)
			for code, n := range codes {
				if code != 0 && code != http.StatusUnauthorized && code != http.StatusRequestTimeout {
					t.Errorf("%d slow connections got %d (-1: still open after 5 s), want 401, 408 or closed; all: %v", n, code, codes)
				}
			}
		})
	}
}

// Slow large bodies hold little of maxBufferedBytes for long: with enough of them to reserve
// the whole budget as they are read, a signed request still gets 200.
func TestSlowLargeUnverifiedBodiesDoNotExhaustTheBudget(t *testing.T) {
	target := newSink(t)
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	cfg := testConfig(secrets, httpTargetTo("primary", target))
	cfg.Limits.MaxBodyBytes, cfg.Limits.MaxBufferedBytes = 256<<10, 1<<20
	h := startHarness(t, secrets, cfg)

	const large = 64 // each reserves 64 KiB as its body starts: 4 budgets' worth
	for range large {
		slowBody(t, h, int(cfg.Limits.MaxBodyBytes), "")
	}
	eventually(t, 30*time.Second, "the slow requests to be taken up", func() bool {
		return h.takenUp() >= large
	})
	for i := range 3 {
		id := fmt.Sprintf("signed-%d", i)
		if resp := h.post(track(id)); resp.code != http.StatusOK {
			t.Fatalf("signed request %d beside %d slow large bodies: got %d %s, want 200", i, large, resp.code, strings.TrimSpace(resp.body))
		}
	}
}

// A body that stops arriving is answered 408 after the grace, not held until readTimeout.
func TestStalledBodyAnswered408(t *testing.T) {
	target := newSink(t)
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	cfg := testConfig(secrets, httpTargetTo("primary", target))
	cfg.Limits.ReadTimeout = config.D(30 * time.Second)
	h := startHarness(t, secrets, cfg, func(o *Options) { o.BodyGrace = 300 * time.Millisecond })

	start := time.Now()
	conn := slowBody(t, h, 1000, "")
	code, err := statusOf(conn, 10*time.Second)
	if err != nil || code != http.StatusRequestTimeout || time.Since(start) > 5*time.Second {
		t.Fatalf("stalled body: status %d (%v) after %s, want 408 within a few seconds", code, err, time.Since(start).Round(time.Millisecond))
	}
}

// A refused or invalid event without a messageId, byte for byte the same at the same index of
// two different requests, is two events: each request's is dead-lettered (a dead letter's key
// holds the event's identity, derived from its request's body), not the first one only.
func TestIdenticalEventsOfDifferentRequestsAreEachDeadLettered(t *testing.T) {
	for _, c := range []struct{ name, event, reason string }{
		{"refused", `{"type":"track","event":"Refuse Me","userId":"u-1"}`, ReasonRefused},
		{"invalid", `{"type":"track","userId":"u-1"}`, ReasonInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			target, dlq := newSink(t), newSink(t)
			decide := func(body string) int {
				if strings.Contains(body, "Refuse Me") {
					return http.StatusUnprocessableEntity
				}
				return http.StatusOK
			}
			target.decide.Store(&decide)
			secrets := newVolume(t, map[string]string{"hmac": testSecret})
			cfg := testConfig(secrets, httpTargetTo("primary", target))
			cfg.DeadLetter = &config.Target{HTTP: &config.HTTPTarget{URL: dlq.URL + "/dlq"}}
			h := startHarness(t, secrets, cfg)

			for _, other := range []string{track("other-1"), track("other-2")} {
				resp := h.post(batch(c.event, other))
				if resp.code != http.StatusOK || !strings.Contains(resp.body, `"deadLettered":1`) {
					t.Fatalf("got %d %s, want 200 with one dead letter", resp.code, strings.TrimSpace(resp.body))
				}
			}
			letters := dlq.accepted()
			if len(letters) != 2 {
				t.Fatalf("the dead-letter target got %d envelopes, want 2 (one per request)", len(letters))
			}
			for _, l := range letters {
				if !strings.Contains(l.body, `"reason":"`+c.reason+`"`) {
					t.Errorf("envelope %s, want reason %s", l.body, c.reason)
				}
			}
			if keys := dlq.acceptedIDs(); len(keys) != 2 {
				t.Errorf("idempotency keys %v, want two distinct", keys)
			}
			// Segment's retry of the same request dead-letters nothing twice.
			if resp := h.post(batch(c.event, track("other-1"))); resp.code != http.StatusOK {
				t.Fatalf("retry: got %d %s", resp.code, resp.body)
			}
			if got := len(dlq.accepted()); got != 2 {
				t.Fatalf("after a retry the dead-letter target has %d envelopes, want still 2", got)
			}
		})
	}
}

// A topic that does not exist, a topic the credentials may not write, and credentials the
// brokers refuse are the platform's to fix (a topic to create, an ACL, a rotation): Segment must
// retry (503), and nothing may be dead-lettered and acknowledged meanwhile.
func TestKafkaTopicAndAuthTroubleIsTransient(t *testing.T) {
	open := startKafka(t)
	secured := startKafka(t, kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser(config.SASLScramSHA256, "admin", "admin-pass"),
		kfake.User(config.SASLScramSHA256, "reader", "reader-pass", kfake.ACL{
			Resource: kmsg.ACLResourceTypeTopic, Name: testTopic, Pattern: kmsg.ACLResourcePatternTypeLiteral,
			Operation: kmsg.ACLOperationDescribe, Allow: true,
		}))
	secrets := newVolume(t, map[string]string{
		"hmac": testSecret, "reader": "reader", "reader-pass": "reader-pass", "admin": "admin", "wrong": "nope",
	})
	scram := func(user, pass string) *config.KafkaSASL {
		return &config.KafkaSASL{Mechanism: config.SASLScramSHA256, UsernameFile: secrets.Path(user), PasswordFile: secrets.Path(pass)}
	}
	for _, c := range []struct {
		name   string
		target func() config.Target
	}{
		{"unknown topic", func() config.Target {
			tc := kafkaTargetTo("stream", open)
			tc.Kafka.Topic = "no-such-topic"
			return tc
		}},
		{"topic authorization", func() config.Target {
			tc := kafkaTargetTo("stream", secured)
			tc.Kafka.SASL = scram("reader", "reader-pass")
			return tc
		}},
		{"SASL authentication", func() config.Target {
			tc := kafkaTargetTo("stream", secured)
			tc.Kafka.SASL = scram("admin", "wrong")
			return tc
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dlq := newSink(t)
			cfg := testConfig(secrets, c.target())
			cfg.DeadLetter = &config.Target{HTTP: &config.HTTPTarget{URL: dlq.URL + "/dlq"}}
			cfg.Delivery.Budget = config.D(1500 * time.Millisecond)
			h := startHarness(t, secrets, cfg)
			resp := h.post(track("k-1"))
			if resp.code != http.StatusServiceUnavailable {
				t.Fatalf("got %d %s, want 503", resp.code, strings.TrimSpace(resp.body))
			}
			if got := len(dlq.all()); got != 0 {
				t.Fatalf("the dead-letter target got %d envelopes, want none", got)
			}
			if got := h.metric("segment_receiver_target_failures_total", "target", "stream", "kind", "permanent"); got != 0 {
				t.Errorf("%v permanent failures, want 0", got)
			}
		})
	}
}

// shortMetricsLimits makes the metrics server's timeouts and connection limit small for a test.
func shortMetricsLimits(t *testing.T) {
	saved := metricsLimits
	t.Cleanup(func() { metricsLimits = saved })
	metricsLimits.readHeader, metricsLimits.read = 200*time.Millisecond, 500*time.Millisecond
	metricsLimits.write, metricsLimits.idle = time.Second, 300*time.Millisecond
	metricsLimits.conns = 4
}

// closedWithin reports whether the server closes conn within d (it sends nothing more).
func closedWithin(conn net.Conn, d time.Duration) bool {
	_ = conn.SetReadDeadline(time.Now().Add(d))
	_, err := bufio.NewReader(conn).ReadByte()
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

// The metrics port is bounded as the webhook port is: a client sending headers slowly, or a
// keep-alive connection left idle, is closed by a timeout, and at most a few connections are
// served at once.
func TestMetricsServerIsBounded(t *testing.T) {
	shortMetricsLimits(t)
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	h := startHarness(t, secrets, testConfig(secrets, httpTargetTo("primary", newSink(t))))
	dial := func() net.Conn {
		conn, err := net.Dial("tcp", h.server.MetricsAddr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}

	t.Run("slow headers", func(t *testing.T) {
		conn := dial()
		fmt.Fprint(conn, "GET /metrics HTTP/1.1\r\nHost: x\r\n")
		if !closedWithin(conn, 3*time.Second) {
			t.Fatal("a connection sending its headers slowly was still open after 3 s")
		}
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		conn := dial()
		fmt.Fprint(conn, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("scrape: %v %v", resp, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := br.ReadByte(); err == nil || isTimeout(err) {
			t.Fatalf("an idle keep-alive connection was still open after 3 s (%v)", err)
		}
	})
	t.Run("connection limit", func(t *testing.T) {
		for range metricsLimits.conns {
			fmt.Fprint(dial(), "GET /metrics HTTP/1.1\r\n") // holds a slot until its header timeout
		}
		client := &http.Client{Timeout: 100 * time.Millisecond}
		if resp, err := client.Get(h.metricsURL); err == nil {
			resp.Body.Close()
			t.Fatalf("a scrape was served (%d) while %d connections held every slot", resp.StatusCode, metricsLimits.conns)
		}
		eventually(t, 10*time.Second, "a scrape once the slow connections time out", func() bool {
			resp, err := client.Get(h.metricsURL)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	})
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// A field a target drops reaches it nowhere: not in the Kafka key, not in CloudEvents
// attributes or the idempotency key, and not in the dead letter of an event it refuses.
func TestDroppedFieldsLeaveNoTrace(t *testing.T) {
	const (
		userID    = "u-secret"
		timestamp = "2026-01-02T03:04:05.678Z"
		messageID = "m-secret"
		ip        = "203.0.113.9"
	)
	event := `{"type":"identify","userId":"` + userID + `","messageId":"` + messageID + `","timestamp":"` + timestamp +
		`","traits":{},"context":{"ip":"` + ip + `"}}`
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	leaks := func(t *testing.T, where, text string) {
		t.Helper()
		for _, secret := range []string{userID, messageID, ip, timestamp, "2026-01-02T03:04:05.678"} {
			if strings.Contains(text, secret) {
				t.Errorf("%s holds the dropped %q: %s", where, secret, text)
			}
		}
	}

	t.Run("kafka key", func(t *testing.T) {
		cluster := startKafka(t)
		target := kafkaTargetTo("stream", cluster)
		target.Kafka.Key = config.KafkaKeyUserID
		target.DropFields = []string{"userId"}
		h := startHarness(t, secrets, testConfig(secrets, target))
		if resp := h.post(event); resp.code != http.StatusOK {
			t.Fatalf("got %d %s", resp.code, resp.body)
		}
		record := consume(t, 1, kgo.SeedBrokers(cluster.ListenAddrs()...))[0]
		if string(record.Key) != messageID {
			t.Fatalf("record key %q, want the messageId %q (userId is dropped, there is no anonymousId)", record.Key, messageID)
		}
	})

	t.Run("cloudevents attributes", func(t *testing.T) {
		sink := newSink(t)
		target := httpTargetTo("ce", sink)
		target.HTTP.Format = config.FormatCloudEvents
		target.DropFields = []string{"userId", "timestamp", "messageId", "context.ip"}
		h := startHarness(t, secrets, testConfig(secrets, target))
		for range 2 { // the retry is deduplicated all the same
			if resp := h.post(event); resp.code != http.StatusOK {
				t.Fatalf("got %d %s", resp.code, resp.body)
			}
		}
		got := sink.accepted()
		if len(got) != 1 {
			t.Fatalf("the target got %d requests, want 1", len(got))
		}
		leaks(t, "the request body", got[0].body)
		for name, values := range got[0].header {
			leaks(t, "header "+name, strings.Join(values, ","))
		}
		if got[0].header.Get("ce-id") == "" || got[0].header.Get("Idempotency-Key") != got[0].header.Get("ce-id") {
			t.Errorf("ce-id %q and Idempotency-Key %q: want one stable key", got[0].header.Get("ce-id"), got[0].header.Get("Idempotency-Key"))
		}
	})

	t.Run("dead letter of a refusal", func(t *testing.T) {
		refusing, dlq := newSink(t), newSink(t)
		refusing.status.Store(http.StatusUnprocessableEntity)
		target := httpTargetTo("refusing", refusing)
		target.DropFields = []string{"userId", "messageId", "context.ip"}
		cfg := testConfig(secrets, target)
		cfg.DeadLetter = &config.Target{HTTP: &config.HTTPTarget{URL: dlq.URL + "/dlq"}}
		h := startHarness(t, secrets, cfg)
		if resp := h.post(event); resp.code != http.StatusOK || !strings.Contains(resp.body, `"deadLettered":1`) {
			t.Fatalf("got %d %s, want 200 with one dead letter", resp.code, resp.body)
		}
		letters := dlq.accepted()
		if len(letters) != 1 {
			t.Fatalf("the dead-letter target got %d envelopes, want 1", len(letters))
		}
		// The timestamp is not dropped for this target: it may appear.
		for _, secret := range []string{userID, messageID, ip} {
			if strings.Contains(letters[0].body, secret) {
				t.Errorf("the dead letter holds %q, dropped by the refusing target: %s", secret, letters[0].body)
			}
		}
		for name, values := range letters[0].header {
			if v := strings.Join(values, ","); strings.Contains(v, userID) || strings.Contains(v, messageID) {
				t.Errorf("dead letter header %s: %s", name, v)
			}
		}
	})
}
