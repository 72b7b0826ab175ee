package receiver

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/trackingplan"
)

// decodeEvents scans a whole body as a request without a dead-letter target sees it: the first
// invalid event refuses the body.
func decodeEvents(body []byte, mode string, maxEvents int) ([]Event, error) {
	sc := newEventScanner(body, mode, maxEvents)
	defer sc.release()
	decoded, verr := sc.finish()
	if verr != nil {
		return nil, verr
	}
	if len(decoded.invalid) > 0 {
		return nil, decoded.invalid[0].err
	}
	return decoded.events, nil
}

func TestDecodeEvents(t *testing.T) {
	const (
		strict  = config.ValidationStrict
		lenient = config.ValidationLenient
	)
	tests := []struct {
		name       string
		mode       string
		body       string
		wantEvents int
		wantStatus int // 0: valid
		wantIndex  int
		wantField  string
		maxEvents  int // 0: 10
	}{
		{name: "track", mode: strict, body: `{"type":"track","event":"Signed Up","userId":"u1"}`, wantEvents: 1},
		{name: "identify anonymous with null userId", mode: strict, body: `{"type":"identify","userId":null,"anonymousId":"a1","traits":{"plan":"pro"}}`, wantEvents: 1},
		{name: "page", mode: strict, body: `{"type":"page","name":"Home","anonymousId":"a"}`, wantEvents: 1},
		{name: "screen", mode: strict, body: `{"type":"screen","userId":"u"}`, wantEvents: 1},
		{name: "group", mode: strict, body: `{"type":"group","groupId":"g","userId":"u"}`, wantEvents: 1},
		{name: "alias", mode: strict, body: `{"type":"alias","previousId":"p","userId":"u"}`, wantEvents: 1},
		{name: "delete", mode: strict, body: `{"type":"delete","userId":"u"}`, wantEvents: 1},
		{name: "timestamps", mode: strict, body: `{"type":"track","event":"e","userId":"u","timestamp":"2024-05-01T12:00:00.123Z","sentAt":"2024-05-01T12:00:00+02:00","receivedAt":"2024-05-01T12:00:00Z","originalTimestamp":"2024-05-01T12:00:00.123456789Z"}`, wantEvents: 1},
		{name: "batch", mode: strict, body: `[{"type":"track","event":"e","userId":"u"},{"type":"identify","userId":"u"}]`, wantEvents: 2},
		{name: "whitespace around", mode: strict, body: " \n{\"type\":\"identify\",\"userId\":\"u\"}\n", wantEvents: 1},

		{name: "empty body", mode: strict, body: ``, wantStatus: 400, wantIndex: -1},
		{name: "empty array", mode: lenient, body: `[]`, wantStatus: 400, wantIndex: -1},
		{name: "scalar body", mode: lenient, body: `"track"`, wantStatus: 400, wantIndex: -1},
		{name: "malformed", mode: lenient, body: `{"type":"track"`, wantStatus: 400, wantIndex: 0},
		{name: "trailing data", mode: lenient, body: `{"type":"track"} {"type":"track"}`, wantStatus: 400, wantIndex: -1},
		{name: "batch malformed element", mode: lenient, body: `[{"type":"a"},{"type":]`, wantStatus: 400, wantIndex: 1},
		{name: "batch non-object element", mode: lenient, body: `[{"type":"a"},42]`, wantStatus: 400, wantIndex: 1},
		{name: "batch unterminated", mode: lenient, body: `[{"type":"a"}`, wantStatus: 400, wantIndex: 1},
		{name: "too many events", mode: lenient, body: `[{"type":"a"},{"type":"a"},{"type":"a"},{"type":"a"}]`, wantStatus: 413, wantIndex: 3, maxEvents: 3},
		{name: "no type", mode: lenient, body: `{"event":"x"}`, wantStatus: 400, wantIndex: 0, wantField: "type"},
		{name: "numeric type", mode: lenient, body: `{"type":7}`, wantStatus: 400, wantIndex: 0, wantField: "type"},
		{name: "lenient takes custom type without ids", mode: lenient, body: `{"type":"custom_thing","payload":{"x":1}}`, wantEvents: 1},
		{name: "lenient takes track without event", mode: lenient, body: `{"type":"track","userId":42}`, wantEvents: 1},

		{name: "strict unknown type", mode: strict, body: `{"type":"custom_thing","userId":"u"}`, wantStatus: 400, wantIndex: 0, wantField: "type"},
		{name: "strict no identity", mode: strict, body: `{"type":"identify"}`, wantStatus: 400, wantIndex: 0, wantField: "userId"},
		{name: "strict empty identities", mode: strict, body: `{"type":"identify","userId":"","anonymousId":null}`, wantStatus: 400, wantIndex: 0, wantField: "userId"},
		{name: "strict numeric userId", mode: strict, body: `{"type":"identify","userId":42}`, wantStatus: 400, wantIndex: 0, wantField: "userId"},
		{name: "strict track without event", mode: strict, body: `[{"type":"identify","userId":"u"},{"type":"identify","userId":"u"},{"type":"identify","userId":"u"},{"type":"track","userId":"u"}]`, wantStatus: 400, wantIndex: 3, wantField: "event"},
		{name: "strict group without groupId", mode: strict, body: `{"type":"group","userId":"u"}`, wantStatus: 400, wantIndex: 0, wantField: "groupId"},
		{name: "strict alias without previousId", mode: strict, body: `{"type":"alias","userId":"u"}`, wantStatus: 400, wantIndex: 0, wantField: "previousId"},
		{name: "strict alias with only anonymousId", mode: strict, body: `{"type":"alias","previousId":"p","anonymousId":"a"}`, wantStatus: 400, wantIndex: 0, wantField: "userId"},
		{name: "strict delete without userId", mode: strict, body: `{"type":"delete","anonymousId":"a"}`, wantStatus: 400, wantIndex: 0, wantField: "userId"},
		{name: "strict bad timestamp", mode: strict, body: `{"type":"identify","userId":"u","timestamp":"yesterday"}`, wantStatus: 400, wantIndex: 0, wantField: "timestamp"},
		{name: "strict date-only sentAt", mode: strict, body: `{"type":"identify","userId":"u","sentAt":"2024-05-01"}`, wantStatus: 400, wantIndex: 0, wantField: "sentAt"},
		{name: "strict numeric receivedAt", mode: strict, body: `{"type":"identify","userId":"u","receivedAt":1714564800}`, wantStatus: 400, wantIndex: 0, wantField: "receivedAt"},
		{name: "strict properties not object", mode: strict, body: `{"type":"track","event":"e","userId":"u","properties":[1]}`, wantStatus: 400, wantIndex: 0, wantField: "properties"},
		{name: "strict traits not object", mode: strict, body: `{"type":"identify","userId":"u","traits":"x"}`, wantStatus: 400, wantIndex: 0, wantField: "traits"},
		{name: "strict context not object", mode: strict, body: `{"type":"identify","userId":"u","context":1}`, wantStatus: 400, wantIndex: 0, wantField: "context"},
		{name: "strict numeric messageId", mode: strict, body: `{"type":"identify","userId":"u","messageId":1}`, wantStatus: 400, wantIndex: 0, wantField: "messageId"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			maxEvents := tt.maxEvents
			if maxEvents == 0 {
				maxEvents = 10
			}
			events, err := decodeEvents([]byte(tt.body), tt.mode, maxEvents)
			if tt.wantStatus == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if len(events) != tt.wantEvents {
					t.Fatalf("got %d events, want %d", len(events), tt.wantEvents)
				}
				return
			}
			var verr *validationError
			if !errors.As(err, &verr) {
				t.Fatalf("got %v, want a validationError", err)
			}
			if verr.Status != tt.wantStatus || verr.Index != tt.wantIndex || verr.Field != tt.wantField || verr.Reason == "" {
				t.Fatalf("got %+v, want status %d index %d field %q", verr, tt.wantStatus, tt.wantIndex, tt.wantField)
			}
		})
	}
}

