package receiver

import (
	"net"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Connections the webhook listener keeps open: 4 per maxInFlight slot (one reading a body, one
// delivering, and as many again waiting for their next request: Segment's and proxies'
// keep-alive pools), at least 64. Each open connection holds about 20 KB of the receiver
// (buffers, goroutine, socket); test/abuse measured 216 MiB for 10,000 idle ones, so the default
// of 1,024 is about 20 MiB.
const (
	connectionsPerSlot = 4
	minConnections     = 64
)

// maxConnections is the webhook listener's connection cap for maxInFlight.
func maxConnections(maxInFlight int) int {
	return max(minConnections, connectionsPerSlot*maxInFlight)
}

// Why a connection was closed to make room (label reason of connections_closed_for_room_total).
const (
	closedClosing = "closing" // answered and about to close (see Server.closeAfter)
	closedIdle    = "idle"    // waiting for its next request
	closedNew     = "new"     // no complete request yet
	closedFull    = "full"    // the newcomer itself: every open connection had a request in progress
)

// connKey holds a request's net.Conn in its context (http.Server.ConnContext).
type connKey struct{}

// connTracker caps the open connections of an http.Server through its ConnState hook. Instead of
// blocking Accept when full, which would leave Segment's new connections in the kernel's backlog
// behind connections that do nothing, a newcomer past the cap closes another connection:
//
//   - first one already answered that only waits out net/http's half second before closing (a
//     refusal that left its body unread: 408, 413, 429...), the oldest first. Such refusals come
//     as fast as a hostile client reconnects, so these would otherwise fill the cap;
//   - else the connection that has waited longest without a request in progress: idle between
//     requests (its client reopens one when it needs it), or new without complete request
//     headers (a slow or silent client). A keep-alive connection in use, such as Segment's,
//     waits milliseconds between requests and is the last to go.
//
// Connections serving a request are never closed; when every one is, the newcomer is closed
// instead (Segment retries). Under pressure the idle timeout is thus as short as the cap makes
// it, and connections that hold on doing nothing push out one another.
type connTracker struct {
	max    int
	open   prometheus.Gauge
	closed *prometheus.CounterVec

	mu      sync.Mutex
	conns   map[net.Conn]*trackedConn
	closing connList // answered, closing: the oldest first
	waiting connList // new or idle: the longest waiting first
}

type trackedConn struct {
	conn       net.Conn
	prev, next *trackedConn
	list       *connList      // nil while it serves a request
	state      http.ConnState // StateNew, StateIdle or StateActive
}

type connList struct{ head, tail *trackedConn }

func newConnTracker(limit int, m *metrics) *connTracker {
	return &connTracker{max: limit, open: m.openConnections, closed: m.connectionsClosed, conns: map[net.Conn]*trackedConn{}}
}

// connState is the http.Server's ConnState hook. net/http calls it for StateNew in its accept
// loop, before serving the connection, and for the others in the connection's goroutine; a
// connection is active once its request headers are read.
func (t *connTracker) connState(c net.Conn, state http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch state {
	case http.StateNew:
		for len(t.conns) >= t.max {
			switch {
			case t.closing.head != nil:
				t.evict(t.closing.head, closedClosing)
			case t.waiting.head != nil && t.waiting.head.state == http.StateNew:
				t.evict(t.waiting.head, closedNew)
			case t.waiting.head != nil:
				t.evict(t.waiting.head, closedIdle)
			default:
				t.closed.WithLabelValues(closedFull).Inc()
				_ = c.Close()
				return
			}
		}
		tc := &trackedConn{conn: c, state: state}
		t.conns[c] = tc
		t.waiting.push(tc)
	case http.StateActive, http.StateIdle:
		if tc := t.conns[c]; tc != nil && tc.list != &t.closing {
			tc.unlink()
			tc.state = state
			if state == http.StateIdle {
				t.waiting.push(tc)
			}
		}
	case http.StateHijacked, http.StateClosed:
		if tc := t.conns[c]; tc != nil {
			tc.unlink()
			delete(t.conns, c)
		}
	}
	t.open.Set(float64(len(t.conns)))
}

// markClosing marks c as answered and closing once its answer is written.
func (t *connTracker) markClosing(c net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tc := t.conns[c]; tc != nil && tc.list != &t.closing {
		tc.unlink()
		t.closing.push(tc)
	}
}

// evict closes a connection; net/http's goroutine for it then ends (its StateClosed finds it
// gone).
func (t *connTracker) evict(tc *trackedConn, reason string) {
	tc.unlink()
	delete(t.conns, tc.conn)
	t.closed.WithLabelValues(reason).Inc()
	_ = tc.conn.Close()
}

func (l *connList) push(tc *trackedConn) {
	tc.prev, tc.next, tc.list = l.tail, nil, l
	if l.tail != nil {
		l.tail.next = tc
	} else {
		l.head = tc
	}
	l.tail = tc
}

func (tc *trackedConn) unlink() {
	l := tc.list
	if l == nil {
		return
	}
	if tc.prev != nil {
		tc.prev.next = tc.next
	} else {
		l.head = tc.next
	}
	if tc.next != nil {
		tc.next.prev = tc.prev
	} else {
		l.tail = tc.prev
	}
	tc.prev, tc.next, tc.list = nil, nil, nil
}
