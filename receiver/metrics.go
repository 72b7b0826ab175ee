package receiver

import (
	"net/http"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

const metricsNamespace = "segment_receiver"

// metrics live on a private registry so that tests (and benchmarks) can build many servers in one
// process without "duplicate metrics collector registration" panics.
type metrics struct {
	requests          *prometheus.CounterVec
	events            *prometheus.CounterVec
	signatureFailures prometheus.Counter
	inFlight          prometheus.Gauge
	reading           prometheus.Gauge
	openConnections   prometheus.Gauge
	connectionsClosed *prometheus.CounterVec
	deliveries        *prometheus.CounterVec
	deliveryFailures  *prometheus.CounterVec
	attempts          *prometheus.CounterVec
	attemptDuration   *prometheus.HistogramVec
	dedupeHits        *prometheus.CounterVec
	optionalSkipped   *prometheus.CounterVec
	deadLettered      *prometheus.CounterVec
	configReloads     *prometheus.CounterVec
	ready             prometheus.Gauge
	planViolations    *prometheus.CounterVec
	planUnplanned     prometheus.Counter

	// The busy paths' series, looked up once; read-only once built.
	eventsByType   map[string]prometheus.Counter
	requestsByCode map[int]prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "requests_total",
			Help: "Webhook requests answered, by HTTP status code.",
		}, []string{"code"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "events_total",
			Help: "Events in authenticated, valid requests the memory budget admitted, by Segment type (unknown types count as other).",
		}, []string{"type"}),
		signatureFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "signature_failures_total",
			Help: "Requests refused because the signature or bearer token was missing or wrong.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "in_flight_requests",
			Help: "Webhook requests authenticated and being delivered now.",
		}),
		reading: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "reading_requests",
			Help: "Webhook requests whose bodies are being read now, before their signature can be verified.",
		}),
		openConnections: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "open_connections",
			Help: "Connections open on the webhook listener (at most 4 x maxInFlight, at least 64).",
		}),
		connectionsClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "connections_closed_for_room_total",
			Help: "Webhook connections closed because the connection cap was reached, by reason: " +
				"closing (answered, waiting out the delay before closing), idle (the longest waiting for its next request), " +
				"new (the longest without a complete request) or full (the newcomer itself, every connection serving a request).",
		}, []string{"reason"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "target_deliveries_total",
			Help: "Events a target accepted.",
		}, []string{"target"}),
		deliveryFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "target_failures_total",
			Help: "Events a target did not accept after all attempts; kind is permanent (4xx) or transient.",
		}, []string{"target", "kind"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "target_attempts_total",
			Help: "Delivery attempts (one call to a target with all the events still pending for it), retries included.",
		}, []string{"target"}),
		attemptDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "target_attempt_duration_seconds",
			Help:    "Duration of one delivery attempt to a target.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"target"}),
		dedupeHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "dedupe_hits_total",
			Help: "Events not sent to a target because it had already accepted their messageId.",
		}, []string{"target"}),
		optionalSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "optional_skipped_events_total",
			Help: "Events an optional target was not given because the memory budget (maxBufferedBytes) could not hold its copy of them.",
		}, []string{"target"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "dead_lettered_events_total",
			Help: "Events the dead-letter target accepted, by reason: invalid (failed validation), refused (a required target refused them for good), " +
				"tracking-plan (broke the tracking plan) or malformed (a whole body that holds no usable event).",
		}, []string{"reason"}),
		configReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "config_reloads_total",
			Help: "Config and secret reloads, by result (success or failure; a failure keeps the last good config).",
		}, []string{"result"}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "ready",
			Help: "1 while a valid config is loaded and the receiver is not draining.",
		}),
		planViolations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "tracking_plan_violations_total",
			Help: "Events that broke the tracking plan, by event (a planned track event name, \"unplanned\", or the event type) and action (the plan's onViolation).",
		}, []string{"event", "action"}),
		planUnplanned: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "tracking_plan_unplanned_events_total",
			Help: "Track events whose name the tracking plan does not know (forwarded or blocked as unplannedEvents says).",
		}),
	}
	reg.MustRegister(m.planViolations, m.planUnplanned, m.openConnections, m.connectionsClosed)
	for _, reason := range []string{closedClosing, closedIdle, closedNew, closedFull} {
		m.connectionsClosed.WithLabelValues(reason)
	}
	reg.MustRegister(m.requests, m.events, m.signatureFailures, m.inFlight, m.reading, m.deliveries,
		m.deliveryFailures, m.attempts, m.attemptDuration, m.dedupeHits, m.optionalSkipped, m.deadLettered, m.configReloads, m.ready)
	// Pre-create the reload series so "no failures yet" reads as 0, not as absent.
	m.configReloads.WithLabelValues("success")
	m.configReloads.WithLabelValues("failure")
	m.eventsByType = map[string]prometheus.Counter{otherType: m.events.WithLabelValues(otherType)}
	for _, t := range config.EventTypes {
		m.eventsByType[t] = m.events.WithLabelValues(t)
	}
	m.requestsByCode = map[int]prometheus.Counter{}
	for _, code := range []int{http.StatusOK, http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		m.requestsByCode[code] = m.requests.WithLabelValues(strconv.Itoa(code))
	}
	for _, reason := range deadLetterReasons {
		m.deadLettered.WithLabelValues(reason)
	}
	return m
}

// otherType is the label of every event type the receiver does not know.
const otherType = "other"

// typeLabel bounds a metric label that holds an event type: Lenient mode forwards arbitrary
// types, so unknown ones count as "other".
func typeLabel(eventType string) string {
	if slices.Contains(config.EventTypes, eventType) {
		return eventType
	}
	return otherType
}

// event is the counter of an event's type label (typeLabel's rule, in one lookup).
func (m *metrics) event(eventType string) prometheus.Counter {
	c, ok := m.eventsByType[eventType]
	if !ok {
		c = m.eventsByType[otherType]
	}
	return c
}

// tally holds a request's counts until it is known to proceed: a request refused 429 once its
// events are routed is retried by Segment, and would count its events twice.
type tally map[prometheus.Counter]float64

func (t tally) inc(c prometheus.Counter) { t[c]++ }

// apply adds the counts to their counters.
func (t tally) apply() {
	for c, n := range t {
		c.Add(n)
	}
}

// deadLetter counts one event the dead-letter target accepted, by its reason.
func (m *metrics) deadLetter(reason string) { m.deadLettered.WithLabelValues(reason).Inc() }

// request counts one answer; the codes of the busy path are looked up once.
func (m *metrics) request(code int) {
	if c, ok := m.requestsByCode[code]; ok {
		c.Inc()
		return
	}
	m.requests.WithLabelValues(strconv.Itoa(code)).Inc()
}
