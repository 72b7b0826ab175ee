// Package config is the one contract between the operator and the receiver: the operator renders
// a Config as JSON into the receiver's ConfigMap, the receiver loads and validates the same struct.
//
// Secret values never appear here. Wherever a secret is needed the config names a file path; the
// operator mounts the referenced Secret keys read-only at those paths.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Defaults shared by the operator (CRD defaults) and the receiver (missing fields).
const (
	DefaultPath             = "/webhook"
	DefaultPort             = 8080
	DefaultMetricsPort      = 9090
	DefaultMaxBodyBytes     = 16 << 20 // Segment's largest batch (4000 events) of events up to 4 KiB
	DefaultMaxEvents        = MaxEventsLimit
	DefaultMaxInFlight      = 256
	DefaultMaxBufferedBytes = 64 << 20 // well inside the receiver's default 256Mi memory limit
	DefaultMaxHeaderBytes   = 64 << 10
	DefaultReadHeaderTime   = 5 * time.Second
	DefaultReadTimeout      = 10 * time.Second
	DefaultWriteTimeout     = 15 * time.Second // body read + delivery budget + response
	DefaultIdleTimeout      = 90 * time.Second
	DefaultBudget           = 3 * time.Second
	MaxBudget               = 5 * time.Second // Segment gives up after 5 s
	DefaultMaxAttempts      = 5
	DefaultInitialBackoff   = 100 * time.Millisecond
	DefaultMaxBackoff       = 1 * time.Second
	DefaultDedupeWindow     = 4*time.Hour + 15*time.Minute // Segment retries for four hours
	DefaultDedupeSize       = 100000
	DefaultHTTPMethod       = "POST"
	MaxEventsLimit          = 4000 // Segment's largest batch
	MaxTargets              = 16
	FileName                = "config.json"
	DefaultConfigDirectory  = "/etc/segment-webhook/config"
)

// Delivery defaults for HTTP targets and the dead-letter target.
const (
	// DefaultHTTPConcurrency lets a 4000-event batch reach a target 20 ms away, one request per
	// event, in about 4000/128 x 20 ms = 0.6 s.
	DefaultHTTPConcurrency = 128
	MaxHTTPConcurrency     = 1024
	DefaultBatchMaxEvents  = 500
	DefaultBatchMaxBytes   = 1 << 20
	// DeadLetterName names the dead-letter target in metrics and logs.
	DeadLetterName = "dead-letter"
)

// Authentication modes.
const (
	AuthHMAC   = "HMAC"
	AuthBearer = "Bearer"
	AuthNone   = "None"
)

// Signature modes (HMAC authentication).
const (
	// SignatureAny accepts X-Segment-Signature over the whole body, or X-Signature over the
	// whole body or, for a batch, over its first element only (Segment's Actions batches).
	SignatureAny = "Any"
	// SignatureFullBody accepts only signatures over the whole body: a batch signed over its
	// first element only is refused, since events after element 0 could be forged.
	SignatureFullBody = "FullBody"
)

// Validation modes.
const (
	ValidationStrict  = "Strict"
	ValidationLenient = "Lenient"
)

// HTTP body formats.
const (
	FormatSegment     = "segment"
	FormatCloudEvents = "cloudevents"
)

// Kafka record keys.
const (
	// KafkaKeyMessageID keys records by messageId: spread over partitions, the key is the
	// idempotency key.
	KafkaKeyMessageID = "messageId"
	// KafkaKeyUserID keys records by userId for per-user ordering; events without one fall back
	// to anonymousId, then to messageId.
	KafkaKeyUserID = "userId"
)

// Kafka batch compression codecs.
const (
	CompressionNone   = "none"
	CompressionGzip   = "gzip"
	CompressionSnappy = "snappy"
	CompressionLZ4    = "lz4"
	CompressionZstd   = "zstd"
	// DefaultCompression is franz-go's own default: cheap on CPU, supported by every broker,
	// and it shrinks JSON well.
	DefaultCompression = CompressionSnappy
)

// KafkaCompressions are the accepted compression codecs.
var KafkaCompressions = []string{CompressionNone, CompressionGzip, CompressionSnappy, CompressionLZ4, CompressionZstd}

// SASL mechanisms for Kafka.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// NATSTypePlaceholder in a NATS subject is replaced by the event type.
const NATSTypePlaceholder = "{type}"

