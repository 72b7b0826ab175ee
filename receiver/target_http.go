package receiver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// httpTarget POSTs (or PUTs/PATCHes) one request per event.
type httpTarget struct {
	client   *http.Client
	url      string
	method   string
	format   string
	ceSource string
	headers  http.Header
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
		if bytes.ContainsAny(value, "\r\n\x00") {
			// The client would refuse every request; fail the (re)load instead.
			return nil, fmt.Errorf("header file %s holds a line break or NUL", path)
		}
		headers.Set(name, string(value))
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.DialContext = (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	// Batches fan out concurrently per target; the default of 2 idle connections would churn.
	transport.MaxIdleConnsPerHost = 64
	transport.MaxIdleConns = 256
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

func (t *httpTarget) Deliver(ctx context.Context, ev Event) error {
	req, err := http.NewRequestWithContext(ctx, t.method, t.url, bytes.NewReader(ev.Raw))
	if err != nil {
		return Permanent(err)
	}
	for name, values := range t.headers {
		req.Header[name] = values
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", ev.MessageID)
	req.Header.Set("User-Agent", "segment-webhook-receiver")
	if t.format == config.FormatCloudEvents {
		// Binary content mode: attributes in ce-* headers, the event JSON as the data.
		req.Header.Set("ce-specversion", "1.0")
		req.Header.Set("ce-id", ev.MessageID)
		req.Header.Set("ce-type", "com.segment."+ev.Type)
		req.Header.Set("ce-source", t.ceSource)
		if !ev.Timestamp.IsZero() {
			req.Header.Set("ce-time", ev.Timestamp.UTC().Format(time.RFC3339Nano))
		}
		if ev.UserID != "" {
			req.Header.Set("ce-subject", ev.UserID)
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
