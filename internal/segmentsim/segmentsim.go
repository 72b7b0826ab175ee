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

// Package segmentsim sends webhook traffic as Segment does, for load and fault tests: many
// requests with unique messageIds, single events and Actions batches, each retried on timeouts,
// 5xx except 501, 408, 423 and 429 with randomized exponential backoff, then given up after a
// (compressed) four hours.
package segmentsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segment-webhook-operator/segment-webhook-operator/internal/segmentsend"
)

// Request is one webhook call as Segment makes it: the same bytes on every retry.
type Request struct {
	Body  []byte
	First []byte // for a batch, the exact bytes of element 0 (what Segment Actions signs)
	IDs   []string
}

// MakeRequests builds requests carrying n events with unique messageIds: about half are single
// events, the rest batches of 2-20 (some with whitespace around the elements).
func MakeRequests(prefix string, n int, rng *rand.Rand) []Request {
	var reqs []Request
	for i := 0; i < n; {
		size := 1
		if rng.IntN(2) == 1 {
			size = 2 + rng.IntN(19)
		}
		size = min(size, n-i)
		var events []string
		var ids []string
		for j := range size {
			id := fmt.Sprintf("%s-%06d", prefix, i+j)
			ids = append(ids, id)
			events = append(events, Event(id, i+j))
		}
		i += size
		if size == 1 && rng.IntN(4) > 0 {
			reqs = append(reqs, Request{Body: []byte(events[0]), IDs: ids})
			continue
		}
		sep, open, closing := ",", "[", "]"
		if rng.IntN(3) == 0 {
			sep, open, closing = ",\n  ", "[\n  ", "\n]\n"
		}
		reqs = append(reqs, Request{
			Body:  []byte(open + strings.Join(events, sep) + closing),
			First: []byte(events[0]),
			IDs:   ids,
		})
	}
	return reqs
}

