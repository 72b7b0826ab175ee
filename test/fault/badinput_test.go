package fault

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segment-webhook-operator/segment-webhook-operator/internal/segmentsim"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

const (
	badSecret         = "bad-input-secret"
	badMaxBody        = 64 << 10
	badMaxEvents      = 10
	badMaxHeader      = 8 << 10
	badReadHeaderTime = 500 * time.Millisecond
)

var goodCounter atomic.Int64

// rawExchange writes a hand-made request on a fresh connection and reads one response. It
// returns the status code (0 when the connection was closed without an answer).
func rawExchange(t *testing.T, addr string, head string, body []byte) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	// The request may be refused before it is all written; the answer is still there to read.
	_, _ = conn.Write(append([]byte(head), body...))
	return readResponse(t, bufio.NewReader(conn))
}

func readResponse(t *testing.T, br *bufio.Reader) (int, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b)
}

func head(method, path string, headers ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: receiver\r\n", method, path)
	for i := 0; i+1 < len(headers); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", headers[i], headers[i+1])
	}
	b.WriteString("\r\n")
	return b.String()
}

func signedHead(body []byte, extra ...string) string {
	h := append([]string{"Content-Type", "application/json", "X-Signature", segmentsim.Sign(badSecret, body),
		"Content-Length", strconv.Itoa(len(body))}, extra...)
	return head("POST", config.DefaultPath, h...)
}

