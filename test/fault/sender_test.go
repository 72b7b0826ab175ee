package fault

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type atomicCounter struct{ v atomic.Int64 }

func (c *atomicCounter) add(n int64) { c.v.Add(n) }
func (c *atomicCounter) load() int64 { return c.v.Load() }

type atomicFloat struct{ v atomic.Uint64 }

func (f *atomicFloat) store(x float64) { f.v.Store(math.Float64bits(x)) }
func (f *atomicFloat) load() float64   { return math.Float64frombits(f.v.Load()) }

type atomicDur struct{ v atomic.Int64 }

func (d *atomicDur) store(x time.Duration) { d.v.Store(int64(x)) }
func (d *atomicDur) load() time.Duration   { return time.Duration(d.v.Load()) }

func randFloat() float64 { return rand.Float64() }

// segmentRequest is one webhook call as Segment makes it: the same bytes on every retry.
type segmentRequest struct {
	body  []byte
	first []byte // for a batch, the exact bytes of element 0 (what Segment Actions signs)
	ids   []string
}

// makeRequests builds requests carrying n events with unique messageIds: about half are single
// events, the rest batches of 2-20 (some with whitespace around the elements).
func makeRequests(prefix string, n int, rng *rand.Rand) []segmentRequest {
	var reqs []segmentRequest
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
			events = append(events, event(id, i+j))
		}
		i += size
		if size == 1 && rng.IntN(4) > 0 {
			reqs = append(reqs, segmentRequest{body: []byte(events[0]), ids: ids})
			continue
		}
		sep, open, closing := ",", "[", "]"
		if rng.IntN(3) == 0 {
			sep, open, closing = ",\n  ", "[\n  ", "\n]\n"
		}
		reqs = append(reqs, segmentRequest{
			body:  []byte(open + strings.Join(events, sep) + closing),
			first: []byte(events[0]),
			ids:   ids,
		})
	}
	return reqs
}

