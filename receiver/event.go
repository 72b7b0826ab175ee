package receiver

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"iter"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/trackingplan"
)

// Event is one Segment event: its exact received bytes plus the few fields routing and delivery
// need. Raw is what format "segment" forwards (after any dropped fields are removed).
type Event struct {
	Raw         []byte // a slice of the request body, unless fields were dropped
	Index       int    // position in the request (0 for a single event)
	Type        string
	MessageID   string // as received, or derived when absent (see eventScanner.deriveMessageID)
	UserID      string
	AnonymousID string
	Name        string    // the track event name ("event")
	Timestamp   time.Time // "timestamp", zero when absent
	// Attributes are what the receiver says about the event beside its bytes, by CloudEvents
	// extension name: the tracking plan's violations, a dead letter's reason and target. An HTTP
	// target in format cloudevents sends each as ce-<name>; every other transport names the
	// headers that carry them in one attributeHeaders table (httpAttributeHeaders,
	// kafkaAttributeHeaders, natsAttributeHeaders). Shared by copies of the event: never modified.
	Attributes map[string]string

	// The members the tracking plan checks, as the decoder located them in the body (nil when
	// absent).
	properties, traits, context []byte
}

// attributeHeaders names the header one transport carries each event attribute in; attributes
// it does not name are not carried by that transport.
type attributeHeaders map[string]string

// of yields the header and value of each of attrs the transport carries; an empty value is no
// header.
func (h attributeHeaders) of(attrs map[string]string) iter.Seq2[string, string] {
	return func(yield func(header, value string) bool) {
		for name, value := range attrs {
			if header, ok := h[name]; ok && value != "" && !yield(header, value) {
				return
			}
		}
	}
}

// validationError refuses a request or one event of it. Status is 400, or 413 when the batch holds
// too many events. Index is the event's position in a batch (0 for a single event, -1 when no
// event is to blame).
type validationError struct {
	Status int
	Index  int
	Field  string
	Reason string
}

func (e *validationError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("event %d: %s", e.Index, e.Reason)
	}
	return fmt.Sprintf("event %d: %s: %s", e.Index, e.Field, e.Reason)
}

func invalid(index int, field, reason string) *validationError {
	return &validationError{Status: http.StatusBadRequest, Index: index, Field: field, Reason: reason}
}

// invalidEvent is an event that failed validation, or broke the tracking plan (violations set);
// its bytes can still be dead-lettered.
type invalidEvent struct {
	raw        []byte
	id         string // its messageId, or derived from the body and its index: keys its dead letter
	err        *validationError
	violations []trackingplan.Violation
}

// decodedBody is a request body split into events.
type decodedBody struct {
	events  []Event        // the valid events, in body order
	invalid []invalidEvent // the events that failed validation, in body order
}

// decoderOptions accept what encoding/json accepted before: duplicate names (the last one
// routes; dropFields removes them all) and invalid UTF-8, which JavaScript strings can hold
// (JSON.stringify escapes lone surrogates as \udXXX). Skipping those checks is also faster.
var decoderOptions = []jsontext.Options{jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)}

var decoders = sync.Pool{New: func() any { return new(jsontext.Decoder) }}

// eventScanner walks a body once with one tokenizer: it locates each event's bytes (always
// slices of the body, never re-encoded) and reads the fields routing and validation need on the
// way. The first element of a batch is available on its own, so authentication can check it
// before the rest is read.
type eventScanner struct {
	body    []byte
	dec     *jsontext.Decoder
	strict  bool
	max     int
	batch   bool
	n       int // elements read
	done    bool
	err     *validationError // a problem with the body as a whole: nothing of it can be used
	decoded decodedBody
	bodySum []byte // SHA-256 of body, once an event needs a derived messageId
}

func newEventScanner(body []byte, mode string, maxEvents int) *eventScanner {
	s := &eventScanner{body: body, strict: mode == config.ValidationStrict, max: maxEvents}
	trimmed := bytes.TrimLeft(body, jsonSpace)
	if len(trimmed) == 0 {
		s.fail(invalid(-1, "", "body is empty"))
		return s
	}
	s.dec = decoders.Get().(*jsontext.Decoder)
	// A bytes.Buffer is tokenized in place, without copying the body.
	s.dec.Reset(bytes.NewBuffer(body), decoderOptions...)
	switch trimmed[0] {
	case '{':
	case '[':
		s.batch = true
		if _, err := s.dec.ReadToken(); err != nil {
			s.fail(invalid(-1, "", "malformed JSON"))
		}
	default:
		s.fail(invalid(-1, "", "body must be a JSON object or an array of objects"))
	}
	return s
}

