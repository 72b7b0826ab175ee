package receiver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// Kafka record headers set on every record.
const (
	KafkaHeaderType      = "segment-type"
	KafkaHeaderMessageID = "segment-message-id"
	KafkaHeaderContent   = "content-type"
)

// KafkaHeaderPlanViolation carries the tracking plan's violations.
const KafkaHeaderPlanViolation = "segment-tracking-plan-violation"

// kafkaAttributeHeaders carry event attributes.
var kafkaAttributeHeaders = attributeHeaders{violationAttribute: KafkaHeaderPlanViolation}

// kafkaTarget produces one record per event with a long-lived franz-go client: idempotent
// producer, acks=all. The client connects lazily, so a broker that is down when the config loads
// does not hold up the load; it fails the requests (503) until the broker is back.
type kafkaTarget struct {
	client *kgo.Client
	topic  string
	key    string
}

func newKafkaTarget(c config.KafkaTarget, env targetEnv, log *slog.Logger) (*kafkaTarget, error) {
	codec, err := kafkaCodec(c.Compression)
	if err != nil {
		return nil, err
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID("segment-webhook-receiver"),
		kgo.DefaultProduceTopic(c.Topic),
		// Idempotent writes are franz-go's default; they need acks from every in-sync replica.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(codec),
		// A request produces all its records at once and waits for them: do not linger, batch
		// what is buffered meanwhile.
		kgo.ProducerLinger(0),
		// A broker that does not answer is noticed within about the delivery budget, so the
		// client moves on (other broker, reconnect) while Segment retries.
		kgo.DialTimeout(2 * time.Second),
		kgo.ProduceRequestTimeout(config.MaxBudget),
		kgo.RequestTimeoutOverhead(2 * time.Second),
		// The topic must exist: do not ask the brokers to create it, and give up on an unknown
		// topic quickly, so the request answers 503 within its budget until someone creates it.
		kgo.UnknownTopicRetries(2),
		// Connection and authentication trouble shows in the receiver's log, not only as 503s.
		kgo.WithLogger(kafkaLogger{log}),
	}
	tc, err := env.tlsConfig(c.TLS)
	if err != nil {
		return nil, err
	}
	if tc != nil {
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if s := c.SASL; s != nil {
		mechanism, err := kafkaSASL(*s, env)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(mechanism))
	}
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	return &kafkaTarget{client: client, topic: c.Topic, key: c.Key}, nil
}

func kafkaCodec(name string) (kgo.CompressionCodec, error) {
	switch name {
	case config.CompressionNone:
		return kgo.NoCompression(), nil
	case config.CompressionGzip:
		return kgo.GzipCompression(), nil
	case config.CompressionSnappy, "":
		return kgo.SnappyCompression(), nil
	case config.CompressionLZ4:
		return kgo.Lz4Compression(), nil
	case config.CompressionZstd:
		return kgo.ZstdCompression(), nil
	default:
		return kgo.CompressionCodec{}, fmt.Errorf("unknown compression %q", name)
	}
}

func kafkaSASL(s config.KafkaSASL, env targetEnv) (sasl.Mechanism, error) {
	user, pass, err := env.credentials(s.UsernameFile, s.PasswordFile)
	if err != nil {
		return nil, err
	}
	switch s.Mechanism {
	case config.SASLPlain:
		return plain.Auth{User: user, Pass: pass}.AsMechanism(), nil
	case config.SASLScramSHA256:
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism(), nil
	case config.SASLScramSHA512:
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism(), nil
	default:
		return nil, fmt.Errorf("unknown SASL mechanism %q", s.Mechanism)
	}
}

// kafkaKey is the record key: the messageId, or for key "userId" the userId, else the
// anonymousId, else the messageId, so that every record has a key and a user's events share a
// partition.
func kafkaKey(mode string, ev Event) string {
	if mode == config.KafkaKeyUserID {
		switch {
		case ev.UserID != "":
			return ev.UserID
		case ev.AnonymousID != "":
			return ev.AnonymousID
		}
	}
	return ev.MessageID
}

// Deliver produces every record at once, asynchronously, and then waits once for the brokers'
// acknowledgements, or for ctx. The wait is bounded by ctx even when requests are in flight: an
// idempotent producer cannot fail a record it has sent before the broker answers, so waiting for
// every callback could outlive the delivery budget. A record still in flight when ctx ends may be
// written later; Segment's retry then produces it again under the same key and
// segment-message-id header, which consumers can dedupe on.
func (t *kafkaTarget) Deliver(ctx context.Context, events []Event) []error {
	var mu sync.Mutex
	outcomes := make([]error, len(events))
	acked := make([]bool, len(events))
	remaining := len(events)
	allAcked := make(chan struct{})
	for i, ev := range events {
		record := &kgo.Record{
			Topic: t.topic,
			Key:   []byte(kafkaKey(t.key, ev)),
			Value: ev.Raw,
			Headers: []kgo.RecordHeader{
				{Key: KafkaHeaderType, Value: []byte(ev.Type)},
				{Key: KafkaHeaderMessageID, Value: []byte(ev.MessageID)},
				{Key: KafkaHeaderContent, Value: []byte("application/json")},
			},
		}
		for header, value := range kafkaAttributeHeaders.of(ev.Attributes) {
			record.Headers = append(record.Headers, kgo.RecordHeader{Key: header, Value: []byte(value)})
		}
		t.client.Produce(ctx, record, func(_ *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			outcomes[i], acked[i] = classifyKafkaError(err), true
			if remaining--; remaining == 0 {
				close(allAcked)
			}
		})
	}
	select {
	case <-allAcked:
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	result := slices.Clone(outcomes)
	for i := range result {
		if !acked[i] {
			result[i] = fmt.Errorf("kafka did not acknowledge in time: %w", context.Cause(ctx))
		}
	}
	return result
}

// permanentKafkaErrors are the failures that are about the record itself: no retry of it can
// succeed, so it is refused (dead-lettered when there is a dead-letter target). Trouble with the
// topic, the credentials, the ACLs or the client's settings is not: someone fixes it (creates the
// topic, rotates the secret, grants the ACL) while Segment retries the 503 for four hours, and
// dead-lettering every event meanwhile would acknowledge what never reached the topic.
var permanentKafkaErrors = []error{
	kerr.MessageTooLarge,
	kerr.RecordListTooLarge,
	kerr.InvalidRecord,
	kerr.CorruptMessage,
}

// classifyKafkaError marks the errors about the record as permanent; everything else (broker
// down, leader moving, timeouts, unknown topic, authentication and authorization) is transient.
func classifyKafkaError(err error) error {
	if err == nil {
		return nil
	}
	for _, p := range permanentKafkaErrors {
		if errors.Is(err, p) {
			return Permanent(err)
		}
	}
	return err
}

// Close fails any record still buffered (their requests have already been answered) and closes
// the connections.
func (t *kafkaTarget) Close() error {
	t.client.Close()
	return nil
}

// kafkaLogger passes franz-go's warnings and errors (broker unreachable, SASL refused...) to the
// receiver's log.
type kafkaLogger struct{ log *slog.Logger }

func (kafkaLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (l kafkaLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	slogLevel := slog.LevelWarn
	if level == kgo.LogLevelError {
		slogLevel = slog.LevelError
	}
	l.log.Log(context.Background(), slogLevel, "kafka client: "+msg, keyvals...)
}