// Tracking plan modes: what happens to unplanned track events, and to events that violate the
// plan.
const (
	UnplannedAllow          = "Allow"
	UnplannedBlock          = "Block"
	ViolationForward        = "Forward"
	ViolationOmitProperties = "OmitProperties"
	ViolationDeadLetter     = "DeadLetter"
	ViolationBlock          = "Block"
)

// EventTypes are the Segment event types the receiver knows. "delete" is Classic's user-deletion
// notification.
var EventTypes = []string{"identify", "track", "page", "screen", "group", "alias", "delete"}

// Config is the whole receiver configuration.
type Config struct {
	// Source identifies this receiver, "<namespace>/<name>" of its SegmentWebhook. It becomes the
	// CloudEvents source and a log attribute.
	Source string `json:"source"`
	// Path is the webhook path served for POST, PUT and PATCH.
	Path string `json:"path,omitempty"`
	// Port serves the webhook and the health endpoints.
	Port int `json:"port,omitempty"`
	// MetricsPort serves Prometheus metrics.
	MetricsPort    int            `json:"metricsPort,omitempty"`
	Authentication Authentication `json:"authentication"`
	// Validation is Strict (Segment Spec required fields) or Lenient (any object with a type).
	Validation string   `json:"validation,omitempty"`
	Limits     Limits   `json:"limits"`
	Delivery   Delivery `json:"delivery"`
	Targets    []Target `json:"targets"`
	// DeadLetter, when set, receives each event that fails validation and each event a required
	// target refuses for good, wrapped in an envelope; the request is then acknowledged. It is a
	// target like the others in the role RoleDeadLetter (see AllTargets): its name is
	// DeadLetterName; filter, dropFields and optional do not apply to it.
	DeadLetter *Target `json:"deadLetter,omitempty"`
	// TrackingPlan, when set, checks every event against JSON Schemas before it is routed.
	TrackingPlan *TrackingPlan `json:"trackingPlan,omitempty"`
}

// TargetRole says what a target receives.
type TargetRole string

const (
	// RoleRouted: the events its filter selects (Config.Targets).
	RoleRouted TargetRole = "routed"
	// RoleDeadLetter: the envelopes of events that could not be delivered (Config.DeadLetter).
	RoleDeadLetter TargetRole = "deadLetter"
)

// RoleTarget is a target of a config in its role.
type RoleTarget struct {
	*Target
	Role TargetRole
	// Field names the target in errors: "targets[i]" or "deadLetter".
	Field string
}

// AllTargets lists every target in its role: the routed targets in order, then the dead-letter
// target when there is one. Defaults, validation, the files to read and the receiver's clients
// all come from this list, so the dead-letter target is handled like any other.
func (c *Config) AllTargets() []RoleTarget {
	all := make([]RoleTarget, 0, len(c.Targets)+1)
	for i := range c.Targets {
		all = append(all, RoleTarget{Target: &c.Targets[i], Role: RoleRouted, Field: fmt.Sprintf("targets[%d]", i)})
	}
	if c.DeadLetter != nil {
		all = append(all, RoleTarget{Target: c.DeadLetter, Role: RoleDeadLetter, Field: "deadLetter"})
	}
	return all
}

// TrackingPlan names the plan documents (see package receiver/trackingplan for their format) and
// what to do with events that do not follow them. The files are reloaded like secret files.
type TrackingPlan struct {
	Files []string `json:"files"`
	// UnplannedEvents is Allow (the default: forward track events the plan does not name) or
	// Block (drop and count them).
	UnplannedEvents string `json:"unplannedEvents,omitempty"`
	// OnViolation is Forward (the default: forward, counted and marked with the violations),
	// OmitProperties (drop the offending properties, then forward), DeadLetter (send to the
	// dead-letter target with the violations) or Block (drop and count).
	OnViolation string `json:"onViolation,omitempty"`
}

// Authentication says how a request proves it comes from Segment.
type Authentication struct {
	// Mode is HMAC (X-Signature), Bearer (Authorization header) or None.
	Mode string `json:"mode"`
	// SecretFiles hold the shared secrets (HMAC) or tokens (Bearer). Any one of them is accepted,
	// which is how rotation works: Segment sends no key id.
	SecretFiles []string `json:"secretFiles,omitempty"`
	// Signature is Any (the default) or FullBody; it applies to mode HMAC.
	Signature string `json:"signature,omitempty"`
}

