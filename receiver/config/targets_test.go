package config

import (
	"fmt"
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
	want := []string{"/s/ca", "/s/crt", "/s/key", "/s/nca", "/s/p", "/s/token", "/s/u"}
	if got := c.Files(); !slices.Equal(got, want) {
		t.Fatalf("Files() = %v, want %v (every secret file, sorted, so the reload fingerprint is stable)", got, want)
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

// Files is sorted and holds each path once, whatever the map order of headerFiles, and it
// includes the dead-letter target's files.
func TestFilesSortedAndDeduplicated(t *testing.T) {
	c, err := parseTarget(t, `{"name":"h","http":{"url":"http://sink/","headerFiles":{"A":"/s/z","B":"/s/a","C":"/s/m","D":"/s/a"}}},
		{"name":"k","kafka":{"brokers":["kafka:9092"],"topic":"t","sasl":{"mechanism":"PLAIN","usernameFile":"/s/m","passwordFile":"/s/b"}}}`)
	if err != nil {
		t.Fatal(err)
	}
	c.DeadLetter = &Target{Name: DeadLetterName, HTTP: &HTTPTarget{URL: "http://dlq/", HeaderFiles: map[string]string{"X": "/s/dlq"}}}
	want := []string{"/s/a", "/s/b", "/s/dlq", "/s/m", "/s/z"}
	for range 20 {
		if got := c.Files(); !slices.Equal(got, want) {
			t.Fatalf("Files() = %v, want %v", got, want)
		}
	}
}

func TestBatchConcurrencySignatureAndDeadLetter(t *testing.T) {
	c, err := Parse([]byte(`{"source":"ns/n","authentication":{"mode":"HMAC","secretFiles":["/s/h"]},
		"targets":[{"name":"h","http":{"url":"http://sink/","batch":{}}}],"deadLetter":{"nats":{"urls":["nats://n:4222"],"subject":"dlq"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	h := c.Targets[0].HTTP
	if h.Concurrency != DefaultHTTPConcurrency || h.Batch.MaxEvents != DefaultBatchMaxEvents || h.Batch.MaxBytes != DefaultBatchMaxBytes ||
		c.Authentication.Signature != SignatureAny || c.DeadLetter.Name != DeadLetterName ||
		c.Limits.MaxEvents != 4000 || c.Limits.MaxBodyBytes != 16<<20 {
		t.Fatalf("defaults not filled: %+v %+v %+v %+v", h, h.Batch, c.Authentication, c.Limits)
	}
	base := `{"source":"ns/n","authentication":{"mode":"None"%s},"targets":[%s]%s}`
	okTarget := `{"name":"h","http":{"url":"http://sink/"}}`
	for body, field := range map[string]string{
		fmt.Sprintf(base, "", `{"name":"h","http":{"url":"http://sink/","concurrency":5000}}`, ""):                "targets[0].http.concurrency",
		fmt.Sprintf(base, "", `{"name":"h","http":{"url":"http://sink/","batch":{"maxEvents":5000}}}`, ""):        "targets[0].http.batch.maxEvents",
		fmt.Sprintf(base, "", `{"name":"h","http":{"url":"http://sink/","batch":{"maxBytes":10}}}`, ""):           "targets[0].http.batch.maxBytes",
		fmt.Sprintf(base, "", `{"name":"h","http":{"url":"http://sink/","format":"cloudevents","batch":{}}}`, ""): "targets[0].http.batch",
		fmt.Sprintf(base, `,"signature":"FullBody"`, okTarget, ""):                                                "authentication.signature",
		fmt.Sprintf(base, "", okTarget, `,"deadLetter":{"name":"other","http":{"url":"http://dlq/"}}`):            "deadLetter.name",
		fmt.Sprintf(base, "", okTarget, `,"deadLetter":{"optional":true,"http":{"url":"http://dlq/"}}`):           "deadLetter",
		fmt.Sprintf(base, "", okTarget, `,"deadLetter":{}`):                                                       "deadLetter",
		fmt.Sprintf(base, "", okTarget, `,"delivery":{"dedupeWindow":"-1s"}`):                                     "delivery.dedupeWindow",
	} {
		_, err := Parse([]byte(body))
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: got %v, want an error naming %s", body, err, field)
		}
	}
	bad, err := Parse([]byte(`{"source":"ns/n","authentication":{"mode":"HMAC","secretFiles":["/s/h"],"signature":"Element0"},"targets":[` + okTarget + `]}`))
	if err == nil || !strings.Contains(err.Error(), "authentication.signature") {
		t.Errorf("signature Element0: got %v, %v", bad, err)
	}
}

// The dead-letter target is one of AllTargets, last, in its role: defaulted and validated by the
// same code as the routed targets, with its own field in errors.
func TestDeadLetterIsATargetInItsRole(t *testing.T) {
	c, err := Parse([]byte(`{"source":"ns/n","authentication":{"mode":"None"},
		"targets":[{"name":"a","http":{"url":"http://a/"}},{"name":"b","nats":{"urls":["nats://n:4222"],"subject":"s"}}],
		"deadLetter":{"kafka":{"brokers":["k:9092"],"topic":"dlq"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rt := range c.AllTargets() {
		got = append(got, fmt.Sprintf("%s %s %s", rt.Field, rt.Role, rt.Name))
	}
	want := []string{"targets[0] routed a", "targets[1] routed b", "deadLetter deadLetter " + DeadLetterName}
	if !slices.Equal(got, want) {
		t.Errorf("AllTargets = %q, want %q", got, want)
	}
	if k := c.DeadLetter.Kafka; k.Key != KafkaKeyMessageID || k.Compression != DefaultCompression {
		t.Errorf("dead-letter Kafka defaults not filled: %+v", k)
	}
	_, err = Parse([]byte(`{"source":"ns/n","authentication":{"mode":"None"},"targets":[{"name":"a","http":{"url":"http://a/"}}],
		"deadLetter":{"http":{"url":"ftp://dlq/"},"filter":{"eventTypes":["track"]}}}`))
	for _, field := range []string{"deadLetter.http.url", "deadLetter: optional, filter and dropFields do not apply"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("got %v, want an error naming %s", err, field)
		}
	}
}

// A static header the HTTP client would refuse would fail every request to the target: the
// config is refused instead, naming the header.
func TestHTTPHeaderNamesAndValues(t *testing.T) {
	for headers, want := range map[string]string{
		`"headers":{"X-Shard":"2\n"}`:                  `targets[0].http.headers: the value of header "X-Shard" holds a control character`,
		`"headers":{"X-Shard":"a\u0000b"}`:             `the value of header "X-Shard"`,
		`"headers":{"X-Shard":"a\u007fb"}`:             `the value of header "X-Shard"`,
		`"headers":{"X Shard":"2"}`:                    `targets[0].http.headers: "X Shard" is not a header name`,
		`"headers":{"":"2"}`:                           `targets[0].http.headers: "" is not a header name`,
		`"headers":{"X-Shard:":"2"}`:                   `"X-Shard:" is not a header name`,
		`"headerFiles":{"Bad\nName":"/s/k"}`:           `targets[0].http.headerFiles: "Bad\nName" is not a header name`,
		`"headers":{"A":"1"},"headerFiles":{"A":"/s"}`: `header "A" is also a static header`,
	} {
		_, err := parseTarget(t, `{"name":"h","http":{"url":"http://sink/",`+headers+`}}`)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error with %s", headers, err, want)
		}
	}
	ok := `{"name":"h","http":{"url":"http://sink/","headers":{"X-Team":"checkout\tb \"quoted\" é","Authorization-Extra!#$%&'*+-.^_|~":""}}}`
	if _, err := parseTarget(t, ok); err != nil {
		t.Errorf("valid headers refused: %v", err)
	}
}
