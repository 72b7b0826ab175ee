package receiver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// pipeline is everything one config produces. It is immutable once built: a reload builds a new
// one and swaps a pointer, and requests finish on the pipeline they started with. Reference
// counting tells when a retired pipeline's targets can be closed.
type pipeline struct {
	cfg        *config.Config
	auth       *authenticator
	routes     []*route      // the routed targets, in config order
	deadLetter *route        // nil without a dead-letter target
	plan       *planEnforcer // nil without a tracking plan

	refs      atomic.Int64
	retired   atomic.Bool
	closeOnce sync.Once
}

// route is one target plus what the receiver does around it.
type route struct {
	name     string
	optional bool
	filter   config.Filter // Matches selects the events it receives
	dropper  fieldDropper
	target   Target
	memory   *dedupeMemory
	delivery config.Delivery
	log      *slog.Logger

	deliveries, permanentFailures, transientFailures, attempts, dedupeHits prometheus.Counter
	attemptDuration                                                        prometheus.Observer
	optionalSkipped                                                        prometheus.Counter
	skipLog                                                                rate.Sometimes // bounds the log of skipped optional deliveries
}

func buildPipeline(cfg *config.Config, files map[string][]byte, dedupe *dedupeStore, m *metrics, log *slog.Logger) (*pipeline, error) {
	auth, err := newAuthenticator(cfg.Authentication, files)
	if err != nil {
		return nil, err
	}
	plan, err := newPlanEnforcer(cfg.TrackingPlan, files, m, log)
	if err != nil {
		return nil, err
	}
	p := &pipeline{cfg: cfg, auth: auth, plan: plan}
	env := targetEnv{source: cfg.Source, files: files, log: log}
	newRoute := func(tc config.Target) (*route, error) {
		target, err := newTarget(tc, env)
		if err != nil {
			return nil, fmt.Errorf("target %q: %w", tc.Name, err)
		}
		return &route{
			name:              tc.Name,
			optional:          tc.Optional,
			filter:            tc.Filter,
			dropper:           newFieldDropper(tc.DropFields),
			target:            target,
			memory:            dedupe.forTarget(targetIdentity(tc), cfg.Delivery.DedupeSize, cfg.Delivery.DedupeWindow.Duration),
			delivery:          cfg.Delivery,
			log:               log.With("target", tc.Name),
			deliveries:        m.deliveries.WithLabelValues(tc.Name),
			permanentFailures: m.deliveryFailures.WithLabelValues(tc.Name, "permanent"),
			transientFailures: m.deliveryFailures.WithLabelValues(tc.Name, "transient"),
			attempts:          m.attempts.WithLabelValues(tc.Name),
			dedupeHits:        m.dedupeHits.WithLabelValues(tc.Name),
			attemptDuration:   m.attemptDuration.WithLabelValues(tc.Name),
			optionalSkipped:   m.optionalSkipped.WithLabelValues(tc.Name),
			skipLog:           rate.Sometimes{First: 1, Interval: time.Minute},
		}, nil
	}
	for _, tc := range cfg.AllTargets() {
		r, err := newRoute(*tc.Target)
		if err != nil {
			p.closeTargets()
			return nil, err
		}
		if tc.Role == config.RoleDeadLetter {
			p.deadLetter = r
		} else {
			p.routes = append(p.routes, r)
		}
	}
	return p, nil
}

// targetIdentity is what the dedupe memory is keyed by: the name and where events go, so a
// target pointed somewhere new under the same name starts with an empty memory.
func targetIdentity(t config.Target) string {
	switch {
	case t.HTTP != nil:
		return t.Name + "\x00http\x00" + t.HTTP.URL
	case t.Kafka != nil:
		return t.Name + "\x00kafka\x00" + strings.Join(t.Kafka.Brokers, ",") + "\x00" + t.Kafka.Topic
	case t.NATS != nil:
		return t.Name + "\x00nats\x00" + strings.Join(t.NATS.URLs, ",") + "\x00" + t.NATS.Subject + "\x00" + t.NATS.Stream
	}
	return t.Name
}

