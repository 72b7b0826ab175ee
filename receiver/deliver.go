package receiver

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// perTargetConcurrency bounds how many events of one batch are in flight to one target at once.
const perTargetConcurrency = 16

// pipeline is everything one config produces. It is immutable once built: a reload builds a new
// one and swaps a pointer, and requests finish on the pipeline they started with. Reference
// counting tells when a retired pipeline's targets can be closed.
type pipeline struct {
	cfg    *config.Config
	auth   *authenticator
	routes []*route

	refs      atomic.Int64
	retired   atomic.Bool
	closeOnce sync.Once
}

// route is one target plus what the receiver does around it.
type route struct {
	name     string
	optional bool
	filter   filter
	dropper  fieldDropper
	target   Target
	accepted *expirable.LRU[string, struct{}] // messageIds the target has accepted
	delivery config.Delivery
	log      *slog.Logger

	deliveries, permanentFailures, transientFailures, attempts, dedupeHits prometheus.Counter
	attemptDuration                                                        prometheus.Observer
}

func buildPipeline(cfg *config.Config, files map[string][]byte, dedupe *dedupeStore, m *metrics, log *slog.Logger) (*pipeline, error) {
	auth, err := newAuthenticator(cfg.Authentication, files)
	if err != nil {
		return nil, err
	}
	p := &pipeline{cfg: cfg, auth: auth}
	env := targetEnv{source: cfg.Source, files: files, log: log}
	for _, tc := range cfg.Targets {
		target, err := newTarget(tc, env)
		if err != nil {
			p.closeTargets()
			return nil, fmt.Errorf("target %q: %w", tc.Name, err)
		}
		p.routes = append(p.routes, &route{
			name:              tc.Name,
			optional:          tc.Optional,
			filter:            newFilter(tc.Filter),
			dropper:           newFieldDropper(tc.DropFields),
			target:            target,
			accepted:          dedupe.forTarget(tc.Name, cfg.Delivery.DedupeSize, cfg.Delivery.DedupeWindow.Duration),
			delivery:          cfg.Delivery,
			log:               log.With("target", tc.Name),
			deliveries:        m.deliveries.WithLabelValues(tc.Name),
			permanentFailures: m.deliveryFailures.WithLabelValues(tc.Name, "permanent"),
			transientFailures: m.deliveryFailures.WithLabelValues(tc.Name, "transient"),
			attempts:          m.attempts.WithLabelValues(tc.Name),
			dedupeHits:        m.dedupeHits.WithLabelValues(tc.Name),
			attemptDuration:   m.attemptDuration.WithLabelValues(tc.Name),
		})
	}
	return p, nil
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
}

// deliver fans events out to every target concurrently and reports whether every required
// target accepted every event routed to it. Optional targets are not waited for: they go on in
// the background, tracked by background, until the same deadline, so a slow optional target cannot
// slow down or fail the answer to Segment.
func (p *pipeline) deliver(ctx context.Context, events []Event, background *sync.WaitGroup) bool {
	deadline, _ := ctx.Deadline()
	var wg sync.WaitGroup
	var failed atomic.Bool
	for _, r := range p.routes {
		batch, err := r.prepare(events)
		if err != nil {
			r.log.Error("preparing events failed", "error", err)
			r.permanentFailures.Add(float64(len(events)))
			if !r.optional {
				failed.Store(true)
			}
			continue
		}
		if len(batch) == 0 {
			continue
		}
		if r.optional {
			p.refs.Add(1) // the caller holds a reference, so p cannot be closed meanwhile
			background.Add(1)
			go func() {
				defer background.Done()
				defer p.release()
				octx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
				defer cancel()
				r.deliverAll(octx, batch)
			}()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !r.deliverAll(ctx, batch) {
				failed.Store(true)
			}
		}()
	}
	wg.Wait()
	return !failed.Load()
}

// prepare selects the events this target should get: those its filter matches that it has not
// already accepted (a Segment retry of a request that partly failed), each sent once per batch,
// with the configured fields dropped.
func (r *route) prepare(events []Event) ([]Event, error) {
	var batch []Event
	var inBatch map[string]bool
	if len(events) > 1 {
		inBatch = make(map[string]bool, len(events))
	}
	for i := range events {
		ev := &events[i]
		if !r.filter.matches(ev) {
			continue
		}
		if r.accepted.Contains(ev.MessageID) || inBatch[ev.MessageID] {
			r.dedupeHits.Inc()
			continue
		}
		if inBatch != nil {
			inBatch[ev.MessageID] = true
		}
		out, err := r.dropper.apply(*ev)
		if err != nil {
			return nil, err
		}
		batch = append(batch, out)
	}
	return batch, nil
}

