package receiver

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// establishedTo counts the server side of the established TCP connections on port: the sockets
// of this host whose local port it is (/proc/net/tcp and tcp6, state 01).
func establishedTo(t testing.TB, port int) int {
	t.Helper()
	n := 0
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			t.Fatal(err)
		}
		for _, line := range bytes.Split(b, []byte("\n"))[1:] {
			fields := strings.Fields(string(line))
			if len(fields) < 4 || fields[3] != "01" {
				continue
			}
			local := fields[1]
			p, err := strconv.ParseUint(local[strings.LastIndexByte(local, ':')+1:], 16, 16)
			if err == nil && int(p) == port {
				n++
			}
		}
	}
	return n
}

// idleConn opens a keep-alive connection, makes one request on it and leaves it idle.
func idleConn(addr string) (net.Conn, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		conn.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return conn, nil
}

// Thousands of idle keep-alive connections do not pile up (each holds about 20 KB of the
// receiver's memory): past the connection cap (4 × maxInFlight, at least 64) the connections idle longest
// are closed to make room, new connections are still accepted at once (a signed request gets
// 200 beside them), and a request in progress is answered, never cut.
func TestIdleConnectionsAreCapped(t *testing.T) {
	target := newSink(t)
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	cfg := testConfig(secrets, httpTargetTo("primary", target))
	cfg.Limits.MaxInFlight = 8 // a cap of 64 connections
	connCap := maxConnections(cfg.Limits.MaxInFlight)
	h := startHarness(t, secrets, cfg)
	addr := h.server.Addr()
	port := h.server.listener.Addr().(*net.TCPAddr).Port

	// A request in progress: its delivery waits at the sink while the idle connections arrive.
	release := target.hold()
	defer release()
	inProgress := make(chan error, 1)
	go func() {
		body := track("in-progress")
		req, _ := http.NewRequest(http.MethodPost, h.url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(SignatureHeader, hmacHex(h.secret, body))
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		inProgress <- err
	}()
	waitArrival(t, target)

	const idle = 2000
	conns := make([]net.Conn, idle)
	var mu sync.Mutex
	failed := 0
	var wg sync.WaitGroup
	next := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				conn, err := idleConn(addr)
				mu.Lock()
				if err != nil {
					failed++
				} else {
					conns[i] = conn
				}
				mu.Unlock()
			}
		}()
	}
	for i := range idle {
		next <- i
	}
	close(next)
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	// A connection of the flood may be closed before its request is read, when as many newer
	// ones as the cap arrive first (its goroutine not yet scheduled): the flood's own loss.
	if failed > idle/20 {
		t.Errorf("%d of %d connections could not make their one request", failed, idle)
	}
	t.Logf("%d of the flood's connections were closed before their request was read", failed)

	// The server's side of the connections: at most the cap (with slack for the ones closing).
	var open int
	deadline := time.Now().Add(5 * time.Second)
	for {
		if open = establishedTo(t, port); open <= connCap || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("after %d idle keep-alive connections the server holds %d (cap %d)", idle, open, connCap)
	if open > connCap {
		t.Errorf("the server holds %d established connections after %d idle ones, want at most %d", open, idle, connCap)
	}

	// The request in progress was answered (its budget may have run out meanwhile: 503), not cut.
	release()
	if err := <-inProgress; err != nil {
		t.Errorf("the request in progress during the flood got no answer: %v", err)
	}

	if got := h.metric("segment_receiver_open_connections"); got > float64(connCap) {
		t.Errorf("open_connections = %v, want at most %d", got, connCap)
	}
	closed := h.metric("segment_receiver_connections_closed_for_room_total", "reason", closedIdle) +
		h.metric("segment_receiver_connections_closed_for_room_total", "reason", closedNew)
	if closed < float64(idle-connCap) {
		t.Errorf("connections_closed_for_room_total = %v, want at least %d", closed, idle-connCap)
	}

	// A new connection is accepted at once and served.
	start := time.Now()
	if resp := h.postWithin(track("beside-idle"), 5*time.Second); resp.code != http.StatusOK {
		t.Errorf("a signed request beside %d idle connections: %d %s", idle, resp.code, resp.body)
	}
	t.Logf("a signed request beside them: %s", time.Since(start).Round(time.Millisecond))

	// The newest idle connection is still usable; the oldest was closed.
	last := conns[idle-1]
	for i := idle - 1; last == nil && i > 0; i-- {
		last = conns[i-1]
	}
	if last != nil {
		if _, err := io.WriteString(last, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Errorf("the newest idle connection: %v", err)
		} else if resp, err := http.ReadResponse(bufio.NewReader(last), nil); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("the newest idle connection was not served: %v %v", resp, err)
		}
	}
	if first := conns[0]; first != nil && !closedWithin(first, 2*time.Second) {
		t.Error("the oldest idle connection is still open")
	}
	if got := target.acceptedIDs()["beside-idle"]; got != 1 {
		t.Errorf("the sink got the signed request %d times, want once", got)
	}
}

