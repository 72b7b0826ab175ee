// Package receiver is the Segment webhook receiver: it authenticates Segment's requests, decodes
// and validates the events, routes them to the configured targets and answers 2xx only once every
// required target has accepted every event (see DESIGN.md, "Delivery guarantee").
//
// A request passes through small stages: authenticate (auth.go), decode and validate (event.go),
// route (route.go), deliver (deliver.go, target_*.go). server.go holds the HTTP surface and
// reload.go swaps in new config and secrets while requests keep flowing.
package receiver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"
	"golang.org/x/sync/semaphore"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// Retry-After values, in seconds. Segment applies its own backoff; these are hints for others.
const (
	retryAfterUnavailable = 5
	retryAfterOverloaded  = 2
)

// Defaults for Options.
const (
	DefaultShutdownTimeout = 20 * time.Second
	DefaultPollInterval    = 10 * time.Second
)

// metricsLimits bound the metrics server: only Prometheus (and a curious person) scrapes it, so
// a few connections, each with short timeouts; a variable for the tests.
var metricsLimits = struct {
	readHeader, read, write, idle time.Duration
	conns                         int
}{readHeader: 5 * time.Second, read: 10 * time.Second, write: 30 * time.Second, idle: time.Minute, conns: 16}

// Options tune a Server beyond its config file.
type Options struct {
	// Logger receives JSON logs; nil logs to stderr at Info.
	Logger *slog.Logger
	// Registry receives the metrics; nil makes a private one with Go and process collectors.
	Registry *prometheus.Registry
	// Addr and MetricsAddr override the config's ports (tests use "127.0.0.1:0").
	Addr, MetricsAddr string
	// DrainDelay is how long Run keeps serving while unready after ctx ends, so that load
	// balancers stop sending first.
	DrainDelay time.Duration
	// ShutdownTimeout bounds waiting for in-flight requests once draining is over.
	ShutdownTimeout time.Duration
	// PollInterval re-checks the config and secret files in case a file event is missed;
	// 0 means DefaultPollInterval, a negative value turns polling off.
	PollInterval time.Duration
	// BodyGrace and MinBodyRate (bytes per second) bound how slowly a body may arrive: its read
	// deadline is the grace plus its bytes at that rate (see readingPool). 0 means the defaults.
	BodyGrace   time.Duration
	MinBodyRate int64
}

// Server is a receiver: the webhook and health endpoints on one listener, metrics on another.
type Server struct {
	configPath string
	opts       Options
	log        *slog.Logger
	registry   *prometheus.Registry
	metrics    *metrics

	current    atomic.Pointer[pipeline]
	draining   atomic.Bool
	inFlight   atomic.Int64        // requests authenticated and being delivered
	readers    *readingPool        // requests whose bodies are being read, not yet authenticated
	conns      *connTracker        // the webhook listener's open connections, capped
	bodies     *semaphore.Weighted // bytes of request bodies, decoded events and background deliveries held at once
	bodyBudget int64               // the semaphore's size: limits.maxBufferedBytes of the first config loaded
	background sync.WaitGroup      // optional-target deliveries still running
	dedupe     *dedupeStore

	reloadMu    sync.Mutex
	loadedKey   string // fingerprint of the config and secrets in use
	failedKey   string // fingerprint of the last bad files, so a poll does not re-report them
	startConfig *config.Config

	httpServer, metricsServer *http.Server
	listener, metricsListener net.Listener
}