func TestBadInput(t *testing.T) {
	target := newSink(t, "target")
	secretVol := newVolume(t, map[string]string{"hmac": badSecret + "\n"})
	cfg := &config.Config{
		Source:         "fault/bad-input",
		Authentication: config.Authentication{Mode: config.AuthHMAC, SecretFiles: []string{secretVol.Path("hmac")}},
		Validation:     config.ValidationStrict,
		Limits: config.Limits{
			MaxBodyBytes: badMaxBody, MaxEvents: badMaxEvents, MaxHeaderBytes: badMaxHeader,
			ReadHeaderTimeout: config.D(badReadHeaderTime),
		},
		Delivery: config.Delivery{Budget: config.D(2 * time.Second)},
		Targets:  []config.Target{{Name: "target", HTTP: &config.HTTPTarget{URL: target.url()}}},
	}
	configVol := newVolume(t, nil)
	writeConfig(t, configVol, cfg)
	recv := startReceiver(t, configVol.Path(config.FileName))
	addr := "127.0.0.1:" + strconv.Itoa(recv.port)

	good := func(t *testing.T) {
		t.Helper()
		body := []byte(segmentsim.Event(fmt.Sprintf("good-%d", goodCounter.Add(1)), 0))
		if code, msg := rawExchange(t, addr, signedHead(body), body); code != http.StatusOK {
			t.Fatalf("a good request after the bad one: %d %s", code, msg)
		}
	}
	track := func(fields string) string {
		return `{"type":"track","event":"E","userId":"u","messageId":"m"` + fields + `}`
	}
	many := func(n int) string {
		var evs []string
		for i := range n {
			evs = append(evs, segmentsim.Event(fmt.Sprintf("many-%d", i), i))
		}
		return "[" + strings.Join(evs, ",") + "]"
	}
	valid := []byte(segmentsim.Event("sig-1", 0))
	bigBody := []byte(`{"type":"track","event":"E","userId":"u","properties":{"pad":"` + strings.Repeat("x", 2*badMaxBody) + `"}}`)

	type tc struct {
		name string
		want int
		// either a body sent signed with a correct Content-Length, or a raw request
		body string
		raw  func() (string, []byte)
	}
	bodyCase := func(name string, want int, body string) tc { return tc{name: name, want: want, body: body} }
	cases := []tc{
		bodyCase("malformed JSON", 400, `{"type":"track",`),
		bodyCase("not JSON at all", 400, `type=track&userId=u`),
		bodyCase("truncated body", 400, track("")[:30]),
		bodyCase("truncated batch", 400, many(3)[:200]),
		bodyCase("trailing garbage", 400, track("")+` {"x":1}`),
		bodyCase("JSON string", 400, `"track"`),
		bodyCase("empty body", 400, ``),
		bodyCase("empty batch", 400, `[]`),
		bodyCase("batch of numbers", 400, `[1,2]`),
		bodyCase("type is a number", 400, `{"type":7,"userId":"u"}`),
		bodyCase("unknown type (strict)", 400, `{"type":"purchase","userId":"u"}`),
		bodyCase("userId is a number", 400, `{"type":"identify","userId":42}`),
		bodyCase("anonymousId is an object", 400, `{"type":"identify","anonymousId":{"id":1}}`),
		bodyCase("messageId is a number", 400, `{"type":"identify","userId":"u","messageId":1}`),
		bodyCase("properties is an array", 400, track(`,"properties":[1]`)),
		bodyCase("context is a string", 400, track(`,"context":"ip"`)),
		bodyCase("timestamp not ISO-8601", 400, track(`,"timestamp":"yesterday"`)),
		bodyCase("timestamp is a number", 400, track(`,"timestamp":1714564800`)),
		bodyCase("no type", 400, `{"userId":"u","event":"E"}`),
		bodyCase("no userId or anonymousId", 400, `{"type":"identify","traits":{}}`),
		bodyCase("track without event", 400, `{"type":"track","userId":"u"}`),
		bodyCase("group without groupId", 400, `{"type":"group","userId":"u"}`),
		bodyCase("alias without previousId", 400, `{"type":"alias","userId":"u"}`),
		bodyCase("alias without userId", 400, `{"type":"alias","previousId":"p","anonymousId":"a"}`),
		bodyCase("delete without userId", 400, `{"type":"delete","anonymousId":"a"}`),
		bodyCase("page without identity", 400, `{"type":"page","name":"Home"}`),
		bodyCase("invalid second event in a batch", 400, "["+segmentsim.Event("b-1", 0)+`,{"type":"track","userId":"u"}]`),
		bodyCase("batch over maxEvents", 413, many(badMaxEvents+1)),
		bodyCase("body over maxBodyBytes", 413, string(bigBody)),
		{name: "chunked body over maxBodyBytes", want: 413, raw: func() (string, []byte) {
			var chunked bytes.Buffer
			for off := 0; off < len(bigBody); off += 4096 {
				chunk := bigBody[off:min(off+4096, len(bigBody))]
				fmt.Fprintf(&chunked, "%x\r\n%s\r\n", len(chunk), chunk)
			}
			chunked.WriteString("0\r\n\r\n")
			return head("POST", config.DefaultPath, "Content-Type", "application/json", "Transfer-Encoding", "chunked",
				"X-Signature", segmentsim.Sign(badSecret, bigBody)), chunked.Bytes()
		}},
		{name: "Content-Length over the limit, no body sent (refused before reading)", want: 413, raw: func() (string, []byte) {
			return head("POST", config.DefaultPath, "Content-Type", "application/json", "X-Signature", segmentsim.Sign(badSecret, valid),
				"Content-Length", strconv.Itoa(100<<20)), nil
		}},
		{name: "wrong method GET", want: 405, raw: func() (string, []byte) { return head("GET", config.DefaultPath), nil }},
		{name: "wrong method DELETE", want: 405, raw: func() (string, []byte) { return head("DELETE", config.DefaultPath), nil }},
		{name: "other path", want: 404, raw: func() (string, []byte) {
			return head("POST", "/other", "Content-Type", "application/json", "Content-Length", "2"), []byte("{}")
		}},
		{name: "content type text/plain", want: 415, raw: func() (string, []byte) {
			return head("POST", config.DefaultPath, "Content-Type", "text/plain", "X-Signature", segmentsim.Sign(badSecret, valid),
				"Content-Length", strconv.Itoa(len(valid))), valid
		}},
		{name: "no content type", want: 415, raw: func() (string, []byte) {
			return head("POST", config.DefaultPath, "X-Signature", segmentsim.Sign(badSecret, valid),
				"Content-Length", strconv.Itoa(len(valid))), valid
		}},
		{name: "content type form", want: 415, raw: func() (string, []byte) {
			return head("POST", config.DefaultPath, "Content-Type", "application/x-www-form-urlencoded", "X-Signature", segmentsim.Sign(badSecret, valid),
				"Content-Length", strconv.Itoa(len(valid))), valid
		}},
		{name: "missing signature", want: 401, raw: func() (string, []byte) {
			return head("POST", config.DefaultPath, "Content-Type", "application/json", "Content-Length", strconv.Itoa(len(valid))), valid
		}},
		{name: "signature not hex", want: 401, raw: func() (string, []byte) { return sigHead(valid, strings.Repeat("zz", 20)), valid }},
		{name: "short signature", want: 401, raw: func() (string, []byte) { return sigHead(valid, segmentsim.Sign(badSecret, valid)[:20]), valid }},
		{name: "signature with the wrong secret", want: 401, raw: func() (string, []byte) { return sigHead(valid, segmentsim.Sign("guess", valid)), valid }},
		{name: "signature over other bytes", want: 401, raw: func() (string, []byte) {
			return sigHead(valid, segmentsim.Sign(badSecret, append([]byte(" "), valid...))), valid
		}},
		{name: "uppercase hex of a wrong MAC", want: 401, raw: func() (string, []byte) {
			return sigHead(valid, strings.ToUpper(segmentsim.Sign("guess", valid))), valid
		}},
		// Hex case carries no meaning: the uppercase spelling of the right MAC is the same MAC.
		{name: "uppercase hex of the right MAC", want: 200, raw: func() (string, []byte) {
			b := []byte(segmentsim.Event("upper-1", 1))
			return sigHead(b, strings.ToUpper(segmentsim.Sign(badSecret, b))), b
		}},
		{name: "batch signed over element 1 instead of 0", want: 401, raw: func() (string, []byte) {
			e0, e1 := segmentsim.Event("el-0", 0), segmentsim.Event("el-1", 1)
			b := []byte("[" + e0 + "," + e1 + "]")
			return sigHead(b, segmentsim.Sign(badSecret, []byte(e1))), b
		}},
		{name: "huge header", want: 431, raw: func() (string, []byte) {
			return head("POST", config.DefaultPath, "Content-Type", "application/json", "X-Padding", strings.Repeat("p", 64<<10),
				"X-Signature", segmentsim.Sign(badSecret, valid), "Content-Length", strconv.Itoa(len(valid))), valid
		}},
		{name: "many headers", want: 431, raw: func() (string, []byte) {
			var hs []string
			for i := range 2000 {
				hs = append(hs, fmt.Sprintf("X-H-%d", i), "v")
			}
			return head("POST", config.DefaultPath, hs...), nil
		}},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			var h string
			var b []byte
			if c.raw != nil {
				h, b = c.raw()
			} else {
				b = []byte(c.body)
				h = signedHead(b)
			}
			code, msg := rawExchange(t, addr, h, b)
			if code != c.want {
				t.Errorf("got %d (%s), want %d", code, strings.TrimSpace(msg), c.want)
			}
			good(t)
		})
	}

	t.Run("lying Content-Length: declares less than is sent", func(t *testing.T) {
		// The receiver reads exactly the declared bytes (here a signed but truncated event), answers
		// for them, and treats the rest as the next request on the connection: junk without a line
		// end, refused as too large a header before it is buffered.
		declared := bigBody[:100]
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = conn.Write(append([]byte(signedHead(declared)), bigBody...))
		br := bufio.NewReader(conn)
		if code, msg := readResponse(t, br); code != http.StatusBadRequest {
			t.Errorf("declared part: got %d (%s), want 400", code, msg)
		}
		if code, msg := readResponse(t, br); code != http.StatusRequestHeaderFieldsTooLarge && code != http.StatusBadRequest {
			t.Errorf("the undeclared rest: got %d (%s), want 431 or 400", code, msg)
		}
		good(t)
	})

	t.Run("lying Content-Length: declares more than is sent", func(t *testing.T) {
		// The body ends early (the client half-closes): a read error, 400, never a hang.
		body := []byte(segmentsim.Event("short-1", 0))
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		h := head("POST", config.DefaultPath, "Content-Type", "application/json", "X-Signature", segmentsim.Sign(badSecret, body),
			"Content-Length", strconv.Itoa(len(body)+500))
		_, _ = conn.Write(append([]byte(h), body...))
		_ = conn.(*net.TCPConn).CloseWrite()
		if code, msg := readResponse(t, bufio.NewReader(conn)); code != http.StatusBadRequest {
			t.Errorf("got %d (%s), want 400", code, msg)
		}
		good(t)
	})

	t.Run("slow-loris headers", func(t *testing.T) {
		// One header byte every 100ms, slower than readHeaderTimeout (500ms): the server must
		// close the connection instead of waiting for the rest.
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		closed := make(chan error, 1)
		var answer atomic.Value
		answer.Store("nothing")
		go func() {
			// Read until the server closes; whatever it sends before (if anything) is reported.
			got, err := io.ReadAll(conn)
			if len(got) > 0 {
				status, _, _ := strings.Cut(string(got), "\r\n")
				answer.Store(fmt.Sprintf("%q", status))
			}
			if err == nil {
				err = io.EOF
			}
			closed <- err
		}()
		start := time.Now()
		request := signedHead(valid)
		sent := 0
	writing:
		for sent < len(request) {
			select {
			case err := <-closed:
				closed <- err
				break writing
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := conn.Write([]byte{request[sent]}); err != nil {
				break
			}
			sent++
		}
		select {
		case err := <-closed:
			elapsed := time.Since(start)
			if err == nil || !isConnClosed(err) {
				t.Errorf("expected the server to close the connection, read returned %v", err)
			}
			if elapsed > 5*time.Second {
				t.Errorf("closed only after %s", elapsed)
			}
			addReport("slow-loris: connection closed by the receiver after %s with %d of %d header bytes sent (readHeaderTimeout %s); it answered %s first",
				elapsed.Round(10*time.Millisecond), sent, len(request), badReadHeaderTime, answer.Load())
		case <-time.After(10 * time.Second):
			t.Fatalf("the connection is still open after the whole header was sent byte by byte")
		}
		good(t)
	})

	t.Run("memory stays bounded", func(t *testing.T) {
		rssBefore, _ := recv.memory()
		heapBefore := recv.metric("go_memstats_heap_inuse_bytes")
		const n = 200
		codes := map[int]int{}
		huge := bytes.Repeat([]byte("x"), 1<<20) // 1 MiB of junk per request
		for i := range n {
			var h string
			var b []byte
			switch i % 5 {
			case 0: // declared 100 MiB, nothing sent
				h = head("POST", config.DefaultPath, "Content-Type", "application/json", "X-Signature", segmentsim.Sign(badSecret, valid),
					"Content-Length", strconv.Itoa(100<<20))
			case 1: // 1 MiB chunked
				h = head("POST", config.DefaultPath, "Content-Type", "application/json", "Transfer-Encoding", "chunked",
					"X-Signature", segmentsim.Sign(badSecret, valid))
				b = append(fmt.Appendf(nil, "%x\r\n", len(huge)), huge...)
				b = append(b, "\r\n0\r\n\r\n"...)
			case 2: // 1 MiB with an honest Content-Length
				h = signedHead(huge)
				b = huge
			case 3: // 60 KiB malformed JSON under the limit
				b = append([]byte(`{"type":"track","x":"`), bytes.Repeat([]byte("y"), 60<<10)...)
				h = signedHead(b)
			case 4: // 64 KiB header
				h = head("POST", config.DefaultPath, "X-Padding", strings.Repeat("p", 64<<10))
			}
			code, _ := rawExchange(t, addr, h, b)
			codes[code]++
		}
		good(t)
		rssAfter, hwm := recv.memory()
		heapAfter := recv.metric("go_memstats_heap_inuse_bytes")
		growth := rssAfter - rssBefore
		addReport("memory: %d oversized/bad requests (%v by status): VmRSS %.1f -> %.1f MiB (growth %.1f MiB), VmHWM %.1f MiB, Go heap in use %.1f -> %.1f MiB",
			n, codes, mib(rssBefore), mib(rssAfter), mib(growth), mib(hwm), heapBefore/(1<<20), heapAfter/(1<<20))
		t.Logf("codes %v, VmRSS %.1f -> %.1f MiB, VmHWM %.1f MiB", codes, mib(rssBefore), mib(rssAfter), mib(hwm))
		if codes[413] != 3*n/5 || codes[431] != n/5 || codes[400] != n/5 {
			t.Errorf("status codes %v, want 413 x%d, 431 x%d, 400 x%d", codes, 3*n/5, n/5, n/5)
		}
		if growth > 64<<20 {
			t.Errorf("VmRSS grew by %.1f MiB (over 64 MiB)", mib(growth))
		}
	})

	recv.stop()
}