// Limits bound what one request may cost.
type Limits struct {
	MaxBodyBytes int64 `json:"maxBodyBytes,omitempty"`
	MaxEvents    int   `json:"maxEvents,omitempty"`
	// MaxInFlight authenticated requests at once, and as many bodies being read before their
	// signature is checked; more are answered 429 so Segment backs off. The webhook port keeps
	// at most 4 times as many connections open (at least 64), closing the longest idle past that.
	MaxInFlight int `json:"maxInFlight,omitempty"`
	// MaxBufferedBytes bounds the memory requests hold at once (bodies, decoded events, what
	// targets hold to deliver them, optional-target deliveries still running), so that maxInFlight
	// requests of maxBodyBytes each cannot exceed the pod's memory; over it, 429. It takes effect
	// when the receiver starts. Defaults to 64 MiB, or maxBodyBytes when that is larger.
	MaxBufferedBytes int64 `json:"maxBufferedBytes,omitempty"`
	// MaxHeaderBytes bounds the request header size.
	MaxHeaderBytes int `json:"maxHeaderBytes,omitempty"`
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout are the HTTP server timeouts.
	// They take effect when the receiver starts; a reload does not change them.
	ReadHeaderTimeout Duration `json:"readHeaderTimeout,omitempty"`
	ReadTimeout       Duration `json:"readTimeout,omitempty"`
	// WriteTimeout counts from the end of the request headers, so it must cover reading the body
	// and the delivery budget.
	WriteTimeout Duration `json:"writeTimeout,omitempty"`
	IdleTimeout  Duration `json:"idleTimeout,omitempty"`
}

// Delivery governs how events reach targets.
type Delivery struct {
	// Budget is the time a request may take, retries included. It stays under Segment's 5 s.
	Budget         Duration `json:"budget,omitempty"`
	MaxAttempts    int      `json:"maxAttempts,omitempty"`
	InitialBackoff Duration `json:"initialBackoff,omitempty"`
	MaxBackoff     Duration `json:"maxBackoff,omitempty"`
	// DedupeWindow is how long a target's accepted messageIds are remembered. Unset (or 0)
	// means DefaultDedupeWindow; the memory cannot be turned off, since without it every Segment
	// retry would re-send to the targets that already accepted.
	DedupeWindow Duration `json:"dedupeWindow,omitempty"`
	// DedupeSize bounds the remembered messageIds per target.
	DedupeSize int `json:"dedupeSize,omitempty"`
}

// Target is one downstream destination; exactly one of HTTP, Kafka or NATS is set.
type Target struct {
	Name string `json:"name"`
	// Optional targets are best effort: their failure never fails a request.
	Optional bool   `json:"optional,omitempty"`
	Filter   Filter `json:"filter,omitempty"`
	// DropFields are dotted paths (such as "context.ip") removed before sending.
	DropFields []string     `json:"dropFields,omitempty"`
	HTTP       *HTTPTarget  `json:"http,omitempty"`
	Kafka      *KafkaTarget `json:"kafka,omitempty"`
	NATS       *NATSTarget  `json:"nats,omitempty"`
}

// Filter selects the events a target receives. Empty lists select everything.
type Filter struct {
	EventTypes []string `json:"eventTypes,omitempty"`
	// TrackEvents limits track events to these event names; other types pass.
	TrackEvents []string `json:"trackEvents,omitempty"`
}

// Matches reports whether a target with this filter receives an event of this type and, for a
// track event, name. It is the receiver's routing rule; kubectl swh explains routing with it too.
func (f Filter) Matches(eventType, name string) bool {
	if len(f.EventTypes) > 0 && !slices.Contains(f.EventTypes, eventType) {
		return false
	}
	return eventType != "track" || len(f.TrackEvents) == 0 || slices.Contains(f.TrackEvents, name)
}

// HTTPTarget forwards events to an HTTP endpoint: one request per event, or JSON arrays when
// Batch is set.
type HTTPTarget struct {
	URL    string `json:"url"`
	Method string `json:"method,omitempty"`
	// Headers are sent as they are.
	Headers map[string]string `json:"headers,omitempty"`
	// HeaderFiles maps a header name to a file holding its value (a mounted Secret key).
	HeaderFiles map[string]string `json:"headerFiles,omitempty"`
	// Format is "segment" (the event as received) or "cloudevents" (binary mode).
	Format string `json:"format,omitempty"`
	// Concurrency bounds the requests in flight to this target at once, over all webhook
	// requests.
	Concurrency int `json:"concurrency,omitempty"`
	// Batch sends events as JSON arrays (Segment's own batch shape) instead of one per request.
	Batch *HTTPBatch `json:"batch,omitempty"`
}

