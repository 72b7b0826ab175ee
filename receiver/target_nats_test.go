package receiver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

const testStream = "SEGMENT"

// startNATS runs a real nats-server with JetStream in the test process. port -1 picks a free one;
// the same port and storeDir restart the same server with its streams.
func startNATS(t testing.TB, port int, storeDir string, tune ...func(*server.Options)) *server.Server {
	t.Helper()
	opts := &server.Options{
		ServerName: "swh-test", Host: "127.0.0.1", Port: port,
		JetStream: true, StoreDir: storeDir,
		NoLog: true, NoSigs: true,
	}
	for _, f := range tune {
		f(opts)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

func natsURL(s *server.Server) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", s.Addr().(*net.TCPAddr).Port)
}

// natsClient connects the test itself, to create the stream and read what reached it.
func natsClient(t testing.TB, addr string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func createStream(t testing.TB, js jetstream.JetStream) jetstream.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: testStream, Subjects: []string{"segment.>"}, Storage: jetstream.FileStorage,
		Duplicates: 10 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

// streamMessages reads every message of the stream, in order.
func streamMessages(t testing.TB, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, testStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		msg, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, msg)
	}
	return msgs
}

// msgIDCounts counts the stream's messages per Nats-Msg-Id.
func msgIDCounts(t testing.TB, js jetstream.JetStream) map[string]int {
	counts := map[string]int{}
	for _, m := range streamMessages(t, js) {
		counts[m.Header.Get(jetstream.MsgIDHeader)]++
	}
	return counts
}

func natsTargetTo(name, addr string) config.Target {
	return config.Target{Name: name, NATS: &config.NATSTarget{URLs: []string{addr}, Subject: "segment.{type}", Stream: testStream}}
}

func TestNATSTargetPublishesToJetStream(t *testing.T) {
	srv := startNATS(t, -1, t.TempDir())
	js := natsClient(t, natsURL(srv))
	createStream(t, js)
	secretVol := newVolume(t, map[string]string{"hmac": testSecret})
	target := natsTargetTo("stream", natsURL(srv))
	target.DropFields = []string{"context.ip"}
	h := startHarness(t, secretVol, testConfig(secretVol, target))

	if r := h.post(batch(track("m-1"), identify("m-2"))); r.code != 200 {
		t.Fatalf("got %d %s", r.code, r.body)
	}
	msgs := streamMessages(t, js)
	if len(msgs) != 2 {
		t.Fatalf("stream holds %d messages, want 2", len(msgs))
	}
	bySubject := map[string]*jetstream.RawStreamMsg{}
	for _, m := range msgs {
		bySubject[m.Subject] = m
	}
	tr, id := bySubject["segment.track"], bySubject["segment.identify"]
	if tr == nil || id == nil {
		t.Fatalf("subjects %v, want segment.track and segment.identify", bySubject)
	}
	if string(tr.Data) != track("m-1") {
		t.Errorf("track data %s, want the event as received", tr.Data)
	}
	for m, want := range map[*jetstream.RawStreamMsg][2]string{tr: {"m-1", "track"}, id: {"m-2", "identify"}} {
		if got := m.Header.Get(jetstream.MsgIDHeader); got != want[0] {
			t.Errorf("%s: Nats-Msg-Id %q, want %q", m.Subject, got, want[0])
		}
		if got := m.Header.Get(NATSHeaderType); got != want[1] {
			t.Errorf("%s: %s %q, want %q", m.Subject, NATSHeaderType, got, want[1])
		}
		if got := m.Header.Get(NATSHeaderMessageID); got != want[0] {
			t.Errorf("%s: %s %q", m.Subject, NATSHeaderMessageID, got)
		}
	}
	if strings.Contains(string(id.Data), "203.0.113.9") || !strings.Contains(string(id.Data), `"locale":"en-US"`) {
		t.Errorf("dropFields not applied: %s", id.Data)
	}
	if got := h.metric("segment_receiver_target_deliveries_total", "target", "stream"); got != 2 {
		t.Errorf("deliveries metric %v, want 2 (the delivery wrapper counts every kind)", got)
	}
}

// lenientStream starts a JetStream server with the SEGMENT stream and a Lenient receiver config
// publishing to it.
func lenientStream(t *testing.T) (jetstream.JetStream, *volume, *config.Config) {
	srv := startNATS(t, -1, t.TempDir())
	js := natsClient(t, natsURL(srv))
	createStream(t, js)
	secretVol := newVolume(t, map[string]string{"hmac": testSecret})
	cfg := testConfig(secretVol, natsTargetTo("stream", natsURL(srv)))
	cfg.Validation = config.ValidationLenient
	return js, secretVol, cfg
}