func TestDecodeKeepsRawBytesAndFields(t *testing.T) {
	first := `{ "type": "track", "event":"Caf\u00e9", "userId":"u1", "messageId":"m-1", "timestamp":"2024-05-01T12:00:00.5Z" }`
	second := `{"type":"identify","anonymousId":"a1"}`
	events, err := decodeEvents([]byte("[\n"+first+" ,\n"+second+"]"), config.ValidationStrict, 10)
	if err != nil {
		t.Fatal(err)
	}
	ev := events[0]
	if string(ev.Raw) != first || ev.Type != "track" || ev.Name != "Café" || ev.UserID != "u1" || ev.MessageID != "m-1" ||
		ev.Timestamp.UnixMilli() != 1714564800500 {
		t.Fatalf("first event decoded as %+v", ev)
	}
	if string(events[1].Raw) != second || events[1].AnonymousID != "a1" {
		t.Fatalf("second event decoded as %+v", events[1])
	}
}

func TestDerivedMessageIDIsStable(t *testing.T) {
	body := []byte(`[{"type":"identify","userId":"u"},{"type":"identify","userId":"v"}]`)
	a, err := decodeEvents(body, config.ValidationStrict, 10)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := decodeEvents(body, config.ValidationStrict, 10)
	if a[0].MessageID != b[0].MessageID || !strings.HasPrefix(a[0].MessageID, "swh-") {
		t.Fatalf("derived ids %q and %q", a[0].MessageID, b[0].MessageID)
	}
	if a[0].MessageID == a[1].MessageID {
		t.Fatal("different events got the same derived id")
	}
	same, _ := decodeEvents([]byte(`[{"type":"identify","userId":"u"},{"type":"identify","userId":"u"}]`), config.ValidationStrict, 10)
	alone, _ := decodeEvents([]byte(`{"type":"identify","userId":"u"}`), config.ValidationStrict, 10)
	if same[0].MessageID == same[1].MessageID || same[0].MessageID == a[0].MessageID || alone[0].MessageID == a[0].MessageID {
		t.Fatalf("identical events got the same derived id: %q %q %q %q", same[0].MessageID, same[1].MessageID, a[0].MessageID, alone[0].MessageID)
	}
}