// NewServer loads the config at configPath and binds the listeners. A config that cannot be
// loaded is not fatal: the server starts unready (webhook answers 503, so Segment retries) and
// keeps watching the files until a valid config appears.
func NewServer(configPath string, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.BodyGrace <= 0 {
		opts.BodyGrace = DefaultBodyGrace
	}
	if opts.MinBodyRate <= 0 {
		opts.MinBodyRate = DefaultMinBodyRate
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	s := &Server{
		configPath: configPath,
		opts:       opts,
		log:        opts.Logger,
		registry:   reg,
		metrics:    newMetrics(reg),
		dedupe:     newDedupeStore(),
	}
	s.readers = &readingPool{rate: opts.MinBodyRate, grace: opts.BodyGrace, reading: s.metrics.reading}
	if err := s.Reload(); err != nil {
		s.log.Error("no valid config yet; serving unready until one appears", "path", configPath, "error", err)
	}
	start := s.startupConfig()
	s.startConfig = start
	addr := opts.Addr
	if addr == "" {
		addr = fmt.Sprintf(":%d", start.Port)
	}
	metricsAddr := opts.MetricsAddr
	if metricsAddr == "" {
		metricsAddr = fmt.Sprintf(":%d", start.MetricsPort)
	}
	var err error
	if s.listener, err = net.Listen("tcp", addr); err != nil {
		return nil, err
	}
	if s.metricsListener, err = net.Listen("tcp", metricsAddr); err != nil {
		_ = s.listener.Close()
		return nil, err
	}
	errorLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	s.httpServer = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: start.Limits.ReadHeaderTimeout.Duration,
		ReadTimeout:       start.Limits.ReadTimeout.Duration,
		WriteTimeout:      start.Limits.WriteTimeout.Duration,
		IdleTimeout:       start.Limits.IdleTimeout.Duration,
		MaxHeaderBytes:    start.Limits.MaxHeaderBytes,
		ErrorLog:          errorLog,
	}
	// Connections cost memory whatever they do; past the cap, the one waiting longest goes.
	s.conns = newConnTracker(maxConnections(start.Limits.MaxInFlight), s.metrics)
	s.httpServer.ConnState = s.conns.connState
	s.httpServer.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c)
	}
	metricsMux := http.NewServeMux()
	metricsMux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	s.metricsListener = netutil.LimitListener(s.metricsListener, metricsLimits.conns)
	s.metricsServer = &http.Server{
		Handler:           metricsMux,
		ReadHeaderTimeout: metricsLimits.readHeader,
		ReadTimeout:       metricsLimits.read,
		WriteTimeout:      metricsLimits.write,
		IdleTimeout:       metricsLimits.idle,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          errorLog,
	}
	s.updateReadyGauge()
	return s, nil
}

// startupConfig is the config whose ports and server timeouts the listeners use. Those take
// effect at start only. Without a valid config, the ports are read leniently from the file.
func (s *Server) startupConfig() *config.Config {
	if p := s.current.Load(); p != nil {
		return p.cfg
	}
	c := &config.Config{}
	if data, err := os.ReadFile(s.configPath); err == nil {
		_ = json.Unmarshal(data, c)
	}
	fallback := &config.Config{}
	fallback.Default()
	if c.Port < 1 || c.Port > 65535 || c.MetricsPort < 1 || c.MetricsPort > 65535 || c.Port == c.MetricsPort {
		c.Port, c.MetricsPort = fallback.Port, fallback.MetricsPort
	}
	fallback.Port, fallback.MetricsPort = c.Port, c.MetricsPort
	return fallback
}

// Addr is the webhook listener's address.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// MetricsAddr is the metrics listener's address.
func (s *Server) MetricsAddr() string { return s.metricsListener.Addr().String() }

// Registry holds the server's metrics.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// Ready reports whether a valid config is loaded and the server is not draining.
func (s *Server) Ready() bool { return s.current.Load() != nil && !s.draining.Load() }

func (s *Server) updateReadyGauge() {
	if s.Ready() {
		s.metrics.ready.Set(1)
	} else {
		s.metrics.ready.Set(0)
	}
}