// HTTPBatch bounds one array request. An event larger than MaxBytes goes alone.
type HTTPBatch struct {
	MaxEvents int   `json:"maxEvents,omitempty"`
	MaxBytes  int64 `json:"maxBytes,omitempty"`
}

// TLS configures TLS towards a broker. Its presence enables TLS; without CAFile the system roots
// verify the server. Certificate verification cannot be turned off.
type TLS struct {
	// CAFile holds PEM certificates that verify the server.
	CAFile string `json:"caFile,omitempty"`
	// CertFile and KeyFile hold a PEM client certificate and its key; set both or neither.
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
}

// KafkaTarget produces each event as one record with an idempotent, acks=all producer.
type KafkaTarget struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string `json:"brokers"`
	Topic   string   `json:"topic"`
	// Key is messageId (the default) or userId (falls back to anonymousId, then messageId).
	Key string `json:"key,omitempty"`
	// Compression is none, gzip, snappy (the default), lz4 or zstd.
	Compression string     `json:"compression,omitempty"`
	TLS         *TLS       `json:"tls,omitempty"`
	SASL        *KafkaSASL `json:"sasl,omitempty"`
}

// KafkaSASL authenticates to the brokers.
type KafkaSASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism    string `json:"mechanism"`
	UsernameFile string `json:"usernameFile"`
	PasswordFile string `json:"passwordFile"`
}