// The NATS client turns line breaks in header values into spaces and trims them, so messageIds
// "n-1" and "n-1\n" would share a Nats-Msg-Id and JetStream would drop one as a duplicate:
// percent-encoded, distinct events stay distinct and their headers decode to the event's data.
func TestNATSHeadersKeepEventDataApart(t *testing.T) {
	js, secretVol, cfg := lenientStream(t)
	h := startHarness(t, secretVol, cfg)

	body := batch(`{"type":"track","messageId":"n-1"}`, `{"type":"track","messageId":"n-1\n"}`,
		`{"type":"odd\r\ntype","messageId":" n-1"}`)
	if r := h.post(body); r.code != 200 {
		t.Fatalf("got %d %s", r.code, r.body)
	}
	got := map[string]string{} // decoded Nats-Msg-Id -> decoded Segment-Type
	for _, m := range streamMessages(t, js) {
		id, err := url.PathUnescape(m.Header.Get(jetstream.MsgIDHeader))
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(NATSHeaderMessageID) != m.Header.Get(jetstream.MsgIDHeader) {
			t.Errorf("%s %q, want the Nats-Msg-Id %q", NATSHeaderMessageID, m.Header.Get(NATSHeaderMessageID), m.Header.Get(jetstream.MsgIDHeader))
		}
		if got[id], err = url.PathUnescape(m.Header.Get(NATSHeaderType)); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{"n-1": "track", "n-1\n": "track", " n-1": "odd\r\ntype"}
	if !maps.Equal(got, want) {
		t.Fatalf("stream holds (messageId: type) %q, want %q", got, want)
	}
}

// Identical events without a messageId get distinct Nats-Msg-Ids, so JetStream keeps each.
func TestNATSKeepsIdenticalEventsWithoutMessageID(t *testing.T) {
	js, secretVol, cfg := lenientStream(t)
	click := `{"type":"track","event":"Clicked"}`
	if r := startHarness(t, secretVol, cfg).post(batch(click, click)); r.code != 200 {
		t.Fatalf("got %d %s", r.code, r.body)
	}
	// Another replica: a retry of that request is dropped by JetStream, a new request is not.
	other := startHarness(t, secretVol, cfg)
	for _, body := range []string{batch(click, click), click} {
		if r := other.post(body); r.code != 200 {
			t.Fatalf("got %d %s", r.code, r.body)
		}
	}
	if counts := msgIDCounts(t, js); len(counts) != 3 || slices.ContainsFunc(slices.Collect(maps.Values(counts)), func(n int) bool { return n != 1 }) {
		t.Fatalf("stream messages per Nats-Msg-Id: %v, want 3 messages under 3 ids", counts)
	}
}

// A Segment retry reaching a receiver that does not remember the event (a fresh pipeline: another
// replica or a restart) is dropped by JetStream itself, thanks to Nats-Msg-Id.
func TestNATSJetStreamDedupesSegmentRetries(t *testing.T) {
	srv := startNATS(t, -1, t.TempDir())
	js := natsClient(t, natsURL(srv))
	createStream(t, js)
	secretVol := newVolume(t, map[string]string{"hmac": testSecret})
	cfg := testConfig(secretVol, natsTargetTo("stream", natsURL(srv)))
	body := batch(track("dup-1"), identify("dup-2"), track("dup-3"))

	first := startHarness(t, secretVol, cfg)
	if r := first.post(body); r.code != 200 {
		t.Fatalf("got %d %s", r.code, r.body)
	}
	second := startHarness(t, secretVol, cfg)
	for range 2 {
		if r := second.post(body); r.code != 200 {
			t.Fatalf("retry: got %d %s", r.code, r.body)
		}
	}
	if hits := second.metric("segment_receiver_dedupe_hits_total", "target", "stream"); hits != 3 {
		t.Fatalf("second receiver: %v dedupe hits, want 3 (only its own repeat)", hits)
	}
	if got := second.metric("segment_receiver_target_deliveries_total", "target", "stream"); got != 3 {
		t.Fatalf("second receiver published %v events, want 3: the receiver memory must not be what dedupes", got)
	}
	counts := msgIDCounts(t, js)
	if len(counts) != 3 || counts["dup-1"] != 1 || counts["dup-2"] != 1 || counts["dup-3"] != 1 {
		t.Fatalf("stream messages per Nats-Msg-Id: %v, want each of 3 exactly once", counts)
	}
}

// The server goes away mid-traffic: requests turn 503 within the budget, never hang and never
// 2xx; after a restart on the same port and store they turn 200 again. Every event answered 200
// is in the stream, and the 503 ones, re-sent as Segment would, end up there exactly once.
func TestNATSServerRestartLosesNothing(t *testing.T) {
	store := t.TempDir()
	srv := startNATS(t, -1, store)
	addr := natsURL(srv)
	port := srv.Addr().(*net.TCPAddr).Port
	createStream(t, natsClient(t, addr))

	secretVol := newVolume(t, map[string]string{"hmac": testSecret})
	cfg := testConfig(secretVol, natsTargetTo("stream", addr))
	const budget = time.Second
	cfg.Delivery.Budget = config.D(budget)
	h := startHarness(t, secretVol, cfg)

	var (
		mu          sync.Mutex
		status      = map[string]int{} // last answer per messageId
		restarted   atomic.Bool
		okAfterBack atomic.Int32
		okBefore    atomic.Int32
		seen503     atomic.Int32
		seq         atomic.Int32
	)
	send := func(id string) int {
		start := time.Now()
		r := h.post(track(id))
		if took := time.Since(start); took > budget+time.Second {
			t.Errorf("%s answered %d after %s, past the %s budget", id, r.code, took, budget)
		}
		if r.code != 200 && r.code != 503 {
			t.Errorf("%s: unexpected %d %s", id, r.code, r.body)
		}
		mu.Lock()
		status[id] = r.code
		mu.Unlock()
		return r.code
	}
	stop := make(chan struct{})
	var workers sync.WaitGroup
	for range 4 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code := send(fmt.Sprintf("ev-%04d", seq.Add(1)))
				switch {
				case code == 503:
					seen503.Add(1)
				case code == 200 && restarted.Load():
					okAfterBack.Add(1)
				case code == 200:
					okBefore.Add(1)
				}
			}
		}()
	}

	eventually(t, 10*time.Second, "200 answers before the server stops", func() bool { return okBefore.Load() >= 4 })
	srv.Shutdown()
	srv.WaitForShutdown()
	eventually(t, 10*time.Second, "503 answers while the server is down", func() bool { return seen503.Load() >= 4 })
	startNATS(t, port, store)
	restarted.Store(true)
	eventually(t, 20*time.Second, "200 answers after the restart", func() bool { return okAfterBack.Load() >= 4 })
	close(stop)
	workers.Wait()

	// Segment re-sends what was answered 503.
	mu.Lock()
	var failed []string
	for id, code := range status {
		if code != 200 {
			failed = append(failed, id)
		}
	}
	mu.Unlock()
	for _, id := range failed {
		eventually(t, 10*time.Second, "the retry of "+id+" to be accepted", func() bool { return send(id) == 200 })
	}

	counts := msgIDCounts(t, natsClient(t, addr))
	for id := range status {
		if counts[id] != 1 {
			t.Errorf("%s is in the stream %d times, want exactly once", id, counts[id])
		}
	}
	if len(counts) != len(status) {
		t.Errorf("stream holds %d distinct ids, the test sent %d", len(counts), len(status))
	}
	t.Logf("%d events, %d answered 503 at first and re-sent, %d stream messages", len(status), len(failed), len(counts))
}