// Run serves until ctx ends, then shuts down gracefully: unready at once, still serving for
// DrainDelay, then no new connections while in-flight requests (and optional-target deliveries)
// finish within ShutdownTimeout. It returns nil after a clean shutdown.
func (s *Server) Run(ctx context.Context) error {
	serveErr := make(chan error, 2)
	go func() { serveErr <- s.httpServer.Serve(s.listener) }()
	go func() { serveErr <- s.metricsServer.Serve(s.metricsListener) }()
	watchCtx, stopWatching := context.WithCancel(context.Background())
	watching := make(chan struct{})
	go func() { defer close(watching); s.watch(watchCtx) }()

	var failure error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		failure = fmt.Errorf("serving: %w", err)
	}

	s.draining.Store(true)
	s.updateReadyGauge()
	if failure == nil && s.opts.DrainDelay > 0 {
		s.log.Info("draining: unready, still serving", "delay", s.opts.DrainDelay.String())
		timer := time.NewTimer(s.opts.DrainDelay)
		select {
		case <-timer.C:
		case err := <-serveErr:
			timer.Stop()
			failure = fmt.Errorf("serving: %w", err)
		}
	}
	s.log.Info("shutting down: finishing in-flight requests", "timeout", s.opts.ShutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	err := s.httpServer.Shutdown(shutdownCtx)
	if err == nil {
		// No handler runs any more, so no optional delivery can start: wait for those running.
		backgroundDone := make(chan struct{})
		go func() { s.background.Wait(); close(backgroundDone) }()
		select {
		case <-backgroundDone:
		case <-shutdownCtx.Done():
			err = errors.New("optional-target deliveries still running at shutdown")
		}
	}
	err = errors.Join(failure, err, s.metricsServer.Shutdown(shutdownCtx))
	// Stop reloading before closing the targets, so no new pipeline appears after that.
	stopWatching()
	<-watching
	if p := s.current.Load(); p != nil {
		p.retire()
	}
	if err != nil {
		return err
	}
	s.log.Info("shut down cleanly")
	return nil
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/healthz":
		s.serveHealth(w, r, true)
		return
	case "/readyz":
		s.serveHealth(w, r, s.Ready())
		return
	}
	p := acquire(&s.current)
	if p == nil {
		s.metrics.requests.WithLabelValues(strconv.Itoa(unavailable(w, "not ready"))).Inc()
		return
	}
	defer p.release()
	if r.URL.Path != p.cfg.Path {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "not found"})
		return
	}
	start := time.Now()
	code, events, reason := s.serveWebhook(w, r, p, start)
	s.metrics.request(code)
	level := slog.LevelDebug
	switch {
	case code >= 500, code == http.StatusTooManyRequests:
		level = slog.LevelWarn
	case code >= 400:
		level = slog.LevelInfo
	}
	if !s.log.Enabled(r.Context(), level) {
		return // the common 200 at Info: skip building the attributes
	}
	// Never log bodies or headers: they carry user data and credentials.
	s.log.Log(r.Context(), level, "webhook request", "method", r.Method, "code", code,
		"events", events, "reason", reason, "duration", time.Since(start).String(), "remote", r.RemoteAddr)
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request, ok bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "method not allowed"})
		return
	}
	if !ok {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unready"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

type errorBody struct {
	Error  string `json:"error"`
	Index  *int   `json:"index,omitempty"`
	Field  string `json:"field,omitempty"`
	Reason string `json:"reason,omitempty"`
	Limit  int64  `json:"limit,omitempty"`
}

// serveWebhook runs the stages in order, cheapest refusal first, and returns the status code,
// the number of events and, for refusals, a reason for the log.
func (s *Server) serveWebhook(w http.ResponseWriter, r *http.Request, p *pipeline, start time.Time) (int, int, string) {
	cfg := p.cfg
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		w.Header().Set("Allow", "POST, PUT, PATCH")
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "method not allowed"})
		return http.StatusMethodNotAllowed, 0, "method"
	}

	if !p.auth.precheck(r.Header) {
		s.metrics.signatureFailures.Inc()
		s.closeUnread(w, r)
		writeJSON(w, http.StatusUnauthorized, errorBody{Error: "unauthorized"})
		return http.StatusUnauthorized, 0, "credentials missing or wrong"
	}

	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "application/json" {
		s.closeUnread(w, r)
		writeJSON(w, http.StatusUnsupportedMediaType, errorBody{Error: "content type must be application/json"})
		return http.StatusUnsupportedMediaType, 0, "content type"
	}

	limit := cfg.Limits.MaxBodyBytes
	if r.ContentLength > limit {
		return s.tooLarge(w, r, limit), 0, "content length"
	}
	// Until the body is read its signature cannot be checked: the read holds a reading slot and
	// the readers' share of memory, not a delivery slot (see readingPool). The body's memory is
	// reserved as it arrives, so a client that declares a large body and sends little holds little.
	var readEnd time.Time
	if d := cfg.Limits.ReadTimeout.Duration; d > 0 {
		readEnd = start.Add(d)
	}
	br := newBodyReader(w, start, readEnd)
	if !s.readers.admit(br, cfg.Limits.MaxInFlight) {
		s.closeUnread(w, r)
		return overloaded(w), 0, "reading slots"
	}
	body, reserved, err := s.readBody(w, r, limit, br, readingShare(s.bodyBudget, limit))
	s.readers.leave(br)
	defer s.bodies.Release(reserved)
	if err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			return s.tooLarge(w, r, limit), 0, "body size"
		case errors.Is(err, errOverBudget), errors.Is(err, errReadingFull):
			s.closeAfter(w, r) // the rest of the body is not read
			return overloaded(w), 0, "buffered bytes limit"
		case errors.Is(err, errEvicted), errors.Is(err, os.ErrDeadlineExceeded):
			s.closeAfter(w, r)
			writeJSON(w, http.StatusRequestTimeout, errorBody{Error: "body too slow"})
			return http.StatusRequestTimeout, 0, "body too slow"
		}
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "could not read body"})
		return http.StatusBadRequest, 0, "reading body"
	}
	// Back to the request's own read deadline (net/http's background read runs until the answer).
	_ = br.conn.SetReadDeadline(readEnd)

	scanner := newEventScanner(body, cfg.Validation, cfg.Limits.MaxEvents)
	defer scanner.release()
	if !p.auth.verifyBody(r.Header, body, scanner.firstElement) {
		s.metrics.signatureFailures.Inc()
		writeJSON(w, http.StatusUnauthorized, errorBody{Error: "unauthorized"})
		return http.StatusUnauthorized, 0, "signature"
	}

	// Authenticated: from here a delivery slot, the budget and the deadline bound the work.
	n := s.inFlight.Add(1)
	s.metrics.inFlight.Inc()
	defer func() {
		s.inFlight.Add(-1)
		s.metrics.inFlight.Dec()
	}()
	if n > int64(cfg.Limits.MaxInFlight) {
		return overloaded(w), 0, "in-flight limit"
	}
	// Each step's memory is reserved before it runs (decoding's is bounded by maxEvents, at most
	// 2 MiB, and reserved once known), at most what the body left of the budget, so that a request
	// alone always fits; the last reservation is what the request then holds.
	work := reservation{sem: s.bodies, limit: s.bodyBudget - reserved}
	defer work.release()
	decoded, verr := scanner.finish()
	var malformed []Event
	if verr != nil && verr.Status == http.StatusBadRequest && p.deadLetter != nil {
		// Segment does not retry a 400: a body that cannot be split into events goes to the
		// dead-letter target whole instead, and none of its events anywhere else.
		decoded, verr, malformed = decodedBody{}, nil, []Event{malformedLetter(cfg.Source, body, verr)}
	}
	if verr == nil && len(decoded.invalid) > 0 && p.deadLetter == nil {
		// Without a dead-letter target an invalid event refuses the whole request, so that
		// nothing is half-delivered; Segment does not retry a 400, so the batch is dropped.
		verr = decoded.invalid[0].err
	}
	if verr != nil {
		resp := errorBody{Error: "invalid event", Field: verr.Field, Reason: verr.Reason}
		if verr.Index >= 0 {
			resp.Index = &verr.Index
		}
		if verr.Status == http.StatusRequestEntityTooLarge {
			resp.Error, resp.Limit = "too many events", int64(cfg.Limits.MaxEvents)
		}
		writeJSON(w, verr.Status, resp)
		return verr.Status, 0, verr.Error()
	}
	counts := tally{}
	for _, ev := range decoded.events {
		counts.inc(s.metrics.event(ev.Type))
	}
	decodedEvents := len(decoded.events) + len(decoded.invalid)
	decodedMemory := int64(decodedEvents) * eventMemory
	if !work.grow(decodedMemory + p.plan.memory(decoded.events)) {
		return overloaded(w), 0, "buffered bytes limit"
	}
	blocked, rewritten := p.plan.enforce(&decoded, counts)
	events := decoded.events
	if !work.grow(decodedMemory + rewritten + p.prepareMemory(events, body, malformed)) {
		return overloaded(w), 0, "buffered bytes limit"
	}
	deliveries, refused := p.prepare(events, counts)
	// What the request holds besides its body counts against the same budget as the bodies.
	if !work.set(heldMemory(p, body, decodedEvents, rewritten, deliveries, malformed)) {
		return overloaded(w), 0, "buffered bytes limit"
	}
	counts.apply()

	// The budget runs from the request's arrival. Deliveries do not stop when Segment hangs up:
	// what is accepted before the deadline is remembered and spares targets on the retry.
	ctx, cancel := context.WithDeadline(context.WithoutCancel(r.Context()), start.Add(deliveryTimeout(cfg.Delivery.Budget.Duration)))
	defer cancel()
	failed, refused := p.deliver(ctx, deliveries, refused, s.bodies, &s.background)
	total := len(events) + len(decoded.invalid) + blocked
	if failed || (len(refused) > 0 && p.deadLetter == nil) {
		return unavailable(w, "delivery failed; retry later"), total, "delivery"
	}
	letters := append(deadLetters(cfg.Source, decoded.invalid, refused), malformed...)
	if len(letters) > 0 && !s.sendDeadLetters(ctx, p, letters) {
		return unavailable(w, "dead-letter delivery failed; retry later"), total, "dead-letter delivery"
	}
	acceptedBody{Accepted: total, DeadLettered: len(letters), Blocked: blocked}.write(w)
	return http.StatusOK, total, ""
}

