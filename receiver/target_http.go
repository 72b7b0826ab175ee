package receiver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// HTTPHeaderPlanViolation carries the tracking plan's violations in format segment.
const HTTPHeaderPlanViolation = "X-Segment-Tracking-Plan-Violation"

// httpAttributeHeaders carry event attributes in format segment (cloudevents sends every
// attribute as ce-<name>).
var httpAttributeHeaders = attributeHeaders{violationAttribute: HTTPHeaderPlanViolation}

// httpTarget POSTs (or PUTs/PATCHes) one request per event, or with batch set JSON arrays of
// events. Requests run concurrently, at most concurrency at once over all webhook requests.
type httpTarget struct {
	client   *http.Client
	url      string
	method   string
	format   string
	ceSource string
	headers  http.Header
	batch    *config.HTTPBatch
	slots    chan struct{}
}

func newHTTPTarget(c config.HTTPTarget, env targetEnv) (*httpTarget, error) {
	headers := http.Header{}
	for name, value := range c.Headers {
		headers.Set(name, value)
	}
	for name, path := range c.HeaderFiles {
		value, ok := env.files[path]
		if !ok {
			return nil, fmt.Errorf("header file %s was not read", path)
		}
		if !httpguts.ValidHeaderFieldValue(string(value)) {
			// The client would refuse every request; fail the (re)load instead.
			return nil, fmt.Errorf("header file %s holds a control character such as a line break", path)
		}
		headers.Set(name, string(value))
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.DialContext = (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	// Requests fan out concurrently; the default of 2 idle connections would churn.
	transport.MaxIdleConnsPerHost = c.Concurrency
	transport.MaxIdleConns = max(c.Concurrency, 100)
	return &httpTarget{
		client: &http.Client{
			Transport: transport,
			// A redirect on a POST is a misconfigured URL; following it could turn it into a GET.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		url:      c.URL,
		method:   c.Method,
		format:   c.Format,
		ceSource: cloudEventsSource(env.source),
		headers:  headers,
		batch:    c.Batch,
		slots:    make(chan struct{}, c.Concurrency),
	}, nil
}

// cloudEventsSource makes config.Source ("<namespace>/<name>") a URI-reference that says who
// produced the event.
func cloudEventsSource(source string) string {
	if u, err := url.Parse(source); err == nil && u.IsAbs() {
		return source
	}
	if source == "" {
		return "segment-webhook-operator"
	}
	return "segment-webhook-operator/" + (&url.URL{Path: source}).EscapedPath()
}

// Deliver sends every event, or every chunk of events with batch set, in its own request, as
// many at once as the concurrency allows.
func (t *httpTarget) Deliver(ctx context.Context, events []Event) []error {
	outcomes := make([]error, len(events))
	var wg sync.WaitGroup
	for lo := 0; lo < len(events); {
		hi := lo + 1
		if t.batch != nil {
			hi = t.chunkEnd(events, lo)
		}
		select {
		case t.slots <- struct{}{}:
		case <-ctx.Done():
			fillErr(outcomes[lo:], fmt.Errorf("waiting for a free connection: %w", context.Cause(ctx)))
			wg.Wait()
			return outcomes
		}
		if lo == 0 && hi == len(events) {
			t.send(ctx, events, outcomes) // a single request needs no goroutine
			break
		}
		wg.Add(1)
		go func(chunk []Event, out []error) {
			defer wg.Done()
			t.send(ctx, chunk, out)
		}(events[lo:hi], outcomes[lo:hi])
		lo = hi
	}
	wg.Wait()
	return outcomes
}

// send posts a chunk on the connection slot the caller took, and gives every event of it the
// request's outcome.
func (t *httpTarget) send(ctx context.Context, chunk []Event, outcomes []error) {
	defer func() { <-t.slots }()
	fillErr(outcomes, t.post(ctx, chunk))
}

// chunkEnd returns the end of the chunk starting at lo: at most batch.maxEvents events and,
// unless a single event is larger, at most batch.maxBytes bytes of JSON array. A chunk's events
// have the same attributes (such as a tracking plan violation), which its headers carry.
func (t *httpTarget) chunkEnd(events []Event, lo int) int {
	size := int64(1 + len(events[lo].Raw) + 1)
	hi := lo + 1
	for hi < len(events) && hi-lo < t.batch.MaxEvents && size+int64(len(events[hi].Raw))+1 <= t.batch.MaxBytes &&
		maps.Equal(events[hi].Attributes, events[lo].Attributes) {
		size += int64(len(events[hi].Raw)) + 1
		hi++
	}
	return hi
}

// post sends one event as itself, or a chunk as a JSON array in Segment's batch shape, so that
// one receiver can feed another.
func (t *httpTarget) post(ctx context.Context, events []Event) error {
	var key string
	if t.batch != nil {
		key = chunkKey(events)
	} else {
		key = headerText(events[0].MessageID)
	}
	req, err := t.newRequest(ctx, events)
	if err != nil {
		return Permanent(err)
	}
	for name, values := range t.headers {
		req.Header[name] = values
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("User-Agent", "segment-webhook-receiver")
	// chunkEnd keeps the events of an array alike in their attributes.
	if t.format == config.FormatCloudEvents {
		setCloudEventsHeaders(req.Header, events[0], t.ceSource)
	} else {
		for header, value := range httpAttributeHeaders.of(events[0].Attributes) {
			req.Header.Set(header, value)
		}
	}
	resp, err := t.client.Do(req)
	if err != nil {
		// The URL may carry credentials, so keep it out of the error (and the logs).
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = fmt.Errorf("%s request failed: %w", t.method, urlErr.Err)
		}
		return err // network trouble or the deadline: retry while the budget lasts
	}
	// Drain a little so the connection can be reused; an endless body must not hold us.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return classifyStatus(resp.StatusCode)
}

// setCloudEventsHeaders puts the attributes in ce-* headers (binary content mode), their values
// percent-encoded as the binding requires; the event JSON is the data.
func setCloudEventsHeaders(h http.Header, ev Event, source string) {
	set := func(name, value string) { h.Set(name, headerText(value)) }
	set("ce-specversion", "1.0")
	set("ce-id", ev.MessageID)
	set("ce-type", "com.segment."+ev.Type)
	set("ce-source", source)
	if !ev.Timestamp.IsZero() {
		set("ce-time", ev.Timestamp.UTC().Format(time.RFC3339Nano))
	}
	if ev.UserID != "" {
		set("ce-subject", ev.UserID)
	}
	for name, value := range ev.Attributes {
		set("ce-"+name, value)
	}
}

// newRequest makes the request for one event, its bytes as the body, or for a chunk, a JSON
// array read from the events' own bytes, so that a chunk is never copied.
func (t *httpTarget) newRequest(ctx context.Context, events []Event) (*http.Request, error) {
	if t.batch == nil {
		return http.NewRequestWithContext(ctx, t.method, t.url, bytes.NewReader(events[0].Raw))
	}
	array, size := jsonArray(events)
	req, err := http.NewRequestWithContext(ctx, t.method, t.url, io.NopCloser(&array))
	if err != nil {
		return nil, err
	}
	req.ContentLength = size
	// For the transport's own retry on a connection closed under it.
	req.GetBody = func() (io.ReadCloser, error) {
		again, _ := jsonArray(events)
		return io.NopCloser(&again), nil
	}
	return req, nil
}

// jsonArray is the events' bytes as one JSON array, with no spaces, as Segment sends it: the
// events' own bytes between brackets and commas, and the array's size.
func jsonArray(events []Event) (array net.Buffers, size int64) {
	array = make(net.Buffers, 0, 2*len(events)+1)
	for i, ev := range events {
		separator := comma
		if i == 0 {
			separator = openBracket
		}
		array = append(array, separator, ev.Raw)
		size += int64(len(ev.Raw)) + 1
	}
	return append(array, closeBracket), size + 1
}

var openBracket, comma, closeBracket = []byte("["), []byte(","), []byte("]")

// chunkKey is a chunk's Idempotency-Key: a digest of its events' messageIds, so the same events
// sent again (Segment's retry, or our own) carry the same key.
func chunkKey(events []Event) string {
	h := sha256.New()
	for _, ev := range events {
		h.Write([]byte(ev.MessageID))
		h.Write([]byte{'\n'})
	}
	return "swh-batch-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// classifyStatus: 2xx accepted; 408, 429 and 5xx retried; anything else is permanent.
func classifyStatus(code int) error {
	switch {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return fmt.Errorf("target answered %d", code)
	default:
		return Permanent(fmt.Errorf("target answered %d", code))
	}
}

func (t *httpTarget) Close() error {
	t.client.CloseIdleConnections()
	return nil
}