// identities lists the target identities a config uses.
func identities(cfg *config.Config) []string {
	all := cfg.AllTargets()
	ids := make([]string, 0, len(all))
	for _, t := range all {
		ids = append(ids, targetIdentity(*t.Target))
	}
	return ids
}

// acquire takes a reference on the current pipeline, or returns nil when none is loaded.
func acquire(current *atomic.Pointer[pipeline]) *pipeline {
	for {
		p := current.Load()
		if p == nil {
			return nil
		}
		p.refs.Add(1)
		// A reload may have retired p between Load and Add; then its targets may be closing.
		if current.Load() == p {
			return p
		}
		p.release()
	}
}

func (p *pipeline) release() {
	if p.refs.Add(-1) == 0 && p.retired.Load() {
		p.closeOnce.Do(p.closeTargets)
	}
}

// retire is called once p is no longer current; its targets close when the last user leaves.
func (p *pipeline) retire() {
	p.retired.Store(true)
	if p.refs.Load() == 0 {
		p.closeOnce.Do(p.closeTargets)
	}
}

func (p *pipeline) closeTargets() {
	for _, r := range p.routes {
		_ = r.target.Close()
	}
	if p.deadLetter != nil {
		_ = p.deadLetter.target.Close()
	}
}

// refusal is an event a required target refused for good.
type refusal struct {
	target string
	event  Event // as the target was to get it: its fields dropped
	err    error
}

// delivery is what one target gets of a request.
type delivery struct {
	route     *route
	batch     []Event // the events it gets, its fields dropped
	originals []Event // originals[i] is batch[i] as received; batch itself when nothing was dropped
	copied    int64   // bytes of batch made for this target (events with dropped fields)
}

// memoryPerDelivered is what a target holds per event it is delivering, besides the event's
// bytes: the event in batch (and originals), its outcome, and the transport's own request or
// record (a Kafka record and its headers, a NATS message and its header map with the PubAck
// future, the heaviest).
const memoryPerDelivered = 1024

// memory estimates what delivering d holds besides the request body.
func (d delivery) memory() int64 {
	return int64(len(d.batch))*memoryPerDelivered + d.copied
}

// bodyBytes counts the bytes of d's events that are still slices of the request body: all but
// those made for d.
func (d delivery) bodyBytes() int64 {
	n := -d.copied
	for _, ev := range d.batch {
		n += int64(len(ev.Raw))
	}
	return n
}

// prepareMemory bounds what prepare, and so heldMemory, can come to (besides decoded events and
// rewritten bytes): every target getting every event, each with fields dropped when it drops
// any, and the dead letters' envelopes.
func (p *pipeline) prepareMemory(events []Event, body []byte, malformed []Event) int64 {
	var bytes int64
	for i := range events {
		bytes += int64(len(events[i].Raw))
	}
	var n int64
	for _, r := range p.routes {
		if !r.optional {
			n += int64(len(events)) * memoryPerDelivered
		}
		if r.dropper.paths != nil {
			n += bytes
		}
	}
	switch {
	case len(malformed) > 0:
		n += int64(len(malformed[0].Raw))
	case p.deadLetter != nil:
		n += int64(len(body))
	}
	return n
}

// prepare routes events: what each target gets, and the events a required target cannot be
// given (their fields could not be dropped), which count as refused. Its metrics go to counts.
func (p *pipeline) prepare(events []Event, counts tally) (deliveries []delivery, refused []refusal) {
	for _, r := range p.routes {
		d, unprepared := r.prepare(events, counts)
		if !r.optional {
			refused = append(refused, unprepared...)
		}
		if len(d.batch) > 0 {
			deliveries = append(deliveries, d)
		}
	}
	return deliveries, refused
}