// sendDeadLetters sends letters to the dead-letter target and counts them by reason; false when
// the target does not have them all.
func (s *Server) sendDeadLetters(ctx context.Context, p *pipeline, letters []Event) bool {
	sent, ok := p.sendDeadLetters(ctx, letters)
	for _, letter := range sent {
		s.metrics.deadLetter(letter.Attributes[deadLetterReasonAttribute])
	}
	return ok
}

// eventMemory estimates what one decoded event holds besides its bytes: the Event, its strings,
// its share of the decoder's slices.
const eventMemory = 512

// reservation is what a request holds of the memory budget besides its body. It grows before
// each step of the work, never past limit.
type reservation struct {
	sem         *semaphore.Weighted
	held, limit int64
}

// grow reserves up to n in all (capped at the limit); false when the budget cannot hold it.
func (r *reservation) grow(n int64) bool {
	n = min(n, r.limit)
	if n <= r.held {
		return true
	}
	if !r.sem.TryAcquire(n - r.held) {
		return false
	}
	r.held = n
	return true
}

// set makes the reservation n (capped at the limit), giving back what it held beyond.
func (r *reservation) set(n int64) bool {
	if n = min(n, r.limit); n < r.held {
		r.sem.Release(r.held - n)
		r.held = n
	}
	return r.grow(n)
}

