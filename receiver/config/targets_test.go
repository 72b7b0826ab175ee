package config

import (
	"slices"
	"strings"
	"testing"
)

func parseTarget(t *testing.T, target string) (*Config, error) {
	t.Helper()
	return Parse([]byte(`{"source":"ns/n","authentication":{"mode":"None"},"targets":[` + target + `]}`))
}

func TestKafkaAndNATSTargetsDefaultAndParse(t *testing.T) {
	c, err := parseTarget(t, `{"name":"k","kafka":{"brokers":["kafka-0.kafka:9092","[::1]:9093"],"topic":"segment.events",
		"tls":{"caFile":"/s/ca"},"sasl":{"mechanism":"SCRAM-SHA-512","usernameFile":"/s/u","passwordFile":"/s/p"}}},
		{"name":"n","nats":{"urls":["nats://nats:4222","tls://nats-1:4222"],"subject":"segment.{type}","stream":"SEGMENT",
		"tokenFile":"/s/token","tls":{"caFile":"/s/nca","certFile":"/s/crt","keyFile":"/s/key"}}}`)
	if err != nil {
		t.Fatal(err)
	}
	k := c.Targets[0].Kafka
	if k.Key != KafkaKeyMessageID || k.Compression != CompressionSnappy {
		t.Fatalf("kafka defaults not filled: key %q compression %q", k.Key, k.Compression)
	}
	want := []string{"/s/ca", "/s/u", "/s/p", "/s/token", "/s/nca", "/s/crt", "/s/key"}
	if got := c.Files(); !slices.Equal(got, want) {
		t.Fatalf("Files() = %v, want %v (the reload must watch every secret file)", got, want)
	}
}

func TestKafkaAndNATSTargetValidation(t *testing.T) {
	for target, field := range map[string]string{
		`{"name":"k","kafka":{"brokers":[],"topic":"t"}}`:                                                                    "kafka.brokers",
		`{"name":"k","kafka":{"brokers":["kafka"],"topic":"t"}}`:                                                             "kafka.brokers",
		`{"name":"k","kafka":{"brokers":["kafka:0"],"topic":"t"}}`:                                                           "kafka.brokers",
		`{"name":"k","kafka":{"brokers":["kafka:9092"],"topic":"a/b"}}`:                                                      "kafka.topic",
		`{"name":"k","kafka":{"brokers":["kafka:9092"],"topic":".."}}`:                                                       "kafka.topic",
		`{"name":"k","kafka":{"brokers":["kafka:9092"],"topic":"t","key":"email"}}`:                                          "kafka.key",
		`{"name":"k","kafka":{"brokers":["kafka:9092"],"topic":"t","compression":"brotli"}}`:                                 "kafka.compression",
		`{"name":"k","kafka":{"brokers":["kafka:9092"],"topic":"t","tls":{"certFile":"/c"}}}`:                                "kafka.tls",
		`{"name":"k","kafka":{"brokers":["k:1"],"topic":"t","sasl":{"mechanism":"GSSAPI"}}}`:                                 "kafka.sasl.mechanism",
		`{"name":"k","kafka":{"brokers":["k:1"],"topic":"t","sasl":{"mechanism":"PLAIN","usernameFile":"/u"}}}`:              "kafka.sasl",
		`{"name":"n","nats":{"urls":[],"subject":"s"}}`:                                                                      "nats.urls",
		`{"name":"n","nats":{"urls":["http://nats:4222"],"subject":"s"}}`:                                                    "nats.urls",
		`{"name":"n","nats":{"urls":["nats://u:p@nats:4222"],"subject":"s"}}`:                                                "nats.urls",
		`{"name":"n","nats":{"urls":["nats://nats:4222"],"subject":"segment.*"}}`:                                            "nats.subject",
		`{"name":"n","nats":{"urls":["nats://nats:4222"],"subject":"segment.>"}}`:                                            "nats.subject",
		`{"name":"n","nats":{"urls":["nats://nats:4222"],"subject":"segment..x"}}`:                                           "nats.subject",
		`{"name":"n","nats":{"urls":["nats://nats:4222"],"subject":"segment.{event}"}}`:                                      "nats.subject",
		`{"name":"n","nats":{"urls":["nats://nats:4222"],"subject":""}}`:                                                     "nats.subject",
		`{"name":"n","nats":{"urls":["nats://nats:4222"],"subject":"s","stream":"a.b"}}`:                                     "nats.stream",
		`{"name":"n","nats":{"urls":["nats://n:1"],"subject":"s","tokenFile":"/t","usernameFile":"/u","passwordFile":"/p"}}`: "at most one",
		`{"name":"n","nats":{"urls":["nats://n:1"],"subject":"s","usernameFile":"/u"}}`:                                      "nats.usernameFile",
		`{"name":"x","kafka":{"brokers":["k:1"],"topic":"t"},"nats":{"urls":["nats://n:1"],"subject":"s"}}`:                  "exactly one target kind (http, kafka or nats)",
		`{"name":"x"}`: "exactly one target kind (http, kafka or nats)",
	} {
		_, err := parseTarget(t, target)
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: got %v, want an error naming %s", target, err, field)
		}
	}
}

func TestNATSSubjectTemplate(t *testing.T) {
	for _, ok := range []string{"segment", "segment.{type}", "{type}", "segment.{type}-v1.events", "a_b.C-d"} {
		if err := ValidateNATSSubject(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".segment", "segment.", "seg ment", "segment.{Type}", "{type", "a.*.b", "a.>", strings.Repeat("a", 256)} {
		if err := ValidateNATSSubject(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
