package receiver

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// Signature headers: both carry the lowercase hex HMAC-SHA1 Segment computes with the shared
// secret. X-Signature covers the body, or for an Actions batch only its first element;
// X-Segment-Signature (the Actions Webhook setting "Use X-Segment-Signature Header") covers
// JSON.stringify(payload), which is exactly the body.
const (
	SignatureHeader        = "X-Signature"
	SegmentSignatureHeader = "X-Segment-Signature"
)

// authenticator checks that a request comes from Segment. It is immutable once built (its pools
// are safe for concurrent use), so a pipeline can share it between requests without locks.
type authenticator struct {
	mode     string
	fullBody bool // refuse signatures over a batch's first element only
	// macs holds, per HMAC secret, HMAC-SHA1 states keyed with it: keying one costs allocations
	// and two SHA-1 blocks, on every request otherwise.
	macs []*sync.Pool
	// tokenDigests are the sha256 digests of the bearer tokens.
	tokenDigests [][]byte
}

func newAuthenticator(a config.Authentication, files map[string][]byte) (*authenticator, error) {
	auth := &authenticator{mode: a.Mode, fullBody: a.Signature == config.SignatureFullBody}
	for _, path := range a.SecretFiles {
		secret := files[path]
		if len(secret) == 0 {
			// An empty HMAC key or token would let anyone who guesses that in.
			return nil, fmt.Errorf("authentication secret file %s is empty", path)
		}
		if a.Mode == config.AuthBearer {
			digest := sha256.Sum256(secret)
			auth.tokenDigests = append(auth.tokenDigests, digest[:])
			continue
		}
		auth.macs = append(auth.macs, &sync.Pool{New: func() any { return hmac.New(sha1.New, secret) }})
	}
	return auth, nil
}

// precheck refuses, before the body is read, requests that cannot authenticate: in HMAC mode no
// signature header that could be an HMAC-SHA1 (40 hex digits), or a wrong bearer token. It
// reports whether the request may go on.
func (a *authenticator) precheck(h http.Header) bool {
	switch a.mode {
	case config.AuthNone:
		return true
	case config.AuthHMAC:
		return wellFormed(h.Get(SignatureHeader)) || wellFormed(h.Get(SegmentSignatureHeader))
	case config.AuthBearer:
		return a.verifyBearer(h.Get("Authorization"))
	}
	return false
}

// verifyBody completes authentication once the body is read (HMAC mode only). Either header
// may sign the whole body. In mode Any, X-Signature may instead sign only a batch's first
// element: firstElement locates its exact bytes in the body, and is called only then.
//
// That first-element rule is Segment's, and it leaves the rest of a batch unsigned: whoever has
// seen one signed batch can append forged events after element 0. FullBody closes that hole.
func (a *authenticator) verifyBody(h http.Header, body []byte, firstElement func() []byte) bool {
	if a.mode != config.AuthHMAC {
		return true
	}
	for _, header := range []string{SegmentSignatureHeader, SignatureHeader} {
		if a.signedBy(h.Get(header), body) {
			return true
		}
	}
	if a.fullBody {
		return false
	}
	signature := h.Get(SignatureHeader)
	if signature == "" {
		return false
	}
	first := firstElement()
	return first != nil && a.signedBy(signature, first)
}

// wellFormed reports whether signature can be a hex HMAC-SHA1, as signedBy reads it.
func wellFormed(signature string) bool {
	signature = strings.TrimSpace(signature)
	if len(signature) != hex.EncodedLen(sha1.Size) {
		return false
	}
	for i := range len(signature) {
		if c := signature[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// signedBy reports whether signature (hex HMAC-SHA1) was made over data with one of the secrets.
// Every secret is tried, so the time taken does not tell which one matched.
func (a *authenticator) signedBy(signature string, data []byte) bool {
	if signature == "" {
		return false
	}
	signature = strings.TrimSpace(signature)
	var want, got [sha1.Size]byte
	if len(signature) != hex.EncodedLen(sha1.Size) {
		return false
	}
	if _, err := hex.Decode(want[:], []byte(signature)); err != nil {
		return false
	}
	match := false
	for _, macs := range a.macs {
		mac := macs.Get().(hash.Hash)
		mac.Reset()
		mac.Write(data)
		if hmac.Equal(want[:], mac.Sum(got[:0])) {
			match = true
		}
		macs.Put(mac)
	}
	return match
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
	for _, want := range a.tokenDigests {
		if hmac.Equal(digest[:], want) {
			match = true // no early return: time does not depend on which secret matched
		}
	}
	return match
}

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
