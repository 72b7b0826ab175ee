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

// Why a connection was closed to make room (label reason of connections_closed_total).
const (
	closedIdle = "idle" // waiting for its next request
	closedNew  = "new"  // no complete request yet, and no idle connection to close instead
	closedFull = "full" // the newcomer itself: every open connection had a request in progress
)

// connTracker caps the open connections of an http.Server through its ConnState hook. Instead of
// blocking Accept when full, which would leave Segment's new connections in the kernel's backlog
// behind connections that do nothing, a newcomer past the cap closes a connection that waits
// without a request in progress: the one idle longest between requests (a client reopens it when
// it needs it), else the oldest still without complete request headers (a slow or silent client;
// a newcomer is spared for as long as idle ones remain). Connections serving a request are never
// closed; when every one is, the newcomer is closed instead (Segment retries). Under pressure the
// idle timeout is thus as short as the cap makes it, and connections that hold on doing nothing
// push out one another.
type connTracker struct {
	max    int
	open   prometheus.Gauge
	closed *prometheus.CounterVec

	mu    sync.Mutex
	conns map[net.Conn]*trackedConn
	idle  connList // between requests, the longest idle first
	fresh connList // no complete request yet, the oldest first
}

type trackedConn struct {
	conn       net.Conn
	prev, next *trackedConn
	list       *connList // the list it waits in; nil while it serves a request
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
			case t.idle.head != nil:
				t.evict(t.idle.head, closedIdle)
			case t.fresh.head != nil:
				t.evict(t.fresh.head, closedNew)
			default:
				t.closed.WithLabelValues(closedFull).Inc()
				_ = c.Close()
				return
			}
		}
		tc := &trackedConn{conn: c}
		t.conns[c] = tc
		t.fresh.push(tc)
	case http.StateActive:
		if tc := t.conns[c]; tc != nil {
			tc.unlink()
		}
	case http.StateIdle:
		if tc := t.conns[c]; tc != nil {
			tc.unlink()
			t.idle.push(tc)
		}
	case http.StateHijacked, http.StateClosed:
		if tc := t.conns[c]; tc != nil {
			tc.unlink()
			delete(t.conns, c)
		}
	}
	t.open.Set(float64(len(t.conns)))
}

// evict closes a waiting connection; net/http's goroutine for it then ends (its StateClosed finds
// it gone).
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