func sigHead(body []byte, signature string) string {
	return head("POST", config.DefaultPath, "Content-Type", "application/json", "X-Signature", signature,
		"Content-Length", strconv.Itoa(len(body)))
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// TestHeldLargeBodies opens many connections that each declare a body just under the limit and
// then send it slowly: the receiver reserves memory for what arrives, not for what is declared,
// and answers a body that stalls 408 once its read deadline passes, so a client that only knows
// the webhook URL can neither make it hold maxInFlight x maxBodyBytes nor take
// limits.maxBufferedBytes from Segment's requests, even for a moment.
func TestHeldLargeBodies(t *testing.T) {
	target := newSink(t, "target")
	secretVol := newVolume(t, map[string]string{"hmac": badSecret})
	cfg := &config.Config{
		Source:         "fault/held-bodies",
		Authentication: config.Authentication{Mode: config.AuthHMAC, SecretFiles: []string{secretVol.Path("hmac")}},
		Targets:        []config.Target{{Name: "target", HTTP: &config.HTTPTarget{URL: target.url()}}},
	}
	cfg.Default() // maxBodyBytes 16 MiB, maxBufferedBytes 64 MiB, maxInFlight 256
	configVol := newVolume(t, nil)
	writeConfig(t, configVol, cfg)
	recv := startReceiver(t, configVol.Path(config.FileName))
	addr := "127.0.0.1:" + strconv.Itoa(recv.port)

	const conns = 200
	rssBefore, _ := recv.memory()
	declared := cfg.Limits.MaxBodyBytes - 1
	open := make([]net.Conn, conns)
	defer func() {
		for _, c := range open {
			if c != nil {
				_ = c.Close()
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range open {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			open[i] = c
			// A well-formed signature passes the pre-read check; only the body would prove it wrong.
			h := head("POST", config.DefaultPath, "Content-Type", "application/json", "X-Signature", strings.Repeat("0", 40),
				"Content-Length", strconv.FormatInt(declared, 10))
			if _, err := c.Write([]byte(h + `{"type":"track","pad":"` + strings.Repeat("x", 4096))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// Segment's request finds room while the slow ones are being read.
	held := recv.metric("segment_receiver_reading_requests")
	body := []byte(segmentsim.Event("beside-held", 0))
	secretHead := head("POST", config.DefaultPath, "Content-Type", "application/json", "X-Signature", segmentsim.Sign(badSecret, body),
		"Content-Length", strconv.Itoa(len(body)))
	if code, msg := rawExchange(t, addr, secretHead, body); code != http.StatusOK {
		t.Fatalf("a good request beside %.0f slow ones: %d %s", held, code, msg)
	}
	if held == 0 {
		t.Errorf("no slow request was being read when the good one was sent")
	}
	// Every slow one ends with 408 at its read deadline; none was refused for memory.
	deadline := time.Now().Add(30 * time.Second)
	for recv.metric("segment_receiver_requests_total", "code", "408") < conns {
		if time.Now().After(deadline) {
			t.Fatalf("%.0f of the %d slow requests answered 408 after 30s", recv.metric("segment_receiver_requests_total", "code", "408"), conns)
		}
		time.Sleep(20 * time.Millisecond)
	}
	refused := recv.metric("segment_receiver_requests_total", "code", "429")
	_, hwm := recv.memory()
	heap := recv.metric("go_memstats_heap_inuse_bytes")
	addReport("held bodies: %d connections each declaring %.1f MiB and sending 4 KiB: %.0f being read beside a good request, then 408 each, refused 429 %.0f, VmRSS %.1f MiB before, VmHWM %.1f MiB, Go heap in use %.1f MiB",
		conns, mib(declared), held, refused, mib(rssBefore), mib(hwm), heap/(1<<20))
	if refused != 0 {
		t.Errorf("refused %.0f of %d slow requests with 429: each reserves what it sent, far below the budget", refused, conns)
	}
	if growth := hwm - rssBefore; growth > 64<<20 || heap > 128<<20 {
		t.Errorf("memory peaked %.1f MiB above the start (Go heap in use %.1f MiB) for %d slow requests", mib(growth), heap/(1<<20), conns)
	}
}
