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

// Package segmentsend sends requests exactly as Segment's webhook destinations do, for
// `kubectl swh send` and the demo: compact JSON as JavaScript's JSON.stringify writes it, one event
// or an Actions batch (a bare array), signed with X-Signature (HMAC-SHA1 over the body, or over
// element 0's bytes for a batch) or X-Segment-Signature (HMAC-SHA1 over the whole body), or
// carrying a bearer token.
package segmentsend

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Signature headers.
const (
	// XSignature is Segment's classic header: HMAC over the body, or element 0 of a batch.
	XSignature = "X-Signature"
	// XSegmentSignature is the Actions Webhook's opt-in header: HMAC over the whole body.
	XSegmentSignature = "X-Segment-Signature"
)

// Types are the sample kinds Sample knows: the Segment Spec calls, and an Actions batch.
var Types = []string{"track", "identify", "page", "screen", "group", "alias", "batch"}

// Auth says how a request proves it comes from Segment. With neither Secret nor BearerToken
// set, it carries no proof (authentication mode None).
type Auth struct {
	// Secret is the destination's Shared Secret: the request is signed with it.
	Secret []byte
	// SignatureHeader is XSignature (the default when empty) or XSegmentSignature.
	SignatureHeader string
	// BearerToken is sent as "Authorization: Bearer <token>" (Extensible Webhook).
	BearerToken string
}

// Request is one request as Segment would send it.
type Request struct {
	Method string
	Body   []byte
	Header http.Header
	// Events are the raw bytes of each event in Body, in order.
	Events [][]byte
}

// Sign computes a signature header value: lowercase hex HMAC-SHA1 of data with the secret.
func Sign(secret, data []byte) string {
	mac := hmac.New(sha1.New, secret)
	mac.Write(data)
	return hex.EncodeToString(mac.Sum(nil))
}

// NewRequest builds the request for one event (a JSON object) or, with batch set, for an
// Actions batch of the given events, and authenticates it.
func NewRequest(events [][]byte, batch bool, auth Auth) (*Request, error) {
	if len(events) == 0 || (!batch && len(events) != 1) {
		return nil, fmt.Errorf("want one event, or a batch of one or more, got %d", len(events))
	}
	body := events[0]
	if batch {
		// JSON.stringify of an array: its elements' text joined by commas, no spaces.
		body = slices.Concat([]byte("["), bytes.Join(events, []byte(",")), []byte("]"))
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "Segment (Actions)")
	if len(auth.Secret) > 0 {
		switch auth.SignatureHeader {
		case "", XSignature:
			// Segment signs only element 0 of a batch, exactly as it appears in the body.
			h.Set(XSignature, Sign(auth.Secret, events[0]))
		case XSegmentSignature:
			h.Set(XSegmentSignature, Sign(auth.Secret, body))
		default:
			return nil, fmt.Errorf("unknown signature header %q (want %s or %s)", auth.SignatureHeader, XSignature, XSegmentSignature)
		}
	}
	if auth.BearerToken != "" {
		h.Set("Authorization", "Bearer "+auth.BearerToken)
	}
	return &Request{Method: http.MethodPost, Body: body, Header: h, Events: events}, nil
}

// Response is the receiver's answer.
type Response struct {
	Code   int
	Header http.Header
	Body   string
}

// Send posts the request to url. A transport error (no connection, timeout) is returned as an
// error; any HTTP answer is a Response.
func Send(ctx context.Context, c *http.Client, url string, r *Request) (*Response, error) {
	req, err := http.NewRequestWithContext(ctx, r.Method, url, bytes.NewReader(r.Body))
	if err != nil {
		return nil, err
	}
	req.Header = r.Header.Clone()
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	return &Response{Code: resp.StatusCode, Header: resp.Header, Body: strings.TrimSpace(string(body))}, nil
}

// Marshal writes v as JSON.stringify does: compact, no HTML escaping (Go's json.Marshal turns <,
// > and & into \u003c ...), non-ASCII text as UTF-8. Struct fields keep their order.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Event is a Segment Spec event in the field order of Segment's own payloads.
type Event struct {
	AnonymousID  string         `json:"anonymousId,omitempty"`
	Context      map[string]any `json:"context,omitempty"`
	Event        string         `json:"event,omitempty"`
	GroupID      string         `json:"groupId,omitempty"`
	Integrations map[string]any `json:"integrations"`
	MessageID    string         `json:"messageId"`
	Name         string         `json:"name,omitempty"`
	PreviousID   string         `json:"previousId,omitempty"`
	Properties   map[string]any `json:"properties,omitempty"`
	ReceivedAt   string         `json:"receivedAt"`
	SentAt       string         `json:"sentAt"`
	Timestamp    string         `json:"timestamp"`
	Traits       map[string]any `json:"traits,omitempty"`
	Type         string         `json:"type"`
	UserID       string         `json:"userId,omitempty"`
}

// SampleEvents returns the events of a sample request of the given kind (one of Types): one
// valid Segment Spec event (a track event is an "Order Completed"), or for "batch" an identify, a
// track "Product Viewed" and a page. Each has a fresh messageId and text with non-ASCII
// characters, so signing on raw UTF-8 bytes is exercised.
func SampleEvents(kind string, now time.Time) ([][]byte, error) {
	var events []Event
	switch {
	case kind == "batch":
		viewed := sample("track", now)
		viewed.Event, viewed.Properties = "Product Viewed", map[string]any{"product": "Crème brûlée"}
		events = []Event{sample("identify", now), viewed, sample("page", now)}
	case slices.Contains(Types, kind):
		events = []Event{sample(kind, now)}
	default:
		return nil, fmt.Errorf("unknown type %q (want one of %s)", kind, strings.Join(Types, ", "))
	}
	var out [][]byte
	for _, e := range events {
		b, err := Marshal(e)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

func sample(kind string, now time.Time) Event {
	ts := now.UTC().Format("2006-01-02T15:04:05.000Z")
	e := Event{
		AnonymousID: "anon-7c1f",
		Context: map[string]any{
			"campaign": map[string]any{"name": "Frühlingsaktion"},
			"ip":       "203.0.113.7",
			"library":  map[string]any{"name": "kubectl-swh", "version": "1"},
			"locale":   "de-CH",
		},
		Integrations: map[string]any{},
		MessageID:    "swh-test-" + randomHex(8),
		ReceivedAt:   ts,
		SentAt:       ts,
		Timestamp:    ts,
		Type:         kind,
		UserID:       "user-42",
	}
	switch kind {
	case "track":
		e.Event = "Order Completed"
		e.Properties = map[string]any{"currency": "CHF", "product": "Crème brûlée", "revenue": 42.5}
	case "identify":
		e.Traits = map[string]any{"city": "Zürich", "name": "Zoë Müller", "plan": "pro"}
	case "page", "screen":
		e.Name = "Préférences"
		e.Properties = map[string]any{"title": "Préférences — Konto"}
	case "group":
		e.GroupID = "group-9"
		e.Traits = map[string]any{"name": "Bäckerei Hürlimann AG"}
	case "alias":
		e.PreviousID = e.AnonymousID
	}
	return e
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