// NATSTarget publishes each event to JetStream with Nats-Msg-Id set to its messageId, so the
// stream's duplicate window drops Segment's retries, and waits for the stream's ack.
type NATSTarget struct {
	// URLs of the servers, nats:// or tls://.
	URLs []string `json:"urls"`
	// Subject to publish to; "{type}" is replaced by the event type, such as "segment.{type}".
	Subject string `json:"subject"`
	// Stream, when set, is the stream the subject must be stored in (the publish is refused
	// otherwise).
	Stream string `json:"stream,omitempty"`
	// At most one way to authenticate: a credentials file (JWT and NKey seed), a token, or a
	// username and password.
	CredentialsFile string `json:"credentialsFile,omitempty"`
	TokenFile       string `json:"tokenFile,omitempty"`
	UsernameFile    string `json:"usernameFile,omitempty"`
	PasswordFile    string `json:"passwordFile,omitempty"`
	TLS             *TLS   `json:"tls,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("3s") in JSON.
type Duration struct{ time.Duration }

// D is a shorthand for building a Duration.
func D(d time.Duration) Duration { return Duration{d} }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"3s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// Parse decodes JSON strictly (unknown fields are errors, so a typo is not silently ignored),
// fills defaults and validates.
func Parse(data []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("decoding receiver config: %w", err)
	}
	c.Default()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Load reads and parses a config file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data)
}

// Marshal renders the config as indented JSON, the form stored in the ConfigMap.
func (c *Config) Marshal() ([]byte, error) { return json.MarshalIndent(c, "", "  ") }

// Default fills every unset field with its default.
func (c *Config) Default() {
	setDefault(&c.Path, DefaultPath)
	setDefault(&c.Port, DefaultPort)
	setDefault(&c.MetricsPort, DefaultMetricsPort)
	setDefault(&c.Authentication.Mode, AuthHMAC)
	if c.Authentication.Mode == AuthHMAC {
		setDefault(&c.Authentication.Signature, SignatureAny)
	}
	setDefault(&c.Validation, ValidationStrict)
	setDefault(&c.Limits.MaxBodyBytes, DefaultMaxBodyBytes)
	setDefault(&c.Limits.MaxEvents, DefaultMaxEvents)
	setDefault(&c.Limits.MaxInFlight, DefaultMaxInFlight)
	setDefault(&c.Limits.MaxBufferedBytes, max(DefaultMaxBufferedBytes, c.Limits.MaxBodyBytes))
	setDefault(&c.Limits.MaxHeaderBytes, DefaultMaxHeaderBytes)
	setDefault(&c.Limits.ReadHeaderTimeout, D(DefaultReadHeaderTime))
	setDefault(&c.Limits.ReadTimeout, D(DefaultReadTimeout))
	setDefault(&c.Limits.WriteTimeout, D(DefaultWriteTimeout))
	setDefault(&c.Limits.IdleTimeout, D(DefaultIdleTimeout))
	setDefault(&c.Delivery.Budget, D(DefaultBudget))
	setDefault(&c.Delivery.MaxAttempts, DefaultMaxAttempts)
	setDefault(&c.Delivery.InitialBackoff, D(DefaultInitialBackoff))
	setDefault(&c.Delivery.MaxBackoff, D(DefaultMaxBackoff))
	setDefault(&c.Delivery.DedupeWindow, D(DefaultDedupeWindow))
	setDefault(&c.Delivery.DedupeSize, DefaultDedupeSize)
	for _, t := range c.AllTargets() {
		t.defaults()
	}
	if tp := c.TrackingPlan; tp != nil {
		setDefault(&tp.UnplannedEvents, UnplannedAllow)
		setDefault(&tp.OnViolation, ViolationForward)
	}
}

func (t RoleTarget) defaults() {
	if t.Role == RoleDeadLetter {
		setDefault(&t.Name, DeadLetterName)
	}
	if h := t.HTTP; h != nil {
		setDefault(&h.Method, DefaultHTTPMethod)
		setDefault(&h.Format, FormatSegment)
		setDefault(&h.Concurrency, DefaultHTTPConcurrency)
		if b := h.Batch; b != nil {
			setDefault(&b.MaxEvents, DefaultBatchMaxEvents)
			setDefault(&b.MaxBytes, DefaultBatchMaxBytes)
		}
	}
	if k := t.Kafka; k != nil {
		setDefault(&k.Key, KafkaKeyMessageID)
		setDefault(&k.Compression, DefaultCompression)
	}
}

func setDefault[T comparable](field *T, value T) {
	var zero T
	if *field == zero {
		*field = value
	}
}

var targetName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// Validate reports every problem at once, each naming its field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if !strings.HasPrefix(c.Path, "/") {
		bad("path", "must start with /, got %q", c.Path)
	}
	if c.Path == "/healthz" || c.Path == "/readyz" {
		bad("path", "%s is the receiver's health endpoint", c.Path)
	}
	for field, port := range map[string]int{"port": c.Port, "metricsPort": c.MetricsPort} {
		if port < 1 || port > 65535 {
			bad(field, "must be 1-65535, got %d", port)
		}
	}
	if c.Port == c.MetricsPort {
		bad("metricsPort", "must differ from port %d", c.Port)
	}
	switch c.Authentication.Mode {
	case AuthHMAC, AuthBearer:
		if len(c.Authentication.SecretFiles) == 0 {
			bad("authentication.secretFiles", "mode %s needs at least one secret file", c.Authentication.Mode)
		}
	case AuthNone:
		if len(c.Authentication.SecretFiles) > 0 {
			bad("authentication.secretFiles", "must be empty when mode is None")
		}
	default:
		bad("authentication.mode", "must be HMAC, Bearer or None, got %q", c.Authentication.Mode)
	}
	switch {
	case c.Authentication.Mode == AuthHMAC && c.Authentication.Signature != SignatureAny && c.Authentication.Signature != SignatureFullBody:
		bad("authentication.signature", "must be Any or FullBody, got %q", c.Authentication.Signature)
	case c.Authentication.Mode != AuthHMAC && c.Authentication.Signature != "":
		bad("authentication.signature", "applies to mode HMAC only")
	}
	if c.Validation != ValidationStrict && c.Validation != ValidationLenient {
		bad("validation", "must be Strict or Lenient, got %q", c.Validation)
	}
	if c.Limits.MaxBodyBytes < 1024 {
		bad("limits.maxBodyBytes", "must be at least 1024, got %d", c.Limits.MaxBodyBytes)
	}
	if c.Limits.MaxEvents < 1 || c.Limits.MaxEvents > MaxEventsLimit {
		bad("limits.maxEvents", "must be 1-%d, got %d", MaxEventsLimit, c.Limits.MaxEvents)
	}
	if c.Limits.MaxInFlight < 1 {
		bad("limits.maxInFlight", "must be at least 1, got %d", c.Limits.MaxInFlight)
	}
	if c.Limits.MaxBufferedBytes < c.Limits.MaxBodyBytes {
		bad("limits.maxBufferedBytes", "must hold at least one body of maxBodyBytes (%d), got %d", c.Limits.MaxBodyBytes, c.Limits.MaxBufferedBytes)
	}
	if c.Limits.MaxHeaderBytes < 4096 {
		bad("limits.maxHeaderBytes", "must be at least 4096, got %d", c.Limits.MaxHeaderBytes)
	}
	for field, v := range map[string]Duration{
		"limits.readHeaderTimeout": c.Limits.ReadHeaderTimeout,
		"limits.readTimeout":       c.Limits.ReadTimeout,
		"limits.idleTimeout":       c.Limits.IdleTimeout,
	} {
		if v.Duration <= 0 {
			bad(field, "must be above 0, got %s", v)
		}
	}
	if c.Limits.WriteTimeout.Duration <= c.Delivery.Budget.Duration {
		bad("limits.writeTimeout", "must be above delivery.budget (%s), got %s", c.Delivery.Budget, c.Limits.WriteTimeout)
	}
	d := c.Delivery
	if d.Budget.Duration <= 0 || d.Budget.Duration >= MaxBudget {
		bad("delivery.budget", "must be above 0 and below %s, got %s", MaxBudget, d.Budget)
	}
	if d.MaxAttempts < 1 {
		bad("delivery.maxAttempts", "must be at least 1, got %d", d.MaxAttempts)
	}
	if d.InitialBackoff.Duration <= 0 || d.MaxBackoff.Duration < d.InitialBackoff.Duration {
		bad("delivery.initialBackoff", "must be above 0 and at most maxBackoff (%s), got %s", d.MaxBackoff, d.InitialBackoff)
	}
	if d.DedupeWindow.Duration <= 0 {
		bad("delivery.dedupeWindow", "must be above 0 (unset means the default %s), got %s", DefaultDedupeWindow, d.DedupeWindow)
	}
	if d.DedupeSize < 1 {
		bad("delivery.dedupeSize", "must be at least 1, got %d", d.DedupeSize)
	}
	if len(c.Targets) < 1 || len(c.Targets) > MaxTargets {
		bad("targets", "must hold 1-%d targets, got %d", MaxTargets, len(c.Targets))
	}
	seen := map[string]bool{}
	for _, t := range c.AllTargets() {
		errs = append(errs, t.validate()...)
		// A routed target named like the dead-letter target is accepted here, so that receivers
		// configured so before keep running; the CRD refuses it for new and changed resources.
		if t.Role == RoleRouted {
			if seen[t.Name] {
				bad(t.Field+".name", "duplicate target name %q", t.Name)
			}
			seen[t.Name] = true
		}
	}
	if tp := c.TrackingPlan; tp != nil {
		if len(tp.Files) == 0 {
			bad("trackingPlan.files", "at least one plan document is needed")
		}
		if tp.UnplannedEvents != UnplannedAllow && tp.UnplannedEvents != UnplannedBlock {
			bad("trackingPlan.unplannedEvents", "must be Allow or Block, got %q", tp.UnplannedEvents)
		}
		switch tp.OnViolation {
		case ViolationForward, ViolationOmitProperties, ViolationBlock:
		case ViolationDeadLetter:
			if c.DeadLetter == nil {
				bad("trackingPlan.onViolation", "DeadLetter needs a deadLetter target")
			}
		default:
			bad("trackingPlan.onViolation", "must be Forward, OmitProperties, DeadLetter or Block, got %q", tp.OnViolation)
		}
	}
	return errors.Join(errs...)
}

func (t RoleTarget) validate() []error {
	var errs []error
	at := t.Field
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", at, field, fmt.Sprintf(format, args...)))
	}
	if !targetName.MatchString(t.Name) {
		bad("name", "must be a DNS label, got %q", t.Name)
	}
	if t.Role == RoleDeadLetter {
		if t.Name != DeadLetterName {
			bad("name", "must be %q, got %q", DeadLetterName, t.Name)
		}
		if t.Optional || len(t.DropFields) > 0 || len(t.Filter.EventTypes) > 0 || len(t.Filter.TrackEvents) > 0 {
			errs = append(errs, fmt.Errorf("%s: optional, filter and dropFields do not apply to the dead-letter target", at))
		}
	}
	for _, typ := range t.Filter.EventTypes {
		if !slices.Contains(EventTypes, typ) {
			bad("filter.eventTypes", "unknown event type %q", typ)
		}
	}
	for _, f := range t.DropFields {
		if f == "" || strings.HasPrefix(f, ".") || strings.HasSuffix(f, ".") || strings.Contains(f, "..") {
			bad("dropFields", "%q is not a dotted field path", f)
		}
	}
	kinds := 0
	if t.HTTP != nil {
		kinds++
		errs = append(errs, t.HTTP.validate(at+".http")...)
	}
	if t.Kafka != nil {
		kinds++
		errs = append(errs, t.Kafka.validate(at+".kafka")...)
	}
	if t.NATS != nil {
		kinds++
		errs = append(errs, t.NATS.validate(at+".nats")...)
	}
	if kinds != 1 {
		bad("", "exactly one target kind (http, kafka or nats) must be set, got %d", kinds)
	}
	return errs
}

func (h *HTTPTarget) validate(at string) []error {
	var errs []error
	u, err := url.Parse(h.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("%s.url: must be an absolute http(s) URL, got %q", at, h.URL))
	}
	switch h.Method {
	case "POST", "PUT", "PATCH":
	default:
		errs = append(errs, fmt.Errorf("%s.method: must be POST, PUT or PATCH, got %q", at, h.Method))
	}
	if h.Format != FormatSegment && h.Format != FormatCloudEvents {
		errs = append(errs, fmt.Errorf("%s.format: must be segment or cloudevents, got %q", at, h.Format))
	}
	// The HTTP client refuses a request whose header is not valid, and would refuse every request.
	for _, name := range slices.Sorted(maps.Keys(h.Headers)) {
		if !httpguts.ValidHeaderFieldName(name) {
			errs = append(errs, fmt.Errorf("%s.headers: %q is not a header name (%s)", at, name, headerNameChars))
		}
		if !httpguts.ValidHeaderFieldValue(h.Headers[name]) {
			errs = append(errs, fmt.Errorf("%s.headers: the value of header %q holds a control character such as a line break", at, name))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(h.HeaderFiles)) {
		if !httpguts.ValidHeaderFieldName(name) {
			errs = append(errs, fmt.Errorf("%s.headerFiles: %q is not a header name (%s)", at, name, headerNameChars))
		}
		if _, static := h.Headers[name]; static {
			errs = append(errs, fmt.Errorf("%s.headerFiles: header %q is also a static header", at, name))
		}
	}
	if h.Concurrency < 1 || h.Concurrency > MaxHTTPConcurrency {
		errs = append(errs, fmt.Errorf("%s.concurrency: must be 1-%d, got %d", at, MaxHTTPConcurrency, h.Concurrency))
	}
	if b := h.Batch; b != nil {
		if b.MaxEvents < 1 || b.MaxEvents > MaxEventsLimit {
			errs = append(errs, fmt.Errorf("%s.batch.maxEvents: must be 1-%d, got %d", at, MaxEventsLimit, b.MaxEvents))
		}
		if b.MaxBytes < 1024 {
			errs = append(errs, fmt.Errorf("%s.batch.maxBytes: must be at least 1024, got %d", at, b.MaxBytes))
		}
		if h.Format != FormatSegment {
			errs = append(errs, fmt.Errorf("%s.batch: needs format segment (a JSON array of events), got %q", at, h.Format))
		}
	}
	return errs
}

// headerNameChars says what an HTTP header name (an RFC 9110 token) is made of.
const headerNameChars = "one or more letters, digits and !#$%&'*+-.^_`|~"

var (
	// kafkaTopic is Kafka's own rule: 1-249 of these characters, and not "." or "..".
	kafkaTopic = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
	// natsSubjectToken is one token of a subject template: no wildcards or spaces.
	natsSubjectToken = regexp.MustCompile(`^([A-Za-z0-9_-]|\{type\})+$`)
	// natsStream names a JetStream stream.
	natsStream = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)
)

