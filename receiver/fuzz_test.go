package receiver

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// Seeds beside those checked in under testdata/fuzz/.
var fuzzBodies = []string{
	`{"type":"track","event":"Order Completed","userId":"u","messageId":"m","timestamp":"2024-05-01T12:00:00Z"}`,
	`[{"type":"identify","anonymousId":"a","traits":{"é":"\u00e9\"\\"}} , {"type":"group","groupId":"g","userId":"u"}]`,
	" \n[\n{\"type\":\"alias\",\"previousId\":\"p\",\"userId\":\"u\"}\n]\n",
	`{"type":"delete","userId":"u","context":{"ip":"1.2.3.4"}}`,
	`[]`, `{}`, `[1]`, `{"type":7}`, `[{"type":"a"},`, `"x"`,
}

func FuzzDecodeEvents(f *testing.F) {
	for _, b := range fuzzBodies {
		f.Add([]byte(b), true)
		f.Add([]byte(b), false)
	}
	f.Fuzz(func(t *testing.T, body []byte, strict bool) {
		mode := config.ValidationLenient
		if strict {
			mode = config.ValidationStrict
		}
		const maxEvents = 50
		events, err := decodeEvents(body, mode, maxEvents)
		if err != nil {
			var verr *validationError
			if !errors.As(err, &verr) {
				t.Fatalf("error is not a validationError: %v", err)
			}
			if verr.Status != http.StatusBadRequest && verr.Status != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d", verr.Status)
			}
			return
		}
		if len(events) == 0 || len(events) > maxEvents {
			t.Fatalf("%d events accepted", len(events))
		}
		var whole []json.RawMessage
		if bytes.HasPrefix(bytes.TrimLeft(body, jsonSpace), []byte("[")) {
			if err := json.Unmarshal(body, &whole); err != nil {
				t.Fatalf("accepted a body encoding/json refuses: %v", err)
			}
		} else {
			whole = []json.RawMessage{bytes.Trim(body, jsonSpace)}
		}
		if len(whole) != len(events) {
			t.Fatalf("%d events, encoding/json sees %d", len(events), len(whole))
		}
		for i, ev := range events {
			// Raw is exactly the received bytes of the element, never re-encoded.
			if !bytes.Equal(ev.Raw, whole[i]) {
				t.Fatalf("event %d raw %q, want %q", i, ev.Raw, whole[i])
			}
			var obj map[string]json.RawMessage // not any: 1e999999 is valid JSON, not a float64
			if err := json.Unmarshal(ev.Raw, &obj); err != nil {
				t.Fatalf("event %d is not an object: %v", i, err)
			}
			if ev.Type == "" || ev.MessageID == "" {
				t.Fatalf("event %d lacks type or messageId: %+v", i, ev)
			}
			if strict && ev.UserID == "" && ev.AnonymousID == "" {
				t.Fatalf("strict accepted event %d without identity", i)
			}
		}
	})
}

func FuzzVerifySignature(f *testing.F) {
	for _, b := range fuzzBodies {
		f.Add([]byte(b), []byte("secret"), "")
	}
	f.Add([]byte(`[{"a":1}]`), []byte("k"), strings.Repeat("0", 40))
	f.Fuzz(func(t *testing.T, body, secret []byte, signature string) {
		if len(secret) == 0 {
			return // refused by the config
		}
		secrets := []string{"other", string(secret)}
		signOf := func(b []byte) string { return hex.EncodeToString(sign(secret, b)) }
		for _, header := range []string{SignatureHeader, SegmentSignatureHeader} {
			if !verify(t, string(body), header, signOf(body), secrets, config.SignatureFullBody) {
				t.Fatalf("a %s over the whole body was refused", header)
			}
		}
		sc := newEventScanner(body, config.ValidationLenient, config.MaxEventsLimit)
		first := sc.firstElement()
		sc.release()
		if first != nil {
			if !bytes.Contains(body, first) {
				t.Fatal("first element is not a span of the body")
			}
			var elems []json.RawMessage
			if json.Unmarshal(body, &elems) == nil && !bytes.Equal(first, elems[0]) {
				t.Fatalf("first element %q, encoding/json sees %q", first, elems[0])
			}
			if !verify(t, string(body), SignatureHeader, signOf(first), secrets, config.SignatureAny) {
				t.Fatal("a signature over the first element was refused")
			}
		}
		// An arbitrary signature is accepted only if it is one of the valid MACs.
		if verify(t, string(body), SignatureHeader, signature, secrets, config.SignatureAny) {
			want := []string{signOf(body), hex.EncodeToString(sign([]byte("other"), body))}
			if first != nil {
				want = append(want, signOf(first), hex.EncodeToString(sign([]byte("other"), first)))
			}
			got := strings.ToLower(strings.TrimSpace(signature))
			found := false
			for _, w := range want {
				found = found || got == w
			}
			if !found {
				t.Fatalf("accepted signature %q", signature)
			}
		}
	})
}

func FuzzDropField(f *testing.F) {
	f.Add([]byte(`{"context":{"ip":"1.2.3.4","x":1},"a":[1]}`), "context.ip")
	f.Add([]byte(`{"\u0069p":1,"ip":2}`), "ip")
	f.Fuzz(func(t *testing.T, obj []byte, path string) {
		if !json.Valid(obj) || path == "" {
			return
		}
		out, changed, err := dropField(obj, strings.Split(path, "."))
		if err != nil {
			return // not an object
		}
		if !json.Valid(out) {
			t.Fatalf("output %q is not valid JSON", out)
		}
		if !changed && !bytes.Equal(out, obj) {
			t.Fatal("unchanged output differs from the input")
		}
	})
}

// Whatever the body, its malformed dead letter is valid JSON and gives back the body's bytes
// (a JSON value as received, but for the whitespace around it).
func FuzzMalformedLetter(f *testing.F) {
	for _, b := range fuzzBodies {
		f.Add([]byte(b))
	}
	f.Add([]byte("\xff{\"a\":"))
	f.Fuzz(func(t *testing.T, body []byte) {
		letter := malformedLetter("team-a/checkout", body, invalid(-1, "", "malformed JSON"))
		var e struct {
			Reason, Encoding string
			Index            int
			Event            json.RawMessage
		}
		if err := json.Unmarshal(letter.Raw, &e); err != nil {
			t.Fatalf("envelope %q is not JSON: %v", letter.Raw, err)
		}
		want, got := bytes.Trim(body, jsonSpace), []byte(e.Event)
		if e.Encoding == "base64" {
			var encoded string
			if err := json.Unmarshal(e.Event, &encoded); err != nil {
				t.Fatalf("base64 event %s is not a string", e.Event)
			}
			want = body
			var err error
			if got, err = base64.StdEncoding.DecodeString(encoded); err != nil {
				t.Fatal(err)
			}
		}
		if e.Reason != ReasonMalformed || e.Index != -1 || !bytes.Equal(got, want) {
			t.Fatalf("envelope %s holds %q, want %q", letter.Raw, got, want)
		}
	})
}
