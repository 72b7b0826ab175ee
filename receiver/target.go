package receiver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// Target is one downstream transport. The receiver handles filtering, dropped fields, retries,
// backoff, dedupe, optional targets, dead letters and metrics around it, so an implementation
// only sends.
//
// Deliver sends all the events one request routes to the target, in as few round trips as the
// transport allows, and returns one outcome per event, in order: nil once the target has durably
// accepted the event, else an error, retried unless wrapped with Permanent. It must honour ctx
// (the request's delivery deadline). The receiver calls Deliver again with only the events that
// failed. An event's MessageID is its idempotency key: pass it on (Idempotency-Key header, Kafka
// message key, Nats-Msg-Id) so that a target seeing a redelivery can drop it. Event data put in a
// text header goes through headerText.
//
// Close releases connections. The receiver calls it once, after every Deliver call on this
// instance has returned (a config reload builds new targets and retires the old ones).
//
// To add a kind: write target_<kind>.go with a constructor, and add a case to newTarget.
type Target interface {
	Deliver(ctx context.Context, events []Event) []error
	Close() error
}

// PermanentError marks a failure that retrying cannot fix, such as an HTTP 4xx other than 408
// and 429. The event is not retried within the request; it is dead-lettered when a dead-letter
// target is configured, and fails the request (503) otherwise, unless the target is optional.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a PermanentError.
func Permanent(err error) error { return &PermanentError{Err: err} }

// IsPermanent reports whether err is, or wraps, a PermanentError.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// targetEnv is what a target constructor may need besides its own config.
type targetEnv struct {
	source string            // CloudEvents source
	files  map[string][]byte // secret file contents by path, already read and trimmed
	log    *slog.Logger      // for clients that work in the background (reconnects); may be nil
}

// logger is env.log for one target, never nil.
func (e targetEnv) logger(target string) *slog.Logger {
	if e.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.log.With("target", target)
}

// newTarget is the single switch on the target kind.
func newTarget(t config.Target, env targetEnv) (Target, error) {
	switch {
	case t.HTTP != nil:
		return newHTTPTarget(*t.HTTP, env)
	case t.Kafka != nil:
		return newKafkaTarget(*t.Kafka, env, env.logger(t.Name))
	case t.NATS != nil:
		return newNATSTarget(*t.NATS, env, env.logger(t.Name))
	default:
		return nil, fmt.Errorf("target %q: no supported target kind is set", t.Name)
	}
}

// file returns a secret file's content; the reload has read every file of config.Files().
func (e targetEnv) file(path string) ([]byte, error) {
	value, ok := e.files[path]
	if !ok {
		return nil, fmt.Errorf("secret file %s was not read", path)
	}
	return value, nil
}

// credentials reads a username and a password from their secret files.
func (e targetEnv) credentials(userFile, passFile string) (user, pass string, err error) {
	u, err := e.file(userFile)
	if err != nil {
		return "", "", err
	}
	p, err := e.file(passFile)
	if err != nil {
		return "", "", err
	}
	return string(u), string(p), nil
}

// tlsConfig builds a client TLS config for a broker, or nil when TLS is not configured. The
// server is always verified: by the CA file, or else by the system roots. Errors name files,
// never their content.
func (e targetEnv) tlsConfig(c *config.TLS) (*tls.Config, error) {
	if c == nil {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := e.file(c.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" || c.KeyFile != "" {
		certPEM, err := e.file(c.CertFile)
		if err != nil {
			return nil, err
		}
		keyPEM, err := e.file(c.KeyFile)
		if err != nil {
			return nil, err
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s with key %s: %w", c.CertFile, c.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// fillErr sets every outcome to err.
func fillErr(outcomes []error, err error) []error {
	for i := range outcomes {
		outcomes[i] = err
	}
	return outcomes
}

// headerText puts event data on a header line the way the CloudEvents HTTP binding encodes
// attribute values (version 1.0.2, section 3.1.3.2): space, '"', '%' and every byte outside
// printable ASCII become %XX. Event data may hold line breaks and NULs, which an HTTP client
// refuses and a NATS client silently rewrites; encoded, any value can be sent, one round of
// percent-decoding gives it back, and distinct values stay distinct. Segment's ids and types
// need no encoding and are sent unchanged.
func headerText(s string) string {
	escapes := 0
	for i := 0; i < len(s); i++ {
		if mustEscape(s[i]) {
			escapes++
		}
	}
	if escapes == 0 {
		return s
	}
	const hexDigits = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*escapes)
	for i := 0; i < len(s); i++ {
		if c := s[i]; mustEscape(c) {
			b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

func mustEscape(c byte) bool { return c <= ' ' || c > '~' || c == '"' || c == '%' }
