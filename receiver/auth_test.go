package receiver

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// hmacHex is computed independently of Sign so the tests check the production code.
func hmacHex(secret, body string) string {
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(body))
	return hex.EncodeToString(mac.Sum(nil))
}

func TestSignKnownVector(t *testing.T) {
	// RFC 2202 test case 2 for HMAC-SHA1.
	if got, want := Sign([]byte("Jefe"), []byte("what do ya want for nothing?")), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestVerifySignature(t *testing.T) {
	const secret = "s3cr3t"
	first := `{"type":"track","event":"Caf\u00e9 \"quoted\" back\\slash","userId":"u-é","messageId":"m1"}`
	second := `{"type":"identify","userId":"u2","messageId":"m2"}`
	tests := []struct {
		name      string
		body      string
		signed    string // the bytes the signature covers
		secrets   []string
		signWith  string
		wantValid bool
	}{
		{name: "single event", body: first, signed: first, wantValid: true},
		{name: "whole batch body", body: "[" + first + "," + second + "]", signed: "[" + first + "," + second + "]", wantValid: true},
		{name: "batch first element", body: "[" + first + "," + second + "]", signed: first, wantValid: true},
		{name: "batch first element, spaces and newlines", body: " \n[ \n\t" + first + " ,\n  " + second + "\n]\n", signed: first, wantValid: true},
		{name: "batch first element, CRLF before the first", body: "[\r\n" + first + "\r\n]", signed: first, wantValid: true},
		{name: "batch of one", body: "[" + first + "]", signed: first, wantValid: true},
		{name: "first element with inner whitespace is signed as sent", body: `[ { "type" : "track" } ,{}]`, signed: `{ "type" : "track" }`, wantValid: true},
		{name: "re-encoded first element is not what was signed", body: `[ { "type" : "track" } ,{}]`, signed: `{"type":"track"}`, wantValid: false},
		{name: "raw unicode in first element", body: `[{"type":"track","event":"naïve 🚀"},{}]`, signed: `{"type":"track","event":"naïve 🚀"}`, wantValid: true},
		{name: "second element is not accepted", body: "[" + first + "," + second + "]", signed: second, wantValid: false},
		{name: "first element of a single object is not a thing", body: `{"a":[{"b":1}]}`, signed: `{"b":1}`, wantValid: false},
		{name: "rotation: second secret", body: first, signed: first, secrets: []string{"old", secret}, wantValid: true},
		{name: "rotation: first secret", body: first, signed: first, secrets: []string{secret, "new"}, wantValid: true},
		{name: "wrong secret", body: first, signed: first, signWith: "other", wantValid: false},
		{name: "body changed", body: first + " ", signed: first, wantValid: false},
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
			var keys [][]byte
			for _, s := range secrets {
				keys = append(keys, []byte(s))
			}
			sig := hmacHex(signWith, tt.signed)
			if got := VerifySignature([]byte(tt.body), sig, keys); got != tt.wantValid {
				t.Fatalf("VerifySignature = %v, want %v", got, tt.wantValid)
			}
		})
	}
}

func TestVerifySignatureRejectsMalformedSignatures(t *testing.T) {
	body := []byte(`{"type":"track"}`)
	good := hmacHex("k", string(body))
	for _, sig := range []string{"", "zz", good[:38], good + "00", "sha1=" + good, strings.Repeat("0", 40)} {
		if VerifySignature(body, sig, [][]byte{[]byte("k")}) {
			t.Errorf("signature %q accepted", sig)
		}
	}
	if !VerifySignature(body, strings.ToUpper(good), [][]byte{[]byte("k")}) {
		t.Errorf("upper-case hex of the right MAC refused; hex case carries no meaning")
	}
	if VerifySignature(body, good, nil) {
		t.Errorf("accepted with no secrets configured")
	}
}

func TestFirstElement(t *testing.T) {
	tests := []struct {
		body string
		want string
		ok   bool
	}{
		{`[{"a":1},{"b":2}]`, `{"a":1}`, true},
		{" \n [\n  {\"a\" : \"\\\"x\\\\\"}\n , {}]", `{"a" : "\"x\\"}`, true},
		{`[ "str" , 1]`, `"str"`, true},
		{`[12.5e3 ,1]`, `12.5e3`, true},
		{`[]`, ``, false},
		{`{"a":1}`, ``, false},
		{`[{"a":`, ``, false},
		{``, ``, false},
	}
	for _, tt := range tests {
		got, ok := FirstElement([]byte(tt.body))
		if ok != tt.ok || string(got) != tt.want {
			t.Errorf("FirstElement(%q) = %q, %v; want %q, %v", tt.body, got, ok, tt.want, tt.ok)
		}
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
	got, ok := FirstElement([]byte(body))
	if !ok || string(got) != string(elems[0]) {
		t.Fatalf("FirstElement = %q, want %q", got, elems[0])
	}
}