// deliverAll sends each event, a bounded number at a time, and reports whether all were accepted.
// A failed event does not stop the others: whatever is accepted is remembered, so Segment's
// retry has less to resend.
func (r *route) deliverAll(ctx context.Context, events []Event) bool {
	if len(events) == 1 {
		return r.deliverOne(ctx, events[0]) == nil
	}
	var wg sync.WaitGroup
	var failed atomic.Bool
	slots := make(chan struct{}, perTargetConcurrency)
	for _, ev := range events {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if r.deliverOne(ctx, ev) != nil {
				failed.Store(true)
			}
		}()
	}
	wg.Wait()
	return !failed.Load()
}

// deliverOne retries with exponential backoff and jitter until the target accepts, the error is
// permanent, the attempts run out, or the next wait would pass the deadline.
func (r *route) deliverOne(ctx context.Context, ev Event) error {
	var lastErr error
	attempts := 0
	operation := func() (struct{}, error) {
		attempts++
		r.attempts.Inc()
		start := time.Now()
		err := r.target.Deliver(ctx, ev)
		r.attemptDuration.Observe(time.Since(start).Seconds())
		lastErr = err
		if err != nil && IsPermanent(err) {
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	}
	policy := &backoff.ExponentialBackOff{
		InitialInterval:     r.delivery.InitialBackoff.Duration,
		MaxInterval:         r.delivery.MaxBackoff.Duration,
		Multiplier:          2,
		RandomizationFactor: 0.5, // jitter spreads retries of many events hitting one target
	}
	opts := []backoff.RetryOption{backoff.WithBackOff(policy), backoff.WithMaxTries(uint(r.delivery.MaxAttempts))}
	if deadline, ok := ctx.Deadline(); ok {
		opts = append(opts, backoff.WithMaxElapsedTime(time.Until(deadline)))
	}
	if _, err := backoff.Retry(ctx, operation, opts...); err == nil {
		r.accepted.Add(ev.MessageID, struct{}{})
		r.deliveries.Inc()
		return nil
	}
	kind := "transient"
	if IsPermanent(lastErr) {
		kind = "permanent"
		r.permanentFailures.Inc()
	} else {
		r.transientFailures.Inc()
	}
	level := slog.LevelWarn
	if r.optional {
		level = slog.LevelInfo
	}
	r.log.Log(ctx, level, "delivery failed", "messageId", ev.MessageID, "kind", kind,
		"attempts", attempts, "error", lastErr)
	return lastErr
}

// dedupeStore keeps each target's memory of accepted messageIds across reloads, keyed by target
// name, so that a reload does not make Segment's retries re-send to targets that already have
// the events.
type dedupeStore struct {
	mu       sync.Mutex
	byTarget map[string]*dedupeMemory
}

type dedupeMemory struct {
	lru    *expirable.LRU[string, struct{}]
	window time.Duration
}

func newDedupeStore() *dedupeStore { return &dedupeStore{byTarget: map[string]*dedupeMemory{}} }

func (d *dedupeStore) forTarget(name string, size int, window time.Duration) *expirable.LRU[string, struct{}] {
	d.mu.Lock()
	defer d.mu.Unlock()
	mem := d.byTarget[name]
	switch {
	case mem == nil:
		mem = &dedupeMemory{lru: expirable.NewLRU[string, struct{}](size, nil, window), window: window}
		d.byTarget[name] = mem
	case mem.window != window:
		// The window of an expirable LRU is fixed: carry the ids over to a new one.
		next := expirable.NewLRU[string, struct{}](size, nil, window)
		for _, id := range mem.lru.Keys() {
			next.Add(id, struct{}{})
		}
		mem = &dedupeMemory{lru: next, window: window}
		d.byTarget[name] = mem
	default:
		mem.lru.Resize(size)
	}
	return mem.lru
}

// retain forgets targets that are no longer configured.
func (d *dedupeStore) retain(names []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	keep := map[string]bool{}
	for _, n := range names {
		keep[n] = true
	}
	for name := range d.byTarget {
		if !keep[name] {
			delete(d.byTarget, name)
		}
	}
}