func (r *reservation) release() {
	r.sem.Release(r.held)
	r.held = 0
}

// heldMemory estimates what a request holds besides its body once its events are routed: its
// decoded events, the events the tracking plan rewrote (rewritten bytes), what each required
// target holds to deliver them (delivery.memory: per event, and the events made for it, with
// dropped fields), the events made for each optional target (held by the request until it ends;
// the background delivery then reserves its own, see deliverInBackground, so they briefly count
// twice) and, with a dead-letter target, envelopes holding each event's bytes at most once (a
// malformed body's envelope, already made).
func heldMemory(p *pipeline, body []byte, decodedEvents int, rewritten int64, deliveries []delivery, malformed []Event) int64 {
	held := int64(decodedEvents)*eventMemory + rewritten
	for _, d := range deliveries {
		if d.route.optional {
			held += d.copied
		} else {
			held += d.memory()
		}
	}
	switch {
	case len(malformed) > 0:
		held += int64(len(malformed[0].Raw))
	case p.deadLetter != nil:
		held += int64(len(body))
	}
	return held
}

// acceptedBody answers a 2xx: accepted counts every event of the request, deadLettered those of
// them (and the refusals) that went to the dead-letter target, blocked those the tracking plan
// dropped.
type acceptedBody struct {
	Accepted     int `json:"accepted"`
	DeadLettered int `json:"deadLettered,omitempty"`
	Blocked      int `json:"blocked,omitempty"`
}

// write answers 200 with the body as writeJSON would encode it, appended by hand: it is the
// answer to nearly every request, and reflection costs allocations each time.
func (a acceptedBody) write(w http.ResponseWriter) {
	var buf [64]byte
	b := append(buf[:0], `{"accepted":`...)
	b = strconv.AppendInt(b, int64(a.Accepted), 10)
	if a.DeadLettered != 0 {
		b = strconv.AppendInt(append(b, `,"deadLettered":`...), int64(a.DeadLettered), 10)
	}
	if a.Blocked != 0 {
		b = strconv.AppendInt(append(b, `,"blocked":`...), int64(a.Blocked), 10)
	}
	setJSONHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(b, "}\n"...))
}