// A server that is down when the config loads does not hold up the start: the receiver is ready
// at once and answers 503 until the server appears.
func TestNATSDownAtStartup(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	addr := fmt.Sprintf("nats://127.0.0.1:%d", port)

	secretVol := newVolume(t, map[string]string{"hmac": testSecret})
	cfg := testConfig(secretVol, natsTargetTo("stream", addr))
	cfg.Delivery.Budget = config.D(500 * time.Millisecond)
	start := time.Now()
	h := startHarness(t, secretVol, cfg)
	eventually(t, 2*time.Second, "readiness", func() bool { return h.get("/readyz").code == 200 })
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("start took %s", took)
	}
	start = time.Now()
	if r := h.post(track("early")); r.code != 503 {
		t.Fatalf("got %d with the server down, want 503", r.code)
	}
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Fatalf("503 after %s, past the budget", took)
	}
	if got := h.metric("segment_receiver_target_failures_total", "target", "stream", "kind", "transient"); got < 1 {
		t.Errorf("transient failures metric %v", got)
	}

	srv := startNATS(t, port, t.TempDir())
	js := natsClient(t, natsURL(srv))
	createStream(t, js)
	eventually(t, 15*time.Second, "a 200 once the server is up", func() bool { return h.post(track("early")).code == 200 })
	if counts := msgIDCounts(t, js); counts["early"] != 1 {
		t.Fatalf("stream: %v", counts)
	}
}

