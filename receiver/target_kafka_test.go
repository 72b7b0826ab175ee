package receiver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

const testTopic = "segment-events"

// startKafka runs franz-go's in-process Kafka-protocol cluster with the test topic.
func startKafka(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(3, testTopic)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func kafkaTargetTo(name string, c *kfake.Cluster) config.Target {
	return config.Target{Name: name, Kafka: &config.KafkaTarget{Brokers: c.ListenAddrs(), Topic: testTopic}}
}

// consume reads n records of the test topic from the start.
func consume(t testing.TB, n int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.ConsumeTopics(testTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var records []*kgo.Record
	for len(records) < n {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("got %d records, want %d", len(records), n)
		}
		fetches.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		records = append(records, fetches.Records()...)
	}
	return records
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func TestKafkaTargetProducesRecords(t *testing.T) {
	cluster := startKafka(t)
	secretVol := newVolume(t, map[string]string{"hmac": testSecret})
	target := kafkaTargetTo("stream", cluster)
	target.Kafka.Key = config.KafkaKeyUserID
	target.Kafka.Compression = config.CompressionZstd
	cfg := testConfig(secretVol, target)
	cfg.Validation = config.ValidationLenient // lets an event without userId or anonymousId through
	h := startHarness(t, secretVol, cfg)

	byUser := track("k-1")
	anonymous := `{"type":"page","anonymousId":"anon-7","messageId":"k-2","name":"Home"}`
	nobody := `{"type":"screen","messageId":"k-3","name":"Cart"}`
	if r := h.post(batch(byUser, anonymous, nobody)); r.code != 200 {
		t.Fatalf("got %d %s", r.code, r.body)
	}
	records := consume(t, 3, kgo.SeedBrokers(cluster.ListenAddrs()...))
	want := map[string]struct{ key, typ, value string }{
		"k-1": {"u-1", "track", byUser},
		"k-2": {"anon-7", "page", anonymous},
		"k-3": {"k-3", "screen", nobody},
	}
	for _, r := range records {
		id := header(r, KafkaHeaderMessageID)
		w, ok := want[id]
		if !ok {
			t.Errorf("unexpected record with %s %q", KafkaHeaderMessageID, id)
			continue
		}
		delete(want, id)
		if string(r.Key) != w.key {
			t.Errorf("%s: key %q, want %q", id, r.Key, w.key)
		}
		if got := header(r, KafkaHeaderType); got != w.typ {
			t.Errorf("%s: %s %q, want %q", id, KafkaHeaderType, got, w.typ)
		}
		if got := header(r, KafkaHeaderContent); got != "application/json" {
			t.Errorf("%s: content-type %q", id, got)
		}
		if string(r.Value) != w.value {
			t.Errorf("%s: value %s, want the event as received", id, r.Value)
		}
	}
	if len(want) != 0 {
		t.Errorf("records missing: %v", want)
	}
	if got := h.metric("segment_receiver_target_deliveries_total", "target", "stream"); got != 3 {
		t.Errorf("deliveries metric %v, want 3", got)
	}
}

// The brokers go away: requests are answered 503 within the budget, never 2xx and never later.
// A broker that is down when the config loads does not hold up the start either.
func TestKafkaBrokerDownAnswers503WithinBudget(t *testing.T) {
	cluster := startKafka(t)
	secretVol := newVolume(t, map[string]string{"hmac": testSecret})
	cfg := testConfig(secretVol, kafkaTargetTo("stream", cluster))
	const budget = 800 * time.Millisecond
	cfg.Delivery.Budget = config.D(budget)
	h := startHarness(t, secretVol, cfg)
	if r := h.post(track("up-1")); r.code != 200 {
		t.Fatalf("got %d", r.code)
	}
	cluster.Close()
	for i := range 3 {
		start := time.Now()
		r := h.post(track(fmt.Sprintf("down-%d", i)))
		took := time.Since(start)
		if r.code != 503 {
			t.Fatalf("broker down: got %d, want 503", r.code)
		}
		if took > budget+time.Second {
			t.Fatalf("503 after %s, past the %s budget", took, budget)
		}
	}
	if got := h.metric("segment_receiver_target_failures_total", "target", "stream", "kind", "transient"); got < 3 {
		t.Errorf("transient failures %v, want at least 3", got)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nobody := ln.Addr().String()
	ln.Close()
	cfg.Targets[0].Kafka.Brokers = []string{nobody}
	start := time.Now()
	h2 := startHarness(t, secretVol, cfg)
	eventually(t, 2*time.Second, "readiness", func() bool { return h2.get("/readyz").code == 200 })
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("start with no broker took %s", took)
	}
	start = time.Now()
	if r := h2.post(track("never")); r.code != 503 {
		t.Fatalf("no broker: got %d", r.code)
	}
	if took := time.Since(start); took > budget+time.Second {
		t.Fatalf("503 after %s", took)
	}
}

// A record that cannot fit a batch is permanent: one attempt, counted as permanent, 503 to
// Segment. A topic that does not exist is transient: retried within the budget, 503.
func TestKafkaPermanentFailures(t *testing.T) {
	cluster := startKafka(t)
	secretVol := newVolume(t, map[string]string{"hmac": testSecret})
	missing := kafkaTargetTo("missing", cluster)
	missing.Kafka.Topic = "no-such-topic"
	cfg := testConfig(secretVol, kafkaTargetTo("stream", cluster), missing)
	cfg.Limits.MaxBodyBytes = 4 << 20
	cfg.Delivery.Budget = config.D(4 * time.Second)
	cfg.Limits.WriteTimeout = config.D(10 * time.Second)
	h := startHarness(t, secretVol, cfg)

	huge := fmt.Sprintf(`{"type":"track","event":"Big","userId":"u-1","messageId":"big-1","properties":{"blob":%q}}`,
		strings.Repeat("x", 1100<<10))
	if r := h.post(huge); r.code != 503 {
		t.Fatalf("oversized record: got %d, want 503", r.code)
	}
	if got := h.metric("segment_receiver_target_failures_total", "target", "stream", "kind", "permanent"); got != 1 {
		t.Errorf("stream: permanent failures %v, want 1", got)
	}
	if got := h.metric("segment_receiver_target_attempts_total", "target", "stream"); got != 1 {
		t.Errorf("stream: %v attempts, want 1", got)
	}
	if got := h.metric("segment_receiver_target_failures_total", "target", "missing", "kind", "transient"); got != 1 {
		t.Errorf("missing: transient failures %v, want 1", got)
	}
}

// SASL (SCRAM-SHA-512) over TLS with the CA from a file; a wrong password is refused.
func TestKafkaSASLOverTLS(t *testing.T) {
	caPEM, serverTLS := testTLS(t)
	cluster := startKafka(t, kfake.TLS(serverTLS), kfake.EnableSASL(),
		kfake.Superuser(config.SASLScramSHA512, "swh", "pa55word"))
	secretVol := newVolume(t, map[string]string{
		"hmac": testSecret, "ca.crt": string(caPEM), "user": "swh\n", "pass": "pa55word\n", "wrong": "nope",
	})
	target := kafkaTargetTo("secure", cluster)
	target.Kafka.TLS = &config.TLS{CAFile: secretVol.Path("ca.crt")}
	target.Kafka.SASL = &config.KafkaSASL{Mechanism: config.SASLScramSHA512,
		UsernameFile: secretVol.Path("user"), PasswordFile: secretVol.Path("pass")}
	h := startHarness(t, secretVol, testConfig(secretVol, target))
	if r := h.post(track("s-1")); r.code != 200 {
		t.Fatalf("got %d %s", r.code, r.body)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	records := consume(t, 1, kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DialTLSConfig(&tls.Config{RootCAs: pool}),
		kgo.SASL(scram.Auth{User: "swh", Pass: "pa55word"}.AsSha512Mechanism()))
	if header(records[0], KafkaHeaderMessageID) != "s-1" || string(records[0].Key) != "s-1" {
		t.Fatalf("record key %q headers %v", records[0].Key, records[0].Headers)
	}

	bad := kafkaTargetTo("secure", cluster)
	bad.Kafka.TLS = target.Kafka.TLS
	bad.Kafka.SASL = &config.KafkaSASL{Mechanism: config.SASLScramSHA512,
		UsernameFile: secretVol.Path("user"), PasswordFile: secretVol.Path("wrong")}
	cfg := testConfig(secretVol, bad)
	cfg.Delivery.Budget = config.D(time.Second)
	h2 := startHarness(t, secretVol, cfg)
	if r := h2.post(track("s-2")); r.code != 503 {
		t.Fatalf("wrong password: got %d, want 503", r.code)
	}

	// Without the CA the broker's certificate is not trusted; verification cannot be skipped.
	untrusted := kafkaTargetTo("secure", cluster)
	untrusted.Kafka.TLS = &config.TLS{}
	untrusted.Kafka.SASL = target.Kafka.SASL
	cfg = testConfig(secretVol, untrusted)
	cfg.Delivery.Budget = config.D(time.Second)
	if r := startHarness(t, secretVol, cfg).post(track("s-3")); r.code != 503 {
		t.Fatalf("untrusted broker certificate: got %d, want 503", r.code)
	}
}

// A CA file that holds no certificate fails the (re)load instead of every request.
func TestKafkaBadCAFailsTheLoad(t *testing.T) {
	secretVol := newVolume(t, map[string]string{"ca": "not a certificate"})
	_, err := newKafkaTarget(config.KafkaTarget{Brokers: []string{"127.0.0.1:1"}, Topic: testTopic,
		TLS: &config.TLS{CAFile: secretVol.Path("ca")}}, targetEnv{files: map[string][]byte{secretVol.Path("ca"): []byte("not a certificate")}}, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "no PEM certificate") || strings.Contains(err.Error(), "not a certificate") {
		t.Fatalf("got %v, want an error naming the file, not its content", err)
	}
}

func TestKafkaKey(t *testing.T) {
	ev := Event{MessageID: "m", UserID: "u", AnonymousID: "a"}
	for _, c := range []struct {
		mode string
		ev   Event
		want string
	}{
		{config.KafkaKeyMessageID, ev, "m"},
		{config.KafkaKeyUserID, ev, "u"},
		{config.KafkaKeyUserID, Event{MessageID: "m", AnonymousID: "a"}, "a"},
		{config.KafkaKeyUserID, Event{MessageID: "m"}, "m"},
	} {
		if got := kafkaKey(c.mode, c.ev); got != c.want {
			t.Errorf("%s %+v: %q, want %q", c.mode, c.ev, got, c.want)
		}
	}
}

func TestClassifyKafkaError(t *testing.T) {
	for _, c := range []struct {
		err       error
		permanent bool
	}{
		{kerr.MessageTooLarge, true},
		{kerr.InvalidRecord, true},
		{kerr.CorruptMessage, true},
		{fmt.Errorf("produce: %w", kerr.TopicAuthorizationFailed), false},
		{kerr.UnknownTopicOrPartition, false},
		{kerr.SaslAuthenticationFailed, false},
		{kerr.ClusterAuthorizationFailed, false},
		{kerr.InvalidTopicException, false},
		{kerr.NotLeaderForPartition, false},
		{kerr.RequestTimedOut, false},
		{kerr.NotEnoughReplicas, false},
		{kgo.ErrRecordTimeout, false},
		{context.DeadlineExceeded, false},
		{errors.New("dial tcp: connection refused"), false},
	} {
		if got := IsPermanent(classifyKafkaError(c.err)); got != c.permanent {
			t.Errorf("%v: permanent %v, want %v", c.err, got, c.permanent)
		}
	}
	if classifyKafkaError(nil) != nil {
		t.Error("nil is not an error")
	}
}

// testTLS makes a CA and a server certificate for 127.0.0.1 signed by it.
func testTLS(t testing.TB) (caPEM []byte, server *tls.Config) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "swh test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return caPEM, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: key}}}
}

// A 4000-event batch is produced at once and lands in the topic each event exactly once; Segment's
// retry of it produces nothing again.
func TestKafkaLargestBatchExactlyOnce(t *testing.T) {
	cluster := startKafka(t)
	secretVol := newVolume(t, map[string]string{"hmac": testSecret})
	h := startHarness(t, secretVol, bigBatchConfig(secretVol, kafkaTargetTo("stream", cluster)))
	body, first := segmentBatch(4000)
	for range 2 {
		if r := h.do("POST", body, map[string]string{SignatureHeader: hmacHex(testSecret, first)}); r.code != 200 {
			t.Fatalf("got %d %s", r.code, r.body)
		}
	}
	counts := map[string]int{}
	for _, r := range consume(t, 4000, kgo.SeedBrokers(cluster.ListenAddrs()...)) {
		counts[header(r, KafkaHeaderMessageID)]++
	}
	for i := range 4000 {
		if id := fmt.Sprintf("seg-%05d", i); counts[id] != 1 {
			t.Fatalf("%s produced %d times, want 1", id, counts[id])
		}
	}
	if got := h.metric("segment_receiver_target_attempts_total", "target", "stream"); got != 1 {
		t.Fatalf("%v attempts, want one Deliver call for the whole batch", got)
	}
}