// overloaded answers 429, which Segment retries after its own backoff.
func overloaded(w http.ResponseWriter) int {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterOverloaded))
	writeJSON(w, http.StatusTooManyRequests, errorBody{Error: "overloaded"})
	return http.StatusTooManyRequests
}

// unavailable answers 503, which Segment retries for up to four hours.
func unavailable(w http.ResponseWriter, msg string) int {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterUnavailable))
	writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: msg})
	return http.StatusServiceUnavailable
}

// deliveryTimeout leaves a safety margin of the budget for writing the answer.
func deliveryTimeout(budget time.Duration) time.Duration {
	return budget - min(budget/10, 250*time.Millisecond)
}

// closeUnread closes the connection after a refusal that leaves the body unread: net/http would
// otherwise read what is left of it first, as slowly as the client sends it.
func (s *Server) closeUnread(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength != 0 {
		s.closeAfter(w, r)
	}
}

// closeAfter closes the connection once the answer is written. With the body unread, net/http
// then waits half a second before closing, so that the client reads the answer before a reset;
// meanwhile the connection is the first the connection cap closes to make room (connTracker).
func (s *Server) closeAfter(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Connection", "close")
	if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
		s.conns.markClosing(c)
	}
}

func (s *Server) tooLarge(w http.ResponseWriter, r *http.Request, limit int64) int {
	// The rest of the body is not read, so the connection cannot be reused.
	s.closeAfter(w, r)
	writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{Error: "body too large", Limit: limit})
	return http.StatusRequestEntityTooLarge
}

// errOverBudget: the memory budget cannot hold the rest of a body.
var errOverBudget = errors.New("the memory budget (maxBufferedBytes) is used up")

// readBody reads at most limit bytes; MaxBytesReader also catches chunked bodies and lying
// Content-Length headers. The buffer grows as bytes arrive, doubling from 64 KiB up to the declared
// length (or the limit), and each growth is reserved against maxBufferedBytes first, so a client
// that declares a large body and sends little holds, and reserves, little. The buffer never passes
// the expected size, so a body of maxBodyBytes alone fits a budget of maxBodyBytes. It returns the
// bytes reserved, which the caller releases, errors included.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, limit int64, br *bodyReader, share int64) (body []byte, reserved int64, err error) {
	reader := http.MaxBytesReader(w, r.Body, limit)
	size := int(limit)
	if r.ContentLength >= 0 {
		size = int(r.ContentLength)
	}
	grow := func(n int) error {
		if err := s.readers.reserve(br, int64(n), share); err != nil {
			return err
		}
		if !s.bodies.TryAcquire(int64(n)) {
			return errOverBudget
		}
		reserved += int64(n)
		grown := make([]byte, len(body), cap(body)+n) // exactly what was reserved
		copy(grown, body)
		body = grown
		s.readers.extend(br, cap(body))
		return nil
	}
	if err := grow(min(size, 64<<10)); err != nil {
		return nil, reserved, err
	}
	var probe [1]byte
	for {
		var n int
		switch {
		case len(body) < cap(body):
			n, err = reader.Read(body[len(body):cap(body)])
			body = body[:len(body)+n]
			br.received.Store(int64(len(body)))
		case len(body) < size:
			if err := grow(min(cap(body), size-len(body))); err != nil {
				return nil, reserved, err
			}
			continue
		default:
			// Full at the expected size: a byte read aside tells whether the body ends here.
			// MaxBytesReader refuses a byte past the limit, and net/http stops at Content-Length.
			if n, err = reader.Read(probe[:]); n > 0 {
				return nil, reserved, errors.New("body longer than its Content-Length")
			}
		}
		switch {
		case err == io.EOF:
			return body, reserved, nil
		case err != nil:
			return nil, reserved, err
		}
	}
}

func writeJSON(w http.ResponseWriter, code int, body any) {
	setJSONHeaders(w.Header())
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

// The values of the headers of every JSON answer, shared (net/http only reads them; Set and Add
// on a header replace or copy its slice).
var (
	jsonContentType = []string{"application/json"}
	noSniff         = []string{"nosniff"}
)

func setJSONHeaders(h http.Header) {
	h["Content-Type"] = jsonContentType
	h["X-Content-Type-Options"] = noSniff
}
