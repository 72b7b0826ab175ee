/*
Copyright 2026 The segment-webhook-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package segmentsend

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var secret = []byte("s3cr3t-ü")

// X-Signature is Segment's: HMAC-SHA1 of the body, or of element 0's bytes for a batch. That the
// receiver accepts it is tested end to end in cmd/kubectl-swh.
func TestXSignatureSingleAndBatch(t *testing.T) {
	for _, kind := range Types {
		events, err := SampleEvents(kind, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		req, err := NewRequest(events, kind == "batch", Auth{Secret: secret})
		if err != nil {
			t.Fatal(err)
		}
		sig := req.Header.Get(XSignature)
		if kind == "batch" {
			// Element 0's bytes, as they appear in the body, carry the signature.
			if !bytes.HasPrefix(req.Body, append([]byte("["), events[0]...)) {
				t.Fatalf("batch body does not start with element 0's bytes: %.80s", req.Body)
			}
			if sig != Sign(secret, events[0]) {
				t.Errorf("batch: X-Signature is not the HMAC of element 0")
			}
		}
		signed := req.Body
		if kind == "batch" {
			signed = events[0]
		}
		if sig != hmacHex(secret, signed) {
			t.Errorf("%s: X-Signature is not the HMAC-SHA1 of the signed bytes", kind)
		}
		if sig == hmacHex([]byte("other"), signed) {
			t.Errorf("%s: a wrong secret gives the same signature", kind)
		}
		if req.Header.Get("Authorization") != "" || req.Header.Get(XSegmentSignature) != "" {
			t.Errorf("%s: unexpected headers %v", kind, req.Header)
		}
	}
}

func TestXSegmentSignatureCoversTheWholeBody(t *testing.T) {
	events, err := SampleEvents("batch", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req, err := NewRequest(events, true, Auth{Secret: secret, SignatureHeader: XSegmentSignature})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := req.Header.Get(XSegmentSignature), hmacHex(secret, req.Body); got != want {
		t.Errorf("X-Segment-Signature %s, want HMAC-SHA1 over the whole body %s", got, want)
	}
	if req.Header.Get(XSignature) != "" {
		t.Error("X-Signature is sent too; Segment sends only one of them")
	}
	if _, err := NewRequest(events, true, Auth{Secret: secret, SignatureHeader: "X-Other"}); err == nil {
		t.Error("an unknown signature header was accepted")
	}
}

func TestBearerAndNone(t *testing.T) {
	events, _ := SampleEvents("identify", time.Now())
	req, err := NewRequest(events, false, Auth{BearerToken: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	if req.Header.Get("Authorization") != "Bearer tok" || req.Header.Get(XSignature) != "" {
		t.Errorf("bearer headers %v", req.Header)
	}
	req, err = NewRequest(events, false, Auth{})
	if err != nil {
		t.Fatal(err)
	}
	if req.Header.Get("Authorization") != "" || req.Header.Get(XSignature) != "" {
		t.Errorf("mode None sends credentials: %v", req.Header)
	}
}

// Bodies are what JSON.stringify writes: compact, UTF-8 text as is, no HTML escapes; each is a
// valid Segment Spec event for its type.
func TestSampleBodiesAreCompactSpecEvents(t *testing.T) {
	required := map[string][]string{
		"track": {"event"}, "group": {"groupId"}, "alias": {"previousId", "userId"},
		"identify": {"traits"}, "page": {"name"}, "screen": {"name"},
	}
	for _, kind := range Types {
		events, err := SampleEvents(kind, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		req, err := NewRequest(events, kind == "batch", Auth{})
		if err != nil {
			t.Fatal(err)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, req.Body); err != nil {
			t.Fatalf("%s: invalid JSON: %v", kind, err)
		}
		if !bytes.Equal(compact.Bytes(), req.Body) {
			t.Errorf("%s: body is not compact", kind)
		}
		if bytes.Contains(req.Body, []byte(`\u`)) || !utf8.Valid(req.Body) || isASCII(req.Body) {
			t.Errorf("%s: want raw non-ASCII UTF-8 text and no \\u escapes: %s", kind, req.Body)
		}
		for _, e := range events {
			var m map[string]any
			if err := json.Unmarshal(e, &m); err != nil {
				t.Fatal(err)
			}
			typ, _ := m["type"].(string)
			if typ == "" || m["messageId"] == "" || (m["userId"] == nil && m["anonymousId"] == nil) {
				t.Errorf("%s: missing type, messageId or user: %s", kind, e)
			}
			if _, err := time.Parse(time.RFC3339, m["timestamp"].(string)); err != nil {
				t.Errorf("%s: timestamp: %v", kind, err)
			}
			for _, f := range required[typ] {
				if m[f] == nil {
					t.Errorf("%s event lacks %s", typ, f)
				}
			}
		}
	}
	a, _ := SampleEvents("track", time.Now())
	b, _ := SampleEvents("track", time.Now())
	if bytes.Equal(a[0], b[0]) {
		t.Error("two samples share a messageId: the receiver's dedupe would skip the second")
	}
	if _, err := SampleEvents("delete", time.Now()); err == nil {
		t.Error("an unknown sample type was accepted")
	}
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

func TestSendPostsExactlyTheRequest(t *testing.T) {
	type got struct {
		method string
		header http.Header
		body   []byte
	}
	arrived := make(chan got, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		arrived <- got{r.Method, r.Header.Clone(), body}
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":"delivery failed; retry later"}`+"\n")
	}))
	defer srv.Close()
	events, _ := SampleEvents("batch", time.Now())
	req, _ := NewRequest(events, true, Auth{Secret: secret})
	resp, err := Send(context.Background(), srv.Client(), srv.URL+"/webhook", req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Code != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "5" ||
		resp.Body != `{"error":"delivery failed; retry later"}` {
		t.Errorf("response %+v", resp)
	}
	g := <-arrived
	if g.method != http.MethodPost || !bytes.Equal(g.body, req.Body) {
		t.Errorf("server got %s %q, want POST of the request body", g.method, g.body)
	}
	for _, h := range []string{"Content-Type", "User-Agent", XSignature} {
		if g.header.Get(h) != req.Header.Get(h) {
			t.Errorf("header %s: got %q, want %q", h, g.header.Get(h), req.Header.Get(h))
		}
	}
	if !strings.HasPrefix(g.header.Get("User-Agent"), "Segment") {
		t.Errorf("User-Agent %q", g.header.Get("User-Agent"))
	}
}

// hmacHex is computed here independently of the package's Sign.
func hmacHex(key, data []byte) string {
	mac := hmac.New(sha1.New, key)
	mac.Write(data)
	return hex.EncodeToString(mac.Sum(nil))
}
