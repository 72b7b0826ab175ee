package receiver

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"strconv"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/trackingplan"
)

// Dead-letter reasons, the "reason" of an envelope and the label of the dead-letter metric.
const (
	// ReasonInvalid: the event failed validation (Segment would not retry a 400).
	ReasonInvalid = "invalid"
	// ReasonRefused: a required target refused the event for good (a 4xx, a record too large...).
	ReasonRefused = "refused"
	// ReasonTrackingPlan: the event broke the tracking plan, and onViolation is DeadLetter.
	ReasonTrackingPlan = "tracking-plan"
	// ReasonMalformed: the whole body could not be split into events (not JSON, not an object
	// or an array of objects); Segment would not retry the 400.
	ReasonMalformed = "malformed"
)

// deadLetterReasons are every reason, each a series of the dead-letter metric from the start.
var deadLetterReasons = []string{ReasonInvalid, ReasonRefused, ReasonTrackingPlan, ReasonMalformed}

// DeadLetterType is the type of a dead-letter envelope: the NATS {type} token, the Kafka
// segment-type header, and "com.segment.dead-letter" as a CloudEvents type.
const DeadLetterType = "dead-letter"

// CloudEvents extension attributes of a dead letter (ce-deadletterreason, ce-deadlettertarget).
const (
	deadLetterReasonAttribute = "deadletterreason"
	deadLetterTargetAttribute = "deadlettertarget"
)

// deadLetter is the envelope sent to the dead-letter target. Event holds the event's bytes
// exactly as received, spliced in rather than re-encoded.
type deadLetter struct {
	Reason    string `json:"reason"`
	Error     string `json:"error"`
	Field     string `json:"field,omitempty"`
	Target    string `json:"target,omitempty"`
	Index     int    `json:"index"`
	MessageID string `json:"messageId,omitempty"`
	Source    string `json:"source"`
	// Violations say where (JSON pointer) and how (schema keyword) the event broke the plan.
	Violations []trackingplan.Violation `json:"violations,omitempty"`
	// Encoding is "base64" when event is a JSON string holding the base64 of the bytes received
	// (a malformed body that is not valid JSON), absent when event holds them as they came.
	Encoding string `json:"encoding,omitempty"`

	// identity is the event's messageId, given or derived (for an invalid event, always derived
	// from the body and the index): identical bytes at the same index of two requests are two
	// events, and each needs its own dead letter.
	identity string
}

// envelope wraps raw as a dead letter. Its messageId is derived from what it holds and the
// event's identity, so Segment's retry of the same request dead-letters under the same
// idempotency key, and another request's identical event under another.
func (d deadLetter) envelope(raw []byte) Event {
	head, _ := json.Marshal(d) // a struct of strings and an int cannot fail
	body := make([]byte, 0, len(head)+len(raw)+10)
	body = append(body, head[:len(head)-1]...)
	body = append(body, `,"event":`...)
	body = append(body, raw...)
	body = append(body, '}')

	h := sha256.New()
	for _, part := range []string{d.Reason, d.Target, strconv.Itoa(d.Index), d.Source, d.identity} {
		_ = binary.Write(h, binary.BigEndian, uint64(len(part)))
		h.Write([]byte(part))
	}
	h.Write(raw)
	attrs := map[string]string{deadLetterReasonAttribute: d.Reason}
	if d.Target != "" {
		attrs[deadLetterTargetAttribute] = d.Target
	}
	return Event{
		Raw:        body,
		Index:      d.Index,
		Type:       DeadLetterType,
		MessageID:  "swh-dl-" + hex.EncodeToString(h.Sum(nil)[:16]),
		Attributes: attrs,
	}
}

// malformedLetter wraps a whole body that cannot be split into events. Its event is the body
// itself when that is valid JSON (such as an empty array), else the body in base64, so that no
// byte is lost and the envelope stays valid JSON.
func malformedLetter(source string, body []byte, verr *validationError) Event {
	d := deadLetter{Reason: ReasonMalformed, Error: verr.Reason, Index: -1, Source: source}
	if json.Valid(body) {
		return d.envelope(body)
	}
	d.Encoding = "base64"
	encoded := make([]byte, 0, base64.StdEncoding.EncodedLen(len(body))+2)
	encoded = append(encoded, '"')
	encoded = base64.StdEncoding.AppendEncode(encoded, body)
	return d.envelope(append(encoded, '"'))
}

// deadLetters wraps the invalid events and the refused ones.
func deadLetters(source string, invalid []invalidEvent, refused []refusal) []Event {
	letters := make([]Event, 0, len(invalid)+len(refused))
	for _, ie := range invalid {
		reason := ReasonInvalid
		if ie.violations != nil {
			reason = ReasonTrackingPlan
		}
		letters = append(letters, deadLetter{Reason: reason, Error: ie.err.Reason, Field: ie.err.Field,
			Index: ie.err.Index, Source: source, Violations: ie.violations, identity: ie.id}.envelope(ie.raw))
	}
	for _, rf := range refused {
		letters = append(letters, deadLetter{Reason: ReasonRefused, Error: rf.err.Error(), Target: rf.target,
			Index: rf.event.Index, MessageID: rf.event.MessageID, Source: source, identity: rf.event.MessageID}.envelope(rf.event.Raw))
	}
	return letters
}