// MaxNATSSubject bounds a subject template.
const MaxNATSSubject = 255

func (k *KafkaTarget) validate(at string) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", at, field, fmt.Sprintf(format, args...)))
	}
	if len(k.Brokers) == 0 {
		bad("brokers", "at least one broker is needed")
	}
	for _, b := range k.Brokers {
		if err := validHostPort(b); err != nil {
			bad("brokers", "%q: %v", b, err)
		}
	}
	if !kafkaTopic.MatchString(k.Topic) || k.Topic == "." || k.Topic == ".." {
		bad("topic", "must be 1-249 characters of [a-zA-Z0-9._-] and not . or .., got %q", k.Topic)
	}
	if k.Key != KafkaKeyMessageID && k.Key != KafkaKeyUserID {
		bad("key", "must be messageId or userId, got %q", k.Key)
	}
	if !slices.Contains(KafkaCompressions, k.Compression) {
		bad("compression", "must be one of %s, got %q", strings.Join(KafkaCompressions, ", "), k.Compression)
	}
	errs = append(errs, k.TLS.validate(at+".tls")...)
	if s := k.SASL; s != nil {
		switch s.Mechanism {
		case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		default:
			bad("sasl.mechanism", "must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got %q", s.Mechanism)
		}
		if s.UsernameFile == "" || s.PasswordFile == "" {
			bad("sasl", "usernameFile and passwordFile are both required")
		}
	}
	return errs
}