// deliver fans the deliveries out to every target concurrently. It reports whether a required
// target failed transiently (the request must be retried) and which events required targets
// refused for good, after those already refused. Optional targets are not waited for: they go
// on in the background (see deliverInBackground), so a slow optional target cannot slow down or
// fail the answer to Segment.
func (p *pipeline) deliver(ctx context.Context, deliveries []delivery, refused []refusal, memory *semaphore.Weighted, background *sync.WaitGroup) (failed bool, _ []refusal) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	record := func(d delivery, outcomes []error) {
		mu.Lock()
		defer mu.Unlock()
		for i, err := range outcomes {
			switch {
			case err == nil:
			case IsPermanent(err):
				// As the target was to get it: its dead letter holds none of the fields it drops.
				refused = append(refused, refusal{target: d.route.name, event: d.batch[i], err: err})
			default:
				failed = true
			}
		}
	}
	// The last required target is delivered to in this goroutine: with a single target, the
	// common case, no goroutine is started at all.
	var inline func()
	for _, d := range deliveries {
		if d.route.optional {
			p.deliverInBackground(ctx, d, memory, background)
			continue
		}
		if inline != nil {
			wg.Add(1)
			go func(deliver func()) {
				defer wg.Done()
				deliver()
			}(inline)
		}
		inline = func() { record(d, d.route.send(ctx, d.batch)) }
	}
	if inline != nil {
		inline()
	}
	wg.Wait()
	return failed, refused
}

// deliverInBackground sends an optional target its events after the answer, until the request's
// deadline. It works on its own copy of them, so that the request body can go, and that copy and
// the delivery (d.memory) count against the memory budget until the delivery ends; when the
// budget cannot hold them, the target is skipped for this request (best effort: the events are
// counted, not retried).
func (p *pipeline) deliverInBackground(ctx context.Context, d delivery, memory *semaphore.Weighted, background *sync.WaitGroup) {
	r, copied := d.route, d.bodyBytes()
	size := d.memory() + copied
	if !memory.TryAcquire(size) {
		r.optionalSkipped.Add(float64(len(d.batch)))
		r.skipLog.Do(func() {
			r.log.Warn("optional target skipped: the memory budget (maxBufferedBytes) is used up; further skips are counted in segment_receiver_optional_skipped_events_total",
				"events", len(d.batch))
		})
		return
	}
	events := d.detach(copied)
	deadline, _ := ctx.Deadline()
	p.refs.Add(1) // the caller holds a reference, so p cannot be closed meanwhile
	background.Add(1)
	go func() {
		defer background.Done()
		defer p.release()
		defer memory.Release(size)
		octx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
		defer cancel()
		r.send(octx, events)
	}()
}

// detach gives d's events memory of their own, so that they no longer hold the request body: the
// events still in the body are copied into one buffer of size (bodyBytes) bytes, those made for
// d (dropped fields) are kept as they are.
func (d delivery) detach(size int64) []Event {
	buf := make([]byte, 0, size)
	out := make([]Event, len(d.batch))
	for i, ev := range d.batch {
		if len(ev.Raw) == len(d.originals[i].Raw) { // not made for d (a dropped field shortens it)
			start := len(buf)
			buf = append(buf, ev.Raw...)
			ev.Raw = buf[start:len(buf):len(buf)]
		}
		ev.properties, ev.traits, ev.context = nil, nil, nil // slices of the body, for the tracking plan only
		out[i] = ev
	}
	return out
}

// sendDeadLetters sends envelopes to the dead-letter target and reports whether it has them all,
// and which it accepted now, also when it refused or failed others: the target remembers those,
// so a Segment retry does not send them, or count them, again.
func (p *pipeline) sendDeadLetters(ctx context.Context, letters []Event) (sent []Event, ok bool) {
	counts := tally{}
	d, unprepared := p.deadLetter.prepare(letters, counts)
	counts.apply()
	ok = len(unprepared) == 0
	for i, err := range p.deadLetter.send(ctx, d.batch) {
		if err != nil {
			ok = false
			continue
		}
		sent = append(sent, d.batch[i])
	}
	return sent, ok
}