// Event renders a valid (Strict) Segment event of a type chosen by i, compact as JSON.stringify
// writes it: non-ASCII text (page and screen names) stays raw UTF-8.
func Event(id string, i int) string {
	ts := `"timestamp":"2026-01-02T03:04:05.678Z"`
	switch i % 6 {
	case 0:
		return fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"u-%d","messageId":%q,%s,"properties":{"total":%d.5,"currency":"EUR"},"context":{"ip":"203.0.113.9"}}`, i%97, id, ts, i)
	case 1:
		return fmt.Sprintf(`{"type":"identify","anonymousId":"a-%d","messageId":%q,%s,"traits":{"email":"user%d@example.com"}}`, i, id, ts, i)
	case 2:
		return fmt.Sprintf(`{"type":"page","userId":"u-%d","name":"Accueil – café ☕","messageId":%q,"properties":{"path":"/"}}`, i%97, id)
	case 3:
		return fmt.Sprintf(`{"type":"group","userId":"u-%d","groupId":"g-%d","messageId":%q,"traits":{"plan":"pro"}}`, i%97, i%7, id)
	case 4:
		return fmt.Sprintf(`{"type":"alias","previousId":"a-%d","userId":"u-%d","messageId":%q,%s}`, i, i%97, id, ts)
	default:
		return fmt.Sprintf(`{"type":"screen","anonymousId":"a-%d","name":"Warenkorb (Größe M) 購入","messageId":%q,"context":{"locale":"en-US"}}`, i, id)
	}
}

// Sign is the X-Signature of b under secret.
func Sign(secret string, b []byte) string { return segmentsend.Sign([]byte(secret), b) }

// Config is Segment's retry behaviour, compressed in time.
type Config struct {
	Concurrency    int           // attempts in flight at once (backoff sleeps do not count)
	AttemptTimeout time.Duration // Segment's documented 5 s
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	GiveUpAfter    time.Duration // Segment retries for 4 h; compressed to this
}

// Outcome is how one request ended.
type Outcome struct {
	Acked      bool
	AckStart   time.Time // when the attempt answered 2xx was sent
	Attempts   int
	Rejected   int // a non-retryable status, if any
	LastErr    string
	E2ELatency time.Duration
}

// Sender behaves like Segment: it retries timeouts, network errors, 5xx except 501, 408, 423 and
// 429 with randomized exponential backoff, does not retry other 4xx, and gives up after a
// bounded time. Each attempt is signed with the sender's current secret.
type Sender struct {
	cfg    Config
	url    string
	client *http.Client
	slots  chan struct{}

	mu       sync.Mutex
	secrets  []string
	current  int
	inFlight []int // attempts in flight, by secret index

	// What the attempts met, counted as they end.
	Attempts, OK, C503, C429, C4xx, Other, NetErrs, Timeouts atomic.Int64
	MaxLatency                                               atomic.Int64
}

func NewSender(url, secret string, cfg Config) *Sender {
	return &Sender{
		cfg: cfg, url: url,
		client: &http.Client{
			Transport: &http.Transport{
				MaxIdleConns: cfg.Concurrency, MaxIdleConnsPerHost: cfg.Concurrency,
				DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			},
			Timeout: cfg.AttemptTimeout,
		},
		slots:    make(chan struct{}, cfg.Concurrency),
		secrets:  []string{secret},
		inFlight: []int{0},
	}
}

// Rotate makes later attempts sign with secret.
func (s *Sender) Rotate(secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets = append(s.secrets, secret)
	s.inFlight = append(s.inFlight, 0)
	s.current = len(s.secrets) - 1
}

// InFlightWithOlderSecrets counts attempts still in flight signed with a retired secret.
func (s *Sender) InFlightWithOlderSecrets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for i := 0; i < s.current; i++ {
		n += s.inFlight[i]
	}
	return n
}

// Run sends reqs spread evenly over pace, each request in its own goroutine with its own retry
// loop, and returns how each ended.
func (s *Sender) Run(reqs []Request, pace time.Duration) []Outcome {
	out := make([]Outcome, len(reqs))
	var wg sync.WaitGroup
	start := time.Now()
	for i := range reqs {
		if wait := time.Until(start.Add(pace * time.Duration(i) / time.Duration(len(reqs)))); wait > 0 {
			time.Sleep(wait)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = s.Send(reqs[i])
		}()
	}
	wg.Wait()
	return out
}

func (s *Sender) Send(req Request) Outcome {
	var o Outcome
	first := time.Now()
	backoff := s.cfg.InitialBackoff
	for {
		o.Attempts++
		attemptStart, code, err := s.attempt(req)
		switch {
		case err == nil && code >= 200 && code < 300:
			o.Acked, o.AckStart, o.E2ELatency = true, attemptStart, time.Since(first)
			return o
		case err == nil && !Retryable(code):
			o.Rejected, o.LastErr = code, fmt.Sprintf("status %d", code)
			return o
		case err != nil:
			o.LastErr = err.Error()
		default:
			o.LastErr = fmt.Sprintf("status %d", code)
		}
		if time.Since(first) > s.cfg.GiveUpAfter {
			return o
		}
		// Randomized exponential backoff: uniform in [d/2, 3d/2].
		time.Sleep(backoff/2 + rand.N(backoff))
		backoff = min(backoff*2, s.cfg.MaxBackoff)
	}
}

func Retryable(code int) bool {
	switch {
	case code == http.StatusNotImplemented:
		return false
	case code >= 500, code == http.StatusRequestTimeout, code == http.StatusLocked, code == http.StatusTooManyRequests:
		return true
	}
	return false
}

// attempt sends req once and returns when it was sent (after waiting for a slot).
func (s *Sender) attempt(req Request) (time.Time, int, error) {
	s.slots <- struct{}{}
	defer func() { <-s.slots }()

	s.mu.Lock()
	idx := s.current
	secret := s.secrets[idx]
	s.inFlight[idx]++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight[idx]--
		s.mu.Unlock()
	}()

	signed := req.Body
	if req.First != nil {
		signed = req.First
	}
	httpReq, err := http.NewRequestWithContext(context.Background(), http.MethodPost, s.url, bytes.NewReader(req.Body))
	if err != nil {
		return time.Time{}, 0, err
	}
	httpReq.Header.Set("Content-Type", "application/json")
	httpReq.Header.Set("User-Agent", "Segment (Actions)")
	httpReq.Header.Set("X-Signature", Sign(secret, signed))
	s.Attempts.Add(1)
	start := time.Now()
	resp, err := s.client.Do(httpReq)
	latency := time.Since(start)
	for {
		prev := s.MaxLatency.Load()
		if int64(latency) <= prev || s.MaxLatency.CompareAndSwap(prev, int64(latency)) {
			break
		}
	}
	if err != nil {
		s.NetErrs.Add(1)
		var nerr net.Error
		if errors.As(err, &nerr) && nerr.Timeout() {
			s.Timeouts.Add(1)
		}
		return start, 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		s.OK.Add(1)
	case c == http.StatusServiceUnavailable:
		s.C503.Add(1)
	case c == http.StatusTooManyRequests:
		s.C429.Add(1)
	case c >= 400 && c < 500:
		s.C4xx.Add(1)
	default:
		s.Other.Add(1)
	}
	return start, resp.StatusCode, nil
}