func validHostPort(hostport string) error {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return errors.New("must be host:port")
	}
	if host == "" {
		return errors.New("the host is empty")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return errors.New("the port must be 1-65535")
	}
	return nil
}

func (t *TLS) validate(at string) []error {
	if t == nil {
		return nil
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return []error{fmt.Errorf("%s: certFile and keyFile must be set together", at)}
	}
	return nil
}

func (n *NATSTarget) validate(at string) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", at, field, fmt.Sprintf(format, args...)))
	}
	if len(n.URLs) == 0 {
		bad("urls", "at least one server URL is needed")
	}
	for _, raw := range n.URLs {
		u, err := url.Parse(raw)
		switch {
		case err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Hostname() == "":
			bad("urls", "must be nats:// or tls:// URLs with a host, got %q", raw)
		case u.User != nil:
			bad("urls", "must not carry credentials; use the credentials, token or username and password files")
		}
	}
	if err := ValidateNATSSubject(n.Subject); err != nil {
		bad("subject", "%v", err)
	}
	if n.Stream != "" && !natsStream.MatchString(n.Stream) {
		bad("stream", "must be 1-255 characters of [A-Za-z0-9_-], got %q", n.Stream)
	}
	methods := 0
	for _, f := range []string{n.CredentialsFile, n.TokenFile, n.UsernameFile + n.PasswordFile} {
		if f != "" {
			methods++
		}
	}
	if methods > 1 {
		bad("", "set at most one of credentialsFile, tokenFile, or usernameFile with passwordFile")
	}
	if (n.UsernameFile == "") != (n.PasswordFile == "") {
		bad("usernameFile", "usernameFile and passwordFile must be set together")
	}
	errs = append(errs, n.TLS.validate(at+".tls")...)
	return errs
}