// jsonSpace is the whitespace JSON allows between tokens.
const jsonSpace = " \t\r\n"

func (s *eventScanner) fail(err *validationError) {
	s.err, s.done = err, true
	s.release()
}

func (s *eventScanner) release() {
	if s.dec != nil {
		s.dec.Reset(bytes.NewBuffer(nil)) // drop the reference to the body before pooling
		decoders.Put(s.dec)
		s.dec = nil
	}
}

// firstElement returns the exact bytes of element 0 of a batch, or nil for a single event or a
// body whose first element cannot be read.
func (s *eventScanner) firstElement() []byte {
	if !s.batch {
		return nil
	}
	for s.n == 0 && s.step() {
	}
	switch {
	case len(s.decoded.events) > 0 && s.decoded.events[0].Index == 0:
		return s.decoded.events[0].Raw
	case len(s.decoded.invalid) > 0 && s.decoded.invalid[0].err.Index == 0:
		return s.decoded.invalid[0].raw
	}
	return nil
}

// finish reads the rest of the body.
func (s *eventScanner) finish() (decodedBody, *validationError) {
	for s.step() {
	}
	return s.decoded, s.err
}

// step reads one element; false once the body is read or refused.
func (s *eventScanner) step() bool {
	if s.done {
		return false
	}
	d := s.dec
	if s.batch {
		if d.PeekKind() == ']' {
			_, _ = d.ReadToken()
			switch {
			case s.n == 0:
				s.fail(invalid(-1, "", "batch holds no events"))
			case !s.atEnd():
				s.fail(invalid(-1, "", "unexpected data after the JSON value"))
			default:
				s.done = true
				s.release()
			}
			return false
		}
		if s.n == s.max {
			s.fail(&validationError{Status: http.StatusRequestEntityTooLarge, Index: s.n,
				Reason: fmt.Sprintf("a batch may hold at most %d events", s.max)})
			return false
		}
	} else if s.n == 1 {
		if !s.atEnd() {
			s.fail(invalid(-1, "", "unexpected data after the JSON value"))
		} else {
			s.done = true
			s.release()
		}
		return false
	}
	index := s.n
	s.n++
	if d.PeekKind() != '{' {
		raw, err := d.ReadValue()
		if err != nil {
			s.fail(invalid(index, "", "malformed JSON"))
			return false
		}
		s.decoded.invalid = append(s.decoded.invalid, invalidEvent{raw: s.span(len(raw)), id: s.deriveMessageID(index), err: invalid(index, "", "an event must be a JSON object")})
		return true
	}
	ev, verr, err := s.readEvent(index)
	switch {
	case err != nil:
		s.fail(invalid(index, "", "malformed JSON"))
		return false
	case verr != nil:
		s.decoded.invalid = append(s.decoded.invalid, invalidEvent{raw: ev.Raw, id: s.deriveMessageID(index), err: verr})
	default:
		s.decoded.events = append(s.decoded.events, ev)
	}
	return true
}

// atEnd reports whether only whitespace follows the value read last.
func (s *eventScanner) atEnd() bool {
	_, err := s.dec.ReadToken()
	return err == io.EOF
}

// span is the body's bytes of the token or value of length n read last.
func (s *eventScanner) span(n int) []byte {
	end := int(s.dec.InputOffset())
	return s.body[end-n : end : end]
}

// The fields the receiver reads from an event.
const (
	fieldType = iota
	fieldMessageID
	fieldUserID
	fieldAnonymousID
	fieldEvent
	fieldGroupID
	fieldPreviousID
	fieldName
	fieldCategory
	fieldProperties
	fieldTraits
	fieldContext
	fieldIntegrations
	fieldTimestamp
	fieldSentAt
	fieldReceivedAt
	fieldOriginalTimestamp
	fieldCount
)