// A reload builds a new connection and closes the old one once no request uses it.
func TestNATSReloadClosesOldConnection(t *testing.T) {
	srv := startNATS(t, -1, t.TempDir())
	js := natsClient(t, natsURL(srv))
	createStream(t, js)
	secretVol := newVolume(t, map[string]string{"hmac": testSecret})
	cfg := testConfig(secretVol, natsTargetTo("stream", natsURL(srv)))
	h := startHarness(t, secretVol, cfg)
	if r := h.post(track("r-1")); r.code != 200 {
		t.Fatalf("got %d", r.code)
	}
	// The test's own client plus the receiver's.
	eventually(t, 30*time.Second, "two clients", func() bool { return srv.NumClients() == 2 })

	for i := range 3 {
		cfg.Targets[0].NATS.Subject = fmt.Sprintf("segment.v%d.{type}", i)
		h.configVol.Update(t, map[string]string{config.FileName: configJSON(t, cfg)})
		if err := h.server.Reload(); err != nil {
			t.Fatal(err)
		}
		if r := h.post(track(fmt.Sprintf("r-%d", i+2))); r.code != 200 {
			t.Fatalf("after reload %d: got %d", i, r.code)
		}
	}
	eventually(t, 30*time.Second, "old connections closed", func() bool { return srv.NumClients() == 2 })
	msgs := streamMessages(t, js)
	if len(msgs) != 4 || msgs[3].Subject != "segment.v2.track" {
		t.Fatalf("got %d messages, last on %q", len(msgs), msgs[len(msgs)-1].Subject)
	}
}

// Token authentication, and a subject no stream stores: JetStream has no responders, a transient
// failure (the stream may be being created), so the answer is 503 within the budget.
func TestNATSTokenAuthAndMissingStream(t *testing.T) {
	srv := startNATS(t, -1, t.TempDir(), func(o *server.Options) { o.Authorization = "s3cret-token" })
	js := natsClient(t, natsURL(srv), nats.Token("s3cret-token"))
	createStream(t, js)
	secretVol := newVolume(t, map[string]string{"hmac": testSecret, "token": "s3cret-token\n"})
	good := natsTargetTo("stream", natsURL(srv))
	good.NATS.TokenFile = secretVol.Path("token")
	h := startHarness(t, secretVol, testConfig(secretVol, good))
	if r := h.post(track("tok-1")); r.code != 200 {
		t.Fatalf("with the token: got %d", r.code)
	}

	nowhere := natsTargetTo("nowhere", natsURL(srv))
	nowhere.NATS.TokenFile = secretVol.Path("token")
	nowhere.NATS.Subject = "elsewhere.{type}"
	nowhere.NATS.Stream = ""
	cfg := testConfig(secretVol, nowhere)
	cfg.Delivery.Budget = config.D(700 * time.Millisecond)
	h2 := startHarness(t, secretVol, cfg)
	start := time.Now()
	if r := h2.post(track("tok-2")); r.code != 503 {
		t.Fatalf("no stream for the subject: got %d, want 503", r.code)
	}
	if took := time.Since(start); took > 1700*time.Millisecond {
		t.Fatalf("took %s, past the budget", took)
	}
}

// An expected stream that is not the one storing the subject is refused by JetStream (400): a
// permanent failure, not retried within the request, still 503 for Segment.
func TestNATSWrongExpectedStreamIsPermanent(t *testing.T) {
	srv := startNATS(t, -1, t.TempDir())
	createStream(t, natsClient(t, natsURL(srv)))
	secretVol := newVolume(t, map[string]string{"hmac": testSecret})
	target := natsTargetTo("stream", natsURL(srv))
	target.NATS.Stream = "OTHER"
	h := startHarness(t, secretVol, testConfig(secretVol, target))
	if r := h.post(track("w-1")); r.code != 503 {
		t.Fatalf("got %d, want 503", r.code)
	}
	if got := h.metric("segment_receiver_target_failures_total", "target", "stream", "kind", "permanent"); got != 1 {
		t.Fatalf("permanent failures %v, want 1", got)
	}
	if got := h.metric("segment_receiver_target_attempts_total", "target", "stream"); got != 1 {
		t.Fatalf("attempts %v, want 1 (permanent errors are not retried)", got)
	}
}

