package receiver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// NATS message headers set on every message, besides Nats-Msg-Id (the messageId).
const (
	NATSHeaderType      = "Segment-Type"
	NATSHeaderMessageID = "Segment-Message-Id"
	NATSHeaderContent   = "Content-Type"
)

// NATSHeaderPlanViolation carries the tracking plan's violations.
const NATSHeaderPlanViolation = "Segment-Tracking-Plan-Violation"

// natsAttributeHeaders carry event attributes.
var natsAttributeHeaders = attributeHeaders{violationAttribute: NATSHeaderPlanViolation}

// natsTarget publishes each event to JetStream with Nats-Msg-Id = messageId, so the stream's
// duplicate window drops Segment's retries even when the receiver's own memory does not have
// them (another replica, a restart), and counts it delivered only on the stream's PubAck.
//
// The connection is long-lived and made in the background: a server that is down or does not
// answer when the config loads does not hold up the load. The client reconnects forever; while
// it is disconnected, publishes fail at once (no reconnect buffer) and the requests get 503.
type natsTarget struct {
	subject string
	hasType bool
	stream  string

	ready chan struct{} // closed once the first connection attempt has returned
	mu    sync.Mutex
	conn  *nats.Conn
	js    jetstream.JetStream
	err   error // a connection that could not even be set up
	done  bool  // Close was called
}

func newNATSTarget(c config.NATSTarget, env targetEnv, log *slog.Logger) (*natsTarget, error) {
	opts := []nats.Option{
		nats.Name("segment-webhook-receiver"),
		nats.Timeout(2 * time.Second),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		// Without a buffer a publish while disconnected fails now rather than being sent later
		// for a request that was already answered 503.
		nats.ReconnectBufSize(-1),
		// A dead server is noticed within seconds, not the default two minutes.
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(2),
		// Credentials fixed on the server side start working without a reload.
		nats.IgnoreAuthErrorAbort(),
		nats.NoCallbacksAfterClientClose(),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("NATS disconnected; reconnecting", "error", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("NATS reconnected", "server", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { log.Warn("NATS error", "error", err) }),
	}
	switch {
	case c.CredentialsFile != "":
		creds, err := env.file(c.CredentialsFile)
		if err != nil {
			return nil, err
		}
		jwt, err := nkeys.ParseDecoratedJWT(creds)
		if err != nil {
			return nil, fmt.Errorf("credentials file %s: no user JWT", c.CredentialsFile)
		}
		kp, err := nkeys.ParseDecoratedUserNKey(creds)
		if err != nil {
			return nil, fmt.Errorf("credentials file %s: no user NKey seed", c.CredentialsFile)
		}
		seed, err := kp.Seed()
		if err != nil {
			return nil, fmt.Errorf("credentials file %s: no user NKey seed", c.CredentialsFile)
		}
		opts = append(opts, nats.UserJWTAndSeed(jwt, string(seed)))
	case c.TokenFile != "":
		token, err := env.file(c.TokenFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Token(string(token)))
	case c.UsernameFile != "":
		user, pass, err := env.credentials(c.UsernameFile, c.PasswordFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserInfo(user, pass))
	}
	tc, err := env.tlsConfig(c.TLS)
	if err != nil {
		return nil, err
	}
	if tc != nil {
		opts = append(opts, nats.Secure(tc))
	}
	t := &natsTarget{
		subject: c.Subject,
		hasType: strings.Contains(c.Subject, config.NATSTypePlaceholder),
		stream:  c.Stream,
		ready:   make(chan struct{}),
	}
	go t.connect(strings.Join(c.URLs, ","), opts)
	return t, nil
}

func (t *natsTarget) connect(urls string, opts []nats.Option) {
	conn, err := nats.Connect(urls, opts...)
	var js jetstream.JetStream
	if err == nil {
		// A batch is published at once: let a few of Segment's largest be pending together, and
		// give up on an ack after Segment's own timeout so no future waits forever.
		js, err = jetstream.New(conn, jetstream.WithPublishAsyncMaxPending(4*config.MaxEventsLimit),
			jetstream.WithPublishAsyncTimeout(config.MaxBudget))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	defer close(t.ready)
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		t.err = fmt.Errorf("setting up the NATS connection: %w", err)
		return
	}
	if t.done {
		conn.Close()
		return
	}
	t.conn, t.js = conn, js
}

// subjectFor fills the {type} placeholder. Lenient validation lets any type string through, so
// characters that are not safe in a subject token (".", "*", ">", spaces...) become "_".
func (t *natsTarget) subjectFor(ev Event) string {
	if !t.hasType {
		return t.subject
	}
	return strings.ReplaceAll(t.subject, config.NATSTypePlaceholder, subjectToken(ev.Type))
}

func subjectToken(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			return r
		default:
			return '_'
		}
	}, s)
}

// Deliver publishes every event asynchronously, then awaits every PubAck, the stream's word that
// it stored the message (or already had it: a duplicate).
func (t *natsTarget) Deliver(ctx context.Context, events []Event) []error {
	outcomes := make([]error, len(events))
	select {
	case <-t.ready:
	case <-ctx.Done():
		return fillErr(outcomes, fmt.Errorf("NATS connection not set up in time: %w", context.Cause(ctx)))
	}
	t.mu.Lock()
	js, setupErr := t.js, t.err
	t.mu.Unlock()
	if setupErr != nil {
		return fillErr(outcomes, Permanent(setupErr))
	}
	if js == nil {
		return fillErr(outcomes, Permanent(errors.New("NATS target is closed")))
	}
	futures := make([]jetstream.PubAckFuture, len(events))
	for i, ev := range events {
		msg := &nats.Msg{Subject: t.subjectFor(ev), Data: ev.Raw, Header: nats.Header{}}
		id := headerText(ev.MessageID)
		msg.Header.Set(NATSHeaderType, headerText(ev.Type))
		msg.Header.Set(NATSHeaderMessageID, id)
		msg.Header.Set(NATSHeaderContent, "application/json")
		for header, value := range natsAttributeHeaders.of(ev.Attributes) {
			msg.Header.Set(header, value)
		}
		opts := []jetstream.PublishOpt{jetstream.WithMsgID(id)}
		if t.stream != "" {
			opts = append(opts, jetstream.WithExpectStream(t.stream))
		}
		if futures[i], outcomes[i] = js.PublishMsgAsync(msg, opts...); outcomes[i] != nil {
			outcomes[i] = classifyNATSError(outcomes[i])
		}
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			outcomes[i] = classifyNATSError(err)
		case <-ctx.Done():
			outcomes[i] = fmt.Errorf("NATS did not acknowledge in time: %w", context.Cause(ctx))
		}
	}
	return outcomes
}

// classifyNATSError: JetStream's 4xx answers (wrong stream, message over the stream's size
// limit...) and a message over the server's max payload are permanent; no responders (no stream,
// or JetStream restarting), timeouts and connection trouble are transient.
func classifyNATSError(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		if apiErr.Code >= 400 && apiErr.Code < 500 &&
			apiErr.Code != http.StatusRequestTimeout && apiErr.Code != http.StatusTooManyRequests {
			return Permanent(err)
		}
		return err
	}
	if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadSubject) {
		return Permanent(err)
	}
	return err
}

// Close closes the connection, or has the background connect close it when it is still trying.
func (t *natsTarget) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done = true
	if t.conn != nil {
		t.conn.Close()
		t.conn, t.js = nil, nil
	}
	return nil
}