var fieldNames = [fieldCount]string{"type", "messageId", "userId", "anonymousId", "event", "groupId", "previousId",
	"name", "category", "properties", "traits", "context", "integrations", "timestamp", "sentAt", "receivedAt", "originalTimestamp"}

// Field kinds checked in Strict mode.
var (
	stringFields    = []int{fieldMessageID, fieldUserID, fieldAnonymousID, fieldEvent, fieldGroupID, fieldPreviousID, fieldName, fieldCategory}
	objectFields    = []int{fieldProperties, fieldTraits, fieldContext, fieldIntegrations}
	timestampFields = []int{fieldTimestamp, fieldSentAt, fieldReceivedAt, fieldOriginalTimestamp}
)

// fieldOf maps a quoted member name to the field it is, or -1.
func fieldOf(quoted []byte) int {
	name := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(name, '\\') >= 0 {
		name, _ = jsontext.AppendUnquote(nil, quoted) // validated: at worst invalid UTF-8, replaced
	}
	for i, f := range fieldNames {
		if string(name) == f {
			return i
		}
	}
	return -1
}

// eventFields holds the raw values (slices of the body) of the fields an event has.
type eventFields [fieldCount][]byte

// readEvent reads one object. err is a syntax error (the body is unusable); verr refuses only
// this event.
func (s *eventScanner) readEvent(index int) (ev Event, verr *validationError, err error) {
	d := s.dec
	if _, err := d.ReadToken(); err != nil {
		return ev, nil, err
	}
	start := int(d.InputOffset()) - 1
	var fields eventFields
	for d.PeekKind() != '}' {
		name, err := d.ReadValue()
		if err != nil {
			return ev, nil, err
		}
		f := fieldOf(name)
		if f < 0 {
			if err := d.SkipValue(); err != nil {
				return ev, nil, err
			}
			continue
		}
		value, err := d.ReadValue()
		if err != nil {
			return ev, nil, err
		}
		fields[f] = s.span(len(value))
	}
	if _, err := d.ReadToken(); err != nil {
		return ev, nil, err
	}
	end := int(d.InputOffset())
	ev.Raw = s.body[start:end:end]
	ev.Index = index
	if verr := fields.fill(&ev, s.strict, index); verr != nil {
		return ev, verr, nil
	}
	if ev.MessageID == "" {
		ev.MessageID = s.deriveMessageID(index)
	}
	return ev, nil, nil
}

// fill validates the fields and copies the ones routing needs into ev.
func (f *eventFields) fill(ev *Event, strict bool, index int) *validationError {
	typ, ok := f.eventType()
	if !ok || typ == "" {
		return invalid(index, "type", "every event needs a non-empty string type")
	}
	ev.Type = typ
	if strict {
		if err := f.validateStrict(typ, index, &ev.Timestamp); err != nil {
			return err
		}
	} else if ts, ok := f.text(fieldTimestamp); ok {
		ev.Timestamp, _ = time.Parse(time.RFC3339Nano, string(ts))
	}
	// In Lenient mode fields of an unexpected kind are simply not used.
	f.strings(&ev.MessageID, &ev.UserID, &ev.AnonymousID, &ev.Name)
	ev.properties, ev.traits, ev.context = f[fieldProperties], f[fieldTraits], f[fieldContext]
	return nil
}