// event renders a valid (Strict) Segment event of a type chosen by i.
func event(id string, i int) string {
	ts := `"timestamp":"2026-01-02T03:04:05.678Z"`
	switch i % 6 {
	case 0:
		return fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"u-%d","messageId":%q,%s,"properties":{"total":%d.5,"currency":"EUR"},"context":{"ip":"203.0.113.9"}}`, i%97, id, ts, i)
	case 1:
		return fmt.Sprintf(`{"type":"identify","anonymousId":"a-%d","messageId":%q,%s,"traits":{"email":"user%d@example.com"}}`, i, id, ts, i)
	case 2:
		return fmt.Sprintf(`{"type":"page","userId":"u-%d","name":"Home","messageId":%q,"properties":{"path":"/"}}`, i%97, id)
	case 3:
		return fmt.Sprintf(`{"type":"group","userId":"u-%d","groupId":"g-%d","messageId":%q,"traits":{"plan":"pro"}}`, i%97, i%7, id)
	case 4:
		return fmt.Sprintf(`{"type":"alias","previousId":"a-%d","userId":"u-%d","messageId":%q,%s}`, i, i%97, id, ts)
	default:
		return fmt.Sprintf(`{"type":"screen","anonymousId":"a-%d","name":"Cart","messageId":%q,"context":{"locale":"en-US"}}`, i, id)
	}
}

func hmacHex(secret string, b []byte) string {
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write(b)
	return hex.EncodeToString(mac.Sum(nil))
}

// senderConfig is Segment's retry behaviour, compressed in time.
type senderConfig struct {
	concurrency    int           // attempts in flight at once (backoff sleeps do not count)
	attemptTimeout time.Duration // Segment's documented 5 s
	initialBackoff time.Duration
	maxBackoff     time.Duration
	giveUpAfter    time.Duration // Segment retries for 4 h; compressed to this
}

// outcome is how one request ended.
type outcome struct {
	acked      bool
	ackStart   time.Time // when the attempt answered 2xx was sent
	attempts   int
	rejected   int // a non-retryable status, if any
	lastErr    string
	e2eLatency time.Duration
}

// sender behaves like Segment: it retries timeouts, network errors, 5xx except 501, 408, 423 and
// 429 with randomized exponential backoff, does not retry other 4xx, and gives up after a
// bounded time. Each attempt is signed with the sender's current secret.
type sender struct {
	cfg    senderConfig
	url    string
	client *http.Client
	slots  chan struct{}

	mu       sync.Mutex
	secrets  []string
	current  int
	inFlight []int // attempts in flight, by secret index

	attempts, ok, c503, c429, c4xx, other, netErrs, timeouts atomicCounter
	maxLatency                                               atomic.Int64
}

func newSender(url, secret string, cfg senderConfig) *sender {
	return &sender{
		cfg: cfg, url: url,
		client: &http.Client{
			Transport: &http.Transport{
				MaxIdleConns: cfg.concurrency, MaxIdleConnsPerHost: cfg.concurrency,
				DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			},
			Timeout: cfg.attemptTimeout,
		},
		slots:    make(chan struct{}, cfg.concurrency),
		secrets:  []string{secret},
		inFlight: []int{0},
	}
}

// rotate makes later attempts sign with secret.
func (s *sender) rotate(secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets = append(s.secrets, secret)
	s.inFlight = append(s.inFlight, 0)
	s.current = len(s.secrets) - 1
}

// inFlightWithOlderSecrets counts attempts still in flight signed with a retired secret.
func (s *sender) inFlightWithOlderSecrets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for i := 0; i < s.current; i++ {
		n += s.inFlight[i]
	}
	return n
}

// run sends reqs spread evenly over pace, each request in its own goroutine with its own retry
// loop, and returns how each ended.
func (s *sender) run(reqs []segmentRequest, pace time.Duration) []outcome {
	out := make([]outcome, len(reqs))
	var wg sync.WaitGroup
	start := time.Now()
	for i := range reqs {
		if wait := time.Until(start.Add(pace * time.Duration(i) / time.Duration(len(reqs)))); wait > 0 {
			time.Sleep(wait)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = s.send(reqs[i])
		}()
	}
	wg.Wait()
	return out
}

func (s *sender) send(req segmentRequest) outcome {
	var o outcome
	first := time.Now()
	backoff := s.cfg.initialBackoff
	for {
		o.attempts++
		attemptStart, code, err := s.attempt(req)
		switch {
		case err == nil && code >= 200 && code < 300:
			o.acked, o.ackStart, o.e2eLatency = true, attemptStart, time.Since(first)
			return o
		case err == nil && !retryable(code):
			o.rejected, o.lastErr = code, fmt.Sprintf("status %d", code)
			return o
		case err != nil:
			o.lastErr = err.Error()
		default:
			o.lastErr = fmt.Sprintf("status %d", code)
		}
		if time.Since(first) > s.cfg.giveUpAfter {
			return o
		}
		// Randomized exponential backoff: uniform in [d/2, 3d/2].
		time.Sleep(backoff/2 + rand.N(backoff))
		backoff = min(backoff*2, s.cfg.maxBackoff)
	}
}

func retryable(code int) bool {
	switch {
	case code == http.StatusNotImplemented:
		return false
	case code >= 500, code == http.StatusRequestTimeout, code == http.StatusLocked, code == http.StatusTooManyRequests:
		return true
	}
	return false
}

// attempt sends req once and returns when it was sent (after waiting for a slot).
func (s *sender) attempt(req segmentRequest) (time.Time, int, error) {
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

	signed := req.body
	if req.first != nil {
		signed = req.first
	}
	httpReq, err := http.NewRequestWithContext(context.Background(), http.MethodPost, s.url, strings.NewReader(string(req.body)))
	if err != nil {
		return time.Time{}, 0, err
	}
	httpReq.Header.Set("Content-Type", "application/json")
	httpReq.Header.Set("User-Agent", "Segment (Actions)")
	httpReq.Header.Set("X-Signature", hmacHex(secret, signed))
	s.attempts.add(1)
	start := time.Now()
	resp, err := s.client.Do(httpReq)
	latency := time.Since(start)
	for {
		prev := s.maxLatency.Load()
		if int64(latency) <= prev || s.maxLatency.CompareAndSwap(prev, int64(latency)) {
			break
		}
	}
	if err != nil {
		s.netErrs.add(1)
		var nerr net.Error
		if errors.As(err, &nerr) && nerr.Timeout() {
			s.timeouts.add(1)
		}
		return start, 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		s.ok.add(1)
	case c == http.StatusServiceUnavailable:
		s.c503.add(1)
	case c == http.StatusTooManyRequests:
		s.c429.add(1)
	case c >= 400 && c < 500:
		s.c4xx.add(1)
	default:
		s.other.add(1)
	}
	return start, resp.StatusCode, nil
}
