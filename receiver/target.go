package receiver

import (
	"context"
	"errors"
	"fmt"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// Target is one downstream transport. The receiver handles filtering, dropped fields, retries,
// backoff, dedupe, optional targets and metrics around it, so an implementation only sends.
//
// Deliver sends one event and returns nil only once the target has durably accepted it. It must
// honour ctx (the request's delivery deadline). Errors are retried unless wrapped with Permanent.
// The event's MessageID is its idempotency key: pass it on (Idempotency-Key header, Kafka message
// key, Nats-Msg-Id) so that a target seeing a redelivery can drop it.
//
// Close releases connections. The receiver calls it once, after every Deliver call on this
// instance has returned (a config reload builds new targets and retires the old ones).
//
// To add a kind: write target_<kind>.go with a constructor, and add a case to newTarget.
type Target interface {
	Deliver(ctx context.Context, ev Event) error
	Close() error
}

// PermanentError marks a failure that retrying cannot fix, such as an HTTP 4xx other than 408
// and 429. The request still fails (503) unless the target is optional, but within the request
// the event is not retried.
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
}

// newTarget is the single switch on the target kind.
func newTarget(t config.Target, env targetEnv) (Target, error) {
	switch {
	case t.HTTP != nil:
		return newHTTPTarget(*t.HTTP, env)
	default:
		return nil, fmt.Errorf("target %q: no supported target kind is set", t.Name)
	}
}