// prepare selects the events this target should get: those its filter matches that it has not
// already accepted (a Segment retry of a request that partly failed), each sent once per request,
// with the configured fields dropped. An event whose fields cannot be dropped is refused. Its
// metrics go to counts.
func (r *route) prepare(events []Event, counts tally) (d delivery, unprepared []refusal) {
	d.route = r
	var inRequest map[string]bool
	if len(events) > 1 {
		inRequest = make(map[string]bool, len(events))
	}
	for _, ev := range events {
		if !r.filter.Matches(ev.Type, ev.Name) {
			continue
		}
		id := r.dropper.id(ev.MessageID)
		if r.memory.has(id) || inRequest[id] {
			counts.inc(r.dedupeHits)
			continue
		}
		if inRequest != nil {
			inRequest[id] = true
		}
		out, err := r.dropper.apply(ev)
		out.MessageID = id
		if err != nil {
			counts.inc(r.permanentFailures)
			// Its dead letter cannot hold it without the fields: it holds null and the error.
			withheld := Event{Raw: []byte("null"), Index: ev.Index, Type: ev.Type, MessageID: id}
			unprepared = append(unprepared, refusal{target: r.name, event: withheld, err: fmt.Errorf("dropping fields: %w", err)})
			continue
		}
		if len(out.Raw) != len(ev.Raw) { // a dropped field always shortens the event
			if d.copied == 0 { // the first event made for d: originals is kept apart from here
				d.originals = slices.Clone(d.batch)
			}
			d.copied += int64(len(out.Raw))
		}
		d.batch = append(d.batch, out)
		if d.copied > 0 {
			d.originals = append(d.originals, ev)
		}
	}
	if d.copied == 0 {
		d.originals = d.batch
	}
	return d, unprepared
}

// errNotSent is the outcome of an event the deadline left no attempt for.
var errNotSent = errors.New("not sent before the delivery deadline")

// send delivers events to the target and retries, with exponential backoff and jitter, only the
// events still failing, until all are accepted or refused for good, the attempts run out, or the
// next wait would pass the deadline. It returns one outcome per event. Accepted events are
// remembered even when others fail, so Segment's retry has less to resend.
func (r *route) send(ctx context.Context, events []Event) []error {
	if len(events) == 0 {
		return nil
	}
	outcomes := make([]error, len(events))
	pending := make([]int, len(events))
	for i := range events {
		outcomes[i] = errNotSent
		pending[i] = i
	}
	attempts := 0
	var retried []Event
	operation := func() (struct{}, error) {
		attempts++
		r.attempts.Inc()
		batch := events
		if len(pending) < len(events) { // a retry: only the events still failing
			retried = retried[:0]
			for _, i := range pending {
				retried = append(retried, events[i])
			}
			batch = retried
		}
		start := time.Now()
		errs := r.target.Deliver(ctx, batch)
		r.attemptDuration.Observe(time.Since(start).Seconds())
		retry := pending[:0]
		for j, i := range pending {
			outcomes[i] = errs[j]
			if errs[j] != nil && !IsPermanent(errs[j]) {
				retry = append(retry, i)
			}
		}
		pending = retry
		if len(pending) == 0 {
			return struct{}{}, nil
		}
		return struct{}{}, outcomes[pending[0]]
	}
	policy := &backoff.ExponentialBackOff{
		InitialInterval:     r.delivery.InitialBackoff.Duration,
		MaxInterval:         r.delivery.MaxBackoff.Duration,
		Multiplier:          2,
		RandomizationFactor: 0.5, // jitter spreads the retries of receivers hitting one target
	}
	opts := []backoff.RetryOption{backoff.WithBackOff(policy), backoff.WithMaxTries(uint(r.delivery.MaxAttempts))}
	if deadline, ok := ctx.Deadline(); ok {
		opts = append(opts, backoff.WithMaxElapsedTime(time.Until(deadline)))
	}
	_, _ = backoff.Retry(ctx, operation, opts...)

	var accepted, permanent, transient int
	var firstErr error
	for i, err := range outcomes {
		switch {
		case err == nil:
			r.memory.add(events[i].MessageID)
			accepted++
			continue
		case IsPermanent(err):
			permanent++
		default:
			transient++
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	r.deliveries.Add(float64(accepted))
	r.permanentFailures.Add(float64(permanent))
	r.transientFailures.Add(float64(transient))
	if firstErr != nil {
		level := slog.LevelWarn
		if r.optional {
			level = slog.LevelInfo
		}
		// Events still failing when the deadline ended the request may have reached the target.
		abandoned := 0
		if ctx.Err() != nil {
			abandoned = transient
		}
		r.log.Log(ctx, level, "delivery failed", "events", len(events), "accepted", accepted, "permanent", permanent,
			"transient", transient, "abandonedAtDeadline", abandoned, "attempts", attempts, "error", firstErr)
	}
	return outcomes
}