func TestValidationErrorStatus(t *testing.T) {
	_, err := decodeEvents([]byte(`[{"type":"a"},{"type":"a"}]`), config.ValidationLenient, 1)
	var verr *validationError
	if !errors.As(err, &verr) || verr.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("got %v", err)
	}
}

// Events copied from one another share their attributes: marking a copy must leave the original
// as it was. A transport carries only the attributes its table names.
func TestAttributes(t *testing.T) {
	letter := deadLetter{Reason: ReasonRefused, Target: "orders", Source: "ns/n"}.envelope([]byte(`{}`))
	marked := markViolations(letter, []trackingplan.Violation{{Pointer: "/properties/total", Keyword: "type"}}, 1)
	if _, ok := letter.Attributes[violationAttribute]; ok || len(letter.Attributes) != 2 {
		t.Fatalf("marking a copy changed the original: %v", letter.Attributes)
	}
	if marked.Attributes[violationAttribute] != "/properties/total type" || marked.Attributes[deadLetterReasonAttribute] != ReasonRefused {
		t.Errorf("marked = %v", marked.Attributes)
	}
	var carried []string
	for header, value := range kafkaAttributeHeaders.of(marked.Attributes) {
		carried = append(carried, header+"="+value)
	}
	if want := KafkaHeaderPlanViolation + "=/properties/total type"; len(carried) != 1 || carried[0] != want {
		t.Errorf("Kafka carries %v, want [%s]", carried, want)
	}
}
