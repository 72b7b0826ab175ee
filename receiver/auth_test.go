package receiver

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// hmacHex is computed independently of sign so the tests check the production code.
func hmacHex(secret, body string) string {
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(body))
	return hex.EncodeToString(mac.Sum(nil))
}

// verify runs HMAC authentication as the handler does, with the body's first element located by
// the event scanner.
func verify(t testing.TB, body, header, signature string, secrets []string, mode string) bool {
	t.Helper()
	files := map[string][]byte{}
	var paths []string
	for i, s := range secrets {
		path := fmt.Sprintf("s%d", i)
		files[path], paths = []byte(s), append(paths, path)
	}
	if len(paths) == 0 {
		return false // no secret: nothing can verify (newAuthenticator refuses the config)
	}
	auth, err := newAuthenticator(config.Authentication{Mode: config.AuthHMAC, SecretFiles: paths, Signature: mode}, files)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set(header, signature)
	sc := newEventScanner([]byte(body), config.ValidationLenient, config.MaxEventsLimit)
	defer sc.release()
	return auth.precheck(h) && auth.verifyBody(h, []byte(body), sc.firstElement)
}

func TestSignKnownVector(t *testing.T) {
	// RFC 2202 test case 2 for HMAC-SHA1.
	if got, want := hex.EncodeToString(sign([]byte("Jefe"), []byte("what do ya want for nothing?"))), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"; got != want {
		t.Fatalf("sign = %s, want %s", got, want)
	}
}

func TestVerifySignature(t *testing.T) {
	const secret = "s3cr3t"
	first := `{"type":"track","event":"Caf\u00e9 \"quoted\" back\\slash","userId":"u-é","messageId":"m1"}`
	second := `{"type":"identify","userId":"u2","messageId":"m2"}`
	whole := "[" + first + "," + second + "]"
	tests := []struct {
		name      string
		body      string
		signed    string // the bytes the signature covers
		header    string // default X-Signature
		mode      string // default Any
		secrets   []string
		signWith  string
		wantValid bool
	}{
		{name: "single event", body: first, signed: first, wantValid: true},
		{name: "whole batch body", body: whole, signed: whole, wantValid: true},
		{name: "batch first element", body: whole, signed: first, wantValid: true},
		{name: "batch first element, spaces and newlines", body: " \n[ \n\t" + first + " ,\n  " + second + "\n]\n", signed: first, wantValid: true},
		{name: "batch first element, CRLF before the first", body: "[\r\n" + first + "\r\n]", signed: first, wantValid: true},
		{name: "batch of one", body: "[" + first + "]", signed: first, wantValid: true},
		{name: "first element with inner whitespace is signed as sent", body: `[ { "type" : "track" } ,{}]`, signed: `{ "type" : "track" }`, wantValid: true},
		{name: "re-encoded first element is not what was signed", body: `[ { "type" : "track" } ,{}]`, signed: `{"type":"track"}`, wantValid: false},
		{name: "raw unicode in first element", body: `[{"type":"track","event":"naïve 🚀"},{}]`, signed: `{"type":"track","event":"naïve 🚀"}`, wantValid: true},
		{name: "second element is not accepted", body: whole, signed: second, wantValid: false},
		{name: "first element of a single object is not a thing", body: `{"a":[{"b":1}]}`, signed: `{"b":1}`, wantValid: false},
		{name: "rotation: second secret", body: first, signed: first, secrets: []string{"old", secret}, wantValid: true},
		{name: "rotation: first secret", body: first, signed: first, secrets: []string{secret, "new"}, wantValid: true},
		{name: "wrong secret", body: first, signed: first, signWith: "other", wantValid: false},
		{name: "body changed", body: first + " ", signed: first, wantValid: false},
		{name: "X-Segment-Signature, single event", header: SegmentSignatureHeader, body: first, signed: first, wantValid: true},
		{name: "X-Segment-Signature, batch", header: SegmentSignatureHeader, body: whole, signed: whole, wantValid: true},
		{name: "X-Segment-Signature never covers element 0 alone", header: SegmentSignatureHeader, body: whole, signed: first, wantValid: false},
		{name: "FullBody: whole batch", mode: config.SignatureFullBody, body: whole, signed: whole, wantValid: true},
		{name: "FullBody: single event with X-Signature", mode: config.SignatureFullBody, body: first, signed: first, wantValid: true},
		{name: "FullBody refuses element-0-only batches", mode: config.SignatureFullBody, body: whole, signed: first, wantValid: false},
		{name: "FullBody: X-Segment-Signature batch", mode: config.SignatureFullBody, header: SegmentSignatureHeader, body: whole, signed: whole, wantValid: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secrets := tt.secrets
			if secrets == nil {
				secrets = []string{secret}
			}
			signWith := tt.signWith
			if signWith == "" {
				signWith = secret
			}
			header := tt.header
			if header == "" {
				header = SignatureHeader
			}
			if got := verify(t, tt.body, header, hmacHex(signWith, tt.signed), secrets, tt.mode); got != tt.wantValid {
				t.Fatalf("verified = %v, want %v", got, tt.wantValid)
			}
		})
	}
}

