package receiver

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// Event is one Segment event: its exact received bytes plus the few fields routing and delivery
// need. Raw is what format "segment" forwards (after any dropped fields are removed).
type Event struct {
	Raw         json.RawMessage
	Type        string
	MessageID   string // as received, or derived from Raw when absent (see deriveMessageID)
	UserID      string
	AnonymousID string
	Name        string    // the track event name ("event")
	Timestamp   time.Time // "timestamp", zero when absent
}

// ValidationError rejects a request. Status is 400, or 413 when the batch holds too many events.
// Index is the event's position in a batch (0 for a single event, -1 when no event is to blame).
type ValidationError struct {
	Status int
	Index  int
	Field  string
	Reason string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("event %d: %s", e.Index, e.Reason)
	}
	return fmt.Sprintf("event %d: %s: %s", e.Index, e.Field, e.Reason)
}

func invalid(index int, field, reason string) *ValidationError {
	return &ValidationError{Status: http.StatusBadRequest, Index: index, Field: field, Reason: reason}
}

// DecodeEvents parses a body holding one event object or an array of them and validates each
// in the given mode (config.ValidationStrict or config.ValidationLenient). A request is all or
// nothing: the first bad event rejects it. A batch over maxEvents is a size limit, so it is
// answered 413 (Segment does not retry it), like an oversized body.
func DecodeEvents(body []byte, mode string, maxEvents int) ([]Event, error) {
	trimmed := bytes.TrimLeft(body, jsonSpace)
	if len(trimmed) == 0 {
		return nil, invalid(-1, "", "body is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	var raws []json.RawMessage
	switch trimmed[0] {
	case '{':
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, invalid(0, "", "malformed JSON")
		}
		raws = []json.RawMessage{raw}
	case '[':
		if _, err := dec.Token(); err != nil {
			return nil, invalid(-1, "", "malformed JSON")
		}
		for dec.More() {
			if len(raws) == maxEvents {
				return nil, &ValidationError{Status: http.StatusRequestEntityTooLarge, Index: len(raws),
					Reason: fmt.Sprintf("a batch may hold at most %d events", maxEvents)}
			}
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, invalid(len(raws), "", "malformed JSON")
			}
			raws = append(raws, raw)
		}
		if tok, err := dec.Token(); err != nil || tok != json.Delim(']') {
			return nil, invalid(len(raws), "", "malformed JSON")
		}
		if len(raws) == 0 {
			return nil, invalid(-1, "", "batch holds no events")
		}
	default:
		return nil, invalid(-1, "", "body must be a JSON object or an array of objects")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalid(-1, "", "unexpected data after the JSON value")
	}
	events := make([]Event, len(raws))
	for i, raw := range raws {
		if err := parseEvent(raw, mode == config.ValidationStrict, i, &events[i]); err != nil {
			return nil, err
		}
	}
	return events, nil
}

// Field kinds checked in Strict mode.
var (
	objectFields    = []string{"properties", "traits", "context", "integrations"}
	timestampFields = []string{"timestamp", "sentAt", "receivedAt", "originalTimestamp"}
	stringFields    = []string{"messageId", "userId", "anonymousId", "event", "groupId", "previousId", "name", "category"}
)

func parseEvent(raw json.RawMessage, strict bool, index int, ev *Event) error {
	if raw[0] != '{' {
		return invalid(index, "", "an event must be a JSON object")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return invalid(index, "", "malformed JSON")
	}
	ev.Raw = raw

	typ, ok := stringField(fields, "type")
	if !ok || typ == "" {
		return invalid(index, "type", "every event needs a non-empty string type")
	}
	ev.Type = typ

	if strict {
		if err := validateStrict(fields, typ, index); err != nil {
			return err
		}
	}
	// In Lenient mode fields of an unexpected kind are simply not used.
	ev.MessageID, _ = stringField(fields, "messageId")
	ev.UserID, _ = stringField(fields, "userId")
	ev.AnonymousID, _ = stringField(fields, "anonymousId")
	ev.Name, _ = stringField(fields, "event")
	if ts, ok := stringField(fields, "timestamp"); ok {
		ev.Timestamp, _ = time.Parse(time.RFC3339Nano, ts)
	}
	if ev.MessageID == "" {
		ev.MessageID = deriveMessageID(raw)
	}
	return nil
}

// validateStrict enforces the Segment Spec. Identifiers must be strings: Segment's libraries send
// strings, and a numeric userId is more likely a mapping mistake than intent. JSON null counts as
// absent, since Segment sends "userId": null for anonymous users.
func validateStrict(fields map[string]json.RawMessage, typ string, index int) error {
	if !slices.Contains(config.EventTypes, typ) {
		return invalid(index, "type", fmt.Sprintf("unknown event type %q", typ))
	}
	for _, f := range stringFields {
		if v, present := fields[f]; present && !isNull(v) && v[0] != '"' {
			return invalid(index, f, "must be a string")
		}
	}
	for _, f := range objectFields {
		if v, present := fields[f]; present && !isNull(v) && v[0] != '{' {
			return invalid(index, f, "must be an object")
		}
	}
	for _, f := range timestampFields {
		v, present := fields[f]
		if !present || isNull(v) {
			continue
		}
		s, ok := stringField(fields, f)
		if !ok {
			return invalid(index, f, "must be an ISO-8601 (RFC 3339) timestamp string")
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			return invalid(index, f, "must be an ISO-8601 (RFC 3339) timestamp such as 2024-05-01T12:00:00.000Z")
		}
	}
	userID, _ := stringField(fields, "userId")
	anonymousID, _ := stringField(fields, "anonymousId")
	need := func(field, reason string) error {
		if v, _ := stringField(fields, field); v == "" {
			return invalid(index, field, reason)
		}
		return nil
	}
	switch typ {
	case "track":
		if err := need("event", "track events need a non-empty event name"); err != nil {
			return err
		}
	case "group":
		if err := need("groupId", "group events need a non-empty groupId"); err != nil {
			return err
		}
	case "alias":
		if err := need("previousId", "alias events need a non-empty previousId"); err != nil {
			return err
		}
		if err := need("userId", "alias events need a non-empty userId"); err != nil {
			return err
		}
	case "delete":
		if err := need("userId", "delete events need a non-empty userId"); err != nil {
			return err
		}
	}
	if userID == "" && anonymousID == "" {
		return invalid(index, "userId", "every event needs a non-empty userId or anonymousId")
	}
	return nil
}

func isNull(v json.RawMessage) bool { return string(v) == "null" }

// stringField returns a field's value when it is a JSON string.
func stringField(fields map[string]json.RawMessage, name string) (string, bool) {
	v, ok := fields[name]
	if !ok || len(v) < 2 || v[0] != '"' {
		return "", false
	}
	// The object was already validated, so a string without escapes needs no decoding.
	if inner := v[1 : len(v)-1]; !bytes.ContainsRune(inner, '\\') && utf8.Valid(inner) {
		return string(inner), true
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}

// deriveMessageID gives an event without a messageId a stable one, so that dedupe and the
// targets' idempotency keys still work: Segment retries resend the same bytes, which hash to the
// same id. The prefix marks it as ours.
func deriveMessageID(raw []byte) string {
	sum := sha256.Sum256(raw)
	return "swh-" + hex.EncodeToString(sum[:16])
}