// ValidateNATSSubject checks a subject template: dot-separated tokens of [A-Za-z0-9_-], where
// "{type}" may appear anywhere in a token. Wildcards are not publishable and are refused.
func ValidateNATSSubject(subject string) error {
	if subject == "" || len(subject) > MaxNATSSubject {
		return fmt.Errorf("must be 1-%d characters, got %d", MaxNATSSubject, len(subject))
	}
	for _, token := range strings.Split(subject, ".") {
		if !natsSubjectToken.MatchString(token) {
			return fmt.Errorf("must be dot-separated tokens of [A-Za-z0-9_-], with {type} the only placeholder, got %q", subject)
		}
	}
	return nil
}

// Files lists every file the config refers to, sorted and without repeats: the receiver reads and
// fingerprints them in this order, so unchanged files always give the same fingerprint.
func (c *Config) Files() []string {
	files := append([]string(nil), c.Authentication.SecretFiles...)
	add := func(paths ...string) {
		for _, p := range paths {
			if p != "" {
				files = append(files, p)
			}
		}
	}
	addTLS := func(t *TLS) {
		if t != nil {
			add(t.CAFile, t.CertFile, t.KeyFile)
		}
	}
	for _, t := range c.AllTargets() {
		if t.HTTP != nil {
			for _, f := range t.HTTP.HeaderFiles {
				files = append(files, f)
			}
		}
		if k := t.Kafka; k != nil {
			addTLS(k.TLS)
			if k.SASL != nil {
				add(k.SASL.UsernameFile, k.SASL.PasswordFile)
			}
		}
		if n := t.NATS; n != nil {
			add(n.CredentialsFile, n.TokenFile, n.UsernameFile, n.PasswordFile)
			addTLS(n.TLS)
		}
	}
	if c.TrackingPlan != nil {
		add(c.TrackingPlan.Files...)
	}
	slices.Sort(files)
	return slices.Compact(files)
}