func TestNATSSubjectFor(t *testing.T) {
	tgt := &natsTarget{subject: "segment.{type}.v1", hasType: true}
	for typ, want := range map[string]string{
		"track": "segment.track.v1", "Order Completed": "segment.Order_Completed.v1",
		"a.b": "segment.a_b.v1", "*": "segment._.v1", ">": "segment._.v1", "é": "segment._.v1",
	} {
		if got := tgt.subjectFor(Event{Type: typ}); got != want {
			t.Errorf("%q: %q, want %q", typ, got, want)
		}
		if err := config.ValidateNATSSubject(tgt.subjectFor(Event{Type: typ})); err != nil {
			t.Errorf("%q: rendered subject invalid: %v", typ, err)
		}
	}
	fixed := &natsTarget{subject: "segment.all"}
	if got := fixed.subjectFor(Event{Type: "track"}); got != "segment.all" {
		t.Errorf("fixed subject: %q", got)
	}
}

func TestClassifyNATSError(t *testing.T) {
	for _, c := range []struct {
		err       error
		permanent bool
	}{
		{fmt.Errorf("nats: %w", &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamNotFound}), true},
		{fmt.Errorf("nats: %w", &jetstream.APIError{Code: 503, ErrorCode: 10077}), false},
		{jetstream.ErrNoStreamResponse, false},
		{nats.ErrTimeout, false},
		{context.DeadlineExceeded, false},
		{nats.ErrReconnectBufExceeded, false},
		{nats.ErrMaxPayload, true},
	} {
		if got := IsPermanent(classifyNATSError(c.err)); got != c.permanent {
			t.Errorf("%v: permanent %v, want %v", c.err, got, c.permanent)
		}
	}
}

// A 4000-event batch is published asynchronously and acknowledged by the stream each event
// exactly once.
func TestNATSLargestBatchExactlyOnce(t *testing.T) {
	srv := startNATS(t, -1, t.TempDir())
	js := natsClient(t, natsURL(srv))
	createStream(t, js)
	secretVol := newVolume(t, map[string]string{"hmac": testSecret})
	h := startHarness(t, secretVol, bigBatchConfig(secretVol, natsTargetTo("stream", natsURL(srv))))
	body, first := segmentBatch(4000)
	if r := h.do("POST", body, map[string]string{SignatureHeader: hmacHex(testSecret, first)}); r.code != 200 {
		t.Fatalf("got %d %s", r.code, r.body)
	}
	counts := msgIDCounts(t, js)
	for i := range 4000 {
		if id := fmt.Sprintf("seg-%05d", i); counts[id] != 1 {
			t.Fatalf("%s stored %d times, want 1", id, counts[id])
		}
	}
	if len(counts) != 4000 {
		t.Fatalf("stream holds %d distinct messages, want 4000", len(counts))
	}
}

// The dead-letter target may be any kind: here JetStream, with {type} = dead-letter.
func TestNATSDeadLetterTarget(t *testing.T) {
	srv := startNATS(t, -1, t.TempDir())
	js := natsClient(t, natsURL(srv))
	createStream(t, js)
	target := newSink(t)
	secretVol := newVolume(t, map[string]string{"hmac": testSecret})
	cfg := testConfig(secretVol, httpTargetTo("orders", target))
	dl := natsTargetTo("", natsURL(srv))
	cfg.DeadLetter = &config.Target{NATS: dl.NATS}
	h := startHarness(t, secretVol, cfg)
	bad := `{"type":"track","userId":"u-1","messageId":"nd-2"}`
	if r := h.post(batch(track("nd-1"), bad)); r.code != 200 {
		t.Fatalf("got %d %s", r.code, r.body)
	}
	msgs := streamMessages(t, js)
	if len(msgs) != 1 {
		t.Fatalf("stream holds %d messages, want the one dead letter", len(msgs))
	}
	m := msgs[0]
	if m.Subject != "segment.dead-letter" || m.Header.Get(NATSHeaderType) != DeadLetterType ||
		!strings.HasPrefix(m.Header.Get(jetstream.MsgIDHeader), "swh-dl-") ||
		!strings.Contains(string(m.Data), `"reason":"invalid"`) || !strings.HasSuffix(string(m.Data), `"event":`+bad+`}`) {
		t.Fatalf("dead letter %s %v %s", m.Subject, m.Header, m.Data)
	}
}