// validateStrict enforces the Segment Spec. Identifiers must be strings: Segment's libraries send
// strings, and a numeric userId is more likely a mapping mistake than intent. JSON null counts as
// absent, since Segment sends "userId": null for anonymous users.
func (f *eventFields) validateStrict(typ string, index int, timestamp *time.Time) *validationError {
	if !slices.Contains(config.EventTypes, typ) {
		return invalid(index, "type", fmt.Sprintf("unknown event type %q", typ))
	}
	for _, i := range stringFields {
		if v := f[i]; f.present(i) && v[0] != '"' {
			return invalid(index, fieldNames[i], "must be a string")
		}
	}
	for _, i := range objectFields {
		if v := f[i]; f.present(i) && v[0] != '{' {
			return invalid(index, fieldNames[i], "must be an object")
		}
	}
	for _, i := range timestampFields {
		if !f.present(i) {
			continue
		}
		s, ok := f.text(i)
		if !ok {
			return invalid(index, fieldNames[i], "must be an ISO-8601 (RFC 3339) timestamp string")
		}
		t, err := time.Parse(time.RFC3339Nano, string(s))
		if err != nil {
			return invalid(index, fieldNames[i], "must be an ISO-8601 (RFC 3339) timestamp such as 2024-05-01T12:00:00.000Z")
		}
		if i == fieldTimestamp {
			*timestamp = t
		}
	}
	need := func(i int, reason string) *validationError {
		if v, _ := f.text(i); len(v) == 0 {
			return invalid(index, fieldNames[i], reason)
		}
		return nil
	}
	var err *validationError
	switch typ {
	case "track":
		err = need(fieldEvent, "track events need a non-empty event name")
	case "group":
		err = need(fieldGroupID, "group events need a non-empty groupId")
	case "alias":
		if err = need(fieldPreviousID, "alias events need a non-empty previousId"); err == nil {
			err = need(fieldUserID, "alias events need a non-empty userId")
		}
	case "delete":
		err = need(fieldUserID, "delete events need a non-empty userId")
	}
	if err != nil {
		return err
	}
	userID, _ := f.text(fieldUserID)
	anonymousID, _ := f.text(fieldAnonymousID)
	if len(userID) == 0 && len(anonymousID) == 0 {
		return invalid(index, "userId", "every event needs a non-empty userId or anonymousId")
	}
	return nil
}

// eventType is the type, without allocating for the known types.
func (f *eventFields) eventType() (string, bool) {
	if v := f[fieldType]; len(v) > 2 && v[0] == '"' {
		for _, known := range config.EventTypes {
			if string(v[1:len(v)-1]) == known {
				return known, true
			}
		}
	}
	return f.str(fieldType)
}

// present reports whether field i is there and not null.
func (f *eventFields) present(i int) bool { return f[i] != nil && string(f[i]) != "null" }

// text returns the content of field i when it is a JSON string, without copying unless it holds
// escapes.
func (f *eventFields) text(i int) ([]byte, bool) {
	v := f[i]
	if len(v) < 2 || v[0] != '"' {
		return nil, false
	}
	// The tokenizer has validated the string, so one without escapes needs no decoding.
	if inner := v[1 : len(v)-1]; bytes.IndexByte(inner, '\\') < 0 {
		return inner, true
	}
	// The only error left is invalid UTF-8, which is replaced like encoding/json does.
	s, _ := jsontext.AppendUnquote(nil, v)
	return s, true
}

// str returns field i's value when it is a JSON string.
func (f *eventFields) str(i int) (string, bool) {
	s, ok := f.text(i)
	return string(s), ok
}

// strings sets the messageId, userId, anonymousId and event name from one allocation: a string
// holding all four, sliced.
func (f *eventFields) strings(messageID, userID, anonymousID, name *string) {
	fields := [4]int{fieldMessageID, fieldUserID, fieldAnonymousID, fieldEvent}
	var parts [4][]byte
	size := 0
	for j, i := range fields {
		parts[j], _ = f.text(i)
		size += len(parts[j])
	}
	var buf [256]byte // usually enough: joined on the stack, one allocation for the string
	joined := buf[:0]
	if size > len(buf) {
		joined = make([]byte, 0, size)
	}
	for _, p := range parts {
		joined = append(joined, p...)
	}
	all := string(joined)
	out := [4]*string{messageID, userID, anonymousID, name}
	for j, p := range parts {
		*out[j], all = all[:len(p)], all[len(p):]
	}
}

// deriveMessageID gives an event without a messageId one from the whole body and the event's
// position in it, so that dedupe and the targets' idempotency keys still work: Segment's retries
// resend the same body, which gives the same ids on any replica, while identical events in one
// batch, or in requests whose bodies differ, stay distinct (a byte-identical body counts as a
// retry). The body is hashed once, on first need. The prefix marks the id as ours.
func (s *eventScanner) deriveMessageID(index int) string {
	if s.bodySum == nil {
		sum := sha256.Sum256(s.body)
		s.bodySum = sum[:]
	}
	h := sha256.New()
	h.Write(s.bodySum)
	h.Write(strconv.AppendInt(nil, int64(index), 10))
	return "swh-" + hex.EncodeToString(h.Sum(nil)[:16])
}