// The tracker closes a connection answered and closing first, else the one waiting longest, new
// or idle, never one serving a request; when every connection serves one, the newcomer is closed.
func TestConnTrackerEvictsTheLongestWaiting(t *testing.T) {
	m := newMetrics(prometheus.NewRegistry())
	tr := newConnTracker(3, m)
	conns := make([]*fakeConn, 8)
	for i := range conns {
		conns[i] = &fakeConn{}
	}
	want := map[int]bool{}
	check := func(step string) {
		t.Helper()
		for i, c := range conns {
			if c.closed != want[i] {
				t.Fatalf("%s: closed %v, want %v", step, closedOf(conns), want)
			}
		}
	}
	tr.connState(conns[0], http.StateNew)
	tr.connState(conns[1], http.StateNew)
	tr.connState(conns[2], http.StateNew)
	tr.connState(conns[0], http.StateActive)
	tr.connState(conns[0], http.StateIdle)
	tr.connState(conns[1], http.StateActive)
	tr.connState(conns[1], http.StateIdle) // waiting: 2 (new), 0 (idle), 1 (idle)
	tr.connState(conns[3], http.StateNew)  // full: 2, waiting longest, goes
	want[2] = true
	check("a new connection")
	tr.connState(conns[2], http.StateClosed) // net/http's goroutine ends: counted once
	tr.connState(conns[1], http.StateActive)
	tr.connState(conns[4], http.StateNew) // 0, idle, waiting longer than 3, new, goes
	want[0] = true
	check("an idle connection")
	tr.connState(conns[3], http.StateActive)
	tr.connState(conns[4], http.StateActive)
	tr.connState(conns[5], http.StateNew) // every connection serves a request: the newcomer goes
	want[5] = true
	check("the newcomer")
	tr.connState(conns[1], http.StateClosed)
	tr.connState(conns[6], http.StateNew) // room again
	check("room")
	tr.markClosing(conns[4]) // answered, net/http waits before closing
	tr.connState(conns[6], http.StateActive)
	tr.connState(conns[6], http.StateIdle)
	tr.connState(conns[7], http.StateNew) // 4, closing, goes before 6, idle
	want[4] = true
	check("a closing connection")
	if got := len(tr.conns); got != 3 {
		t.Errorf("%d connections tracked, want 3", got)
	}
	for reason, want := range map[string]float64{closedClosing: 1, closedIdle: 1, closedNew: 1, closedFull: 1} {
		if got := counterValue(t, m.connectionsClosed.WithLabelValues(reason)); got != want {
			t.Errorf("connections_closed_for_room_total{reason=%s} = %v, want %v", reason, got, want)
		}
	}
}

type fakeConn struct {
	net.Conn
	closed bool
}

func (c *fakeConn) Close() error { c.closed = true; return nil }

func closedOf(conns []*fakeConn) []bool {
	out := make([]bool, len(conns))
	for i, c := range conns {
		out[i] = c.closed
	}
	return out
}