func TestVerifySignatureRejectsMalformedSignatures(t *testing.T) {
	body := `{"type":"track"}`
	good := hmacHex("k", body)
	for _, sig := range []string{"zz", good[:38], good + "00", "sha1=" + good, strings.Repeat("0", 40)} {
		if verify(t, body, SignatureHeader, sig, []string{"k"}, "") {
			t.Errorf("signature %q accepted", sig)
		}
	}
	if !verify(t, body, SignatureHeader, strings.ToUpper(good), []string{"k"}, "") {
		t.Errorf("upper-case hex of the right MAC refused; hex case carries no meaning")
	}
	if verify(t, body, SignatureHeader, "", []string{"k"}, "") {
		t.Errorf("accepted without a signature")
	}
}

func TestFirstElement(t *testing.T) {
	tests := []struct {
		body string
		want string
	}{
		{`[{"a":1},{"b":2}]`, `{"a":1}`},
		{" \n [\n  {\"a\" : \"\\\"x\\\\\"}\n , {}]", `{"a" : "\"x\\"}`},
		{`[ "str" , 1]`, `"str"`},
		{`[12.5e3 ,1]`, `12.5e3`},
		{`[]`, ``},
		{`{"a":1}`, ``},
		{`[{"a":`, ``},
		{``, ``},
	}
	for _, tt := range tests {
		sc := newEventScanner([]byte(tt.body), config.ValidationLenient, 10)
		if got := sc.firstElement(); string(got) != tt.want {
			t.Errorf("firstElement(%q) = %q; want %q", tt.body, got, tt.want)
		}
		sc.release()
	}
}

func TestBearer(t *testing.T) {
	auth, err := newAuthenticator(config.Authentication{Mode: config.AuthBearer, SecretFiles: []string{"a", "b"}},
		map[string][]byte{"a": []byte("token-one"), "b": []byte("token-two")})
	if err != nil {
		t.Fatal(err)
	}
	for header, want := range map[string]bool{
		"Bearer token-one":  true,
		"Bearer token-two":  true,
		"bearer token-two":  true,
		"Bearer token-thre": false,
		"Bearer ":           false,
		"Basic token-one":   false,
		"token-one":         false,
		"":                  false,
	} {
		h := http.Header{}
		h.Set("Authorization", header)
		if got := auth.precheck(h); got != want {
			t.Errorf("Authorization %q: got %v, want %v", header, got, want)
		}
	}
}

func TestEmptySecretIsRefused(t *testing.T) {
	_, err := newAuthenticator(config.Authentication{Mode: config.AuthHMAC, SecretFiles: []string{"a"}}, map[string][]byte{"a": {}})
	if err == nil {
		t.Fatal("an empty HMAC secret was accepted")
	}
}

func TestTrimSecret(t *testing.T) {
	for in, want := range map[string]string{
		"secret":     "secret",
		"secret\n":   "secret",
		"secret\r\n": "secret",
		"secret\n\n": "secret\n",
		" secret ":   " secret ",
		"\n":         "",
	} {
		if got := string(trimSecret([]byte(in))); got != want {
			t.Errorf("trimSecret(%q) = %q, want %q", in, got, want)
		}
	}
}

// The first element found by offsets is byte-for-byte what encoding/json sees as element 0.
func TestFirstElementMatchesDecoder(t *testing.T) {
	body := "[\n  {\"x\": \"\\u00e9\\\\\\\"\", \"n\": [1, 2]} ,\n {\"y\":2}]"
	var elems []json.RawMessage
	if err := json.Unmarshal([]byte(body), &elems); err != nil {
		t.Fatal(err)
	}
	sc := newEventScanner([]byte(body), config.ValidationLenient, 10)
	defer sc.release()
	if got := sc.firstElement(); string(got) != string(elems[0]) {
		t.Fatalf("firstElement = %q, want %q", got, elems[0])
	}
}

// sign is Segment's signature: the HMAC-SHA1 of body with the shared secret.
func sign(secret, body []byte) []byte {
	mac := hmac.New(sha1.New, secret)
	mac.Write(body)
	return mac.Sum(nil)
}
