package receiver

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// SignatureHeader carries the lowercase hex HMAC-SHA1 Segment computes with the shared secret.
const SignatureHeader = "X-Signature"

// authenticator checks that a request comes from Segment. It is immutable once built, so a
// pipeline can share it between requests without locks.
type authenticator struct {
	mode    string
	secrets [][]byte // HMAC keys, or sha256 digests of bearer tokens
}

func newAuthenticator(a config.Authentication, files map[string][]byte) (*authenticator, error) {
	auth := &authenticator{mode: a.Mode}
	for _, path := range a.SecretFiles {
		secret := files[path]
		if len(secret) == 0 {
			// An empty HMAC key or token would let anyone who guesses that in.
			return nil, fmt.Errorf("authentication secret file %s is empty", path)
		}
		if a.Mode == config.AuthBearer {
			digest := sha256.Sum256(secret)
			secret = digest[:]
		}
		auth.secrets = append(auth.secrets, secret)
	}
	return auth, nil
}

// precheck refuses, before the body is read, requests that cannot authenticate: no signature
// header in HMAC mode, or a wrong bearer token. It reports whether the request may go on.
func (a *authenticator) precheck(h http.Header) bool {
	switch a.mode {
	case config.AuthNone:
		return true
	case config.AuthHMAC:
		return h.Get(SignatureHeader) != ""
	case config.AuthBearer:
		return a.verifyBearer(h.Get("Authorization"))
	}
	return false
}

// verifyBody completes authentication once the body is read (HMAC mode only).
func (a *authenticator) verifyBody(h http.Header, body []byte) bool {
	if a.mode != config.AuthHMAC {
		return true
	}
	return VerifySignature(body, h.Get(SignatureHeader), a.secrets)
}

func (a *authenticator) verifyBearer(header string) bool {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return false
	}
	// Comparing fixed-size digests keeps the comparison constant-time even in the token length.
	digest := sha256.Sum256([]byte(token))
	match := false
	for _, want := range a.secrets {
		if hmac.Equal(digest[:], want) {
			match = true // no early return: time does not depend on which secret matched
		}
	}
	return match
}

// VerifySignature reports whether signature (hex HMAC-SHA1) was made with one of secrets over
// either the whole body or, when the body is a JSON array, the exact raw bytes of its first
// element: Segment Actions signs only element 0 of a batch, and an upstream proposal would sign
// the whole body, so both are accepted.
//
// Note that the first-element rule is Segment's: whoever holds one signed event can wrap it in an
// array with other events. Only the signed element is authenticated by the protocol.
func VerifySignature(body []byte, signature string, secrets [][]byte) bool {
	want, err := hex.DecodeString(strings.TrimSpace(signature))
	if err != nil || len(want) != sha1.Size {
		return false
	}
	first, isBatch := FirstElement(body)
	match := false
	for _, secret := range secrets {
		if hmac.Equal(want, sign(secret, body)) {
			match = true
		}
		if isBatch && hmac.Equal(want, sign(secret, first)) {
			match = true
		}
	}
	return match
}

// Sign returns the lowercase hex HMAC-SHA1 of body, as Segment computes X-Signature.
func Sign(secret, body []byte) string { return hex.EncodeToString(sign(secret, body)) }

func sign(secret, body []byte) []byte {
	mac := hmac.New(sha1.New, secret)
	mac.Write(body)
	return mac.Sum(nil)
}

// FirstElement returns the exact bytes of element 0 as they appear in body when body is a JSON
// array with at least one element. The bytes come from the decoder's offsets, never from
// re-encoding, because the signature covers Segment's serialization, not ours.
func FirstElement(body []byte) ([]byte, bool) {
	trimmed := bytes.TrimLeft(body, jsonSpace)
	if len(trimmed) == 0 || trimmed[0] != '[' {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, false
	}
	if !dec.More() {
		return nil, false
	}
	start := dec.InputOffset()
	var element json.RawMessage
	if err := dec.Decode(&element); err != nil {
		return nil, false
	}
	end := dec.InputOffset()
	// The span may begin with the whitespace between '[' and the element.
	return bytes.Trim(body[start:end], jsonSpace), true
}

// jsonSpace is the whitespace JSON allows between tokens.
const jsonSpace = " \t\r\n"

// readSecretFile reads a mounted secret. A single trailing newline ("\n" or "\r\n") is removed
// because `kubectl create secret --from-file` and editors commonly add one that is not part of
// the secret; any other whitespace is kept, as it may be deliberate.
func readSecretFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return trimSecret(b), nil
}

func trimSecret(b []byte) []byte {
	if b2, ok := bytes.CutSuffix(b, []byte("\r\n")); ok {
		return b2
	}
	b, _ = bytes.CutSuffix(b, []byte("\n"))
	return b
}
