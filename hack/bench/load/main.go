// Command load sends signed Segment requests at a fixed concurrency for a fixed time and prints one
// table row: requests and events per second, latency percentiles and, for a process given by
// -pid, its CPU seconds and peak RSS during the measured window. Only loopback targets are meant.
//
// -events 1 sends single events signed over the body; more sends Segment-shaped batch arrays
// signed as Segment Actions does (X-Signature over element 0). Every request carries fresh
// messageIds, so the receiver's dedupe never skips a delivery.
package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segment-webhook-operator/segment-webhook-operator/internal/procstat"
)

func main() {
	target := flag.String("url", "http://127.0.0.1:18084/webhook", "URL to POST to")
	secret := flag.String("secret", "bench-secret", "HMAC secret for X-Signature")
	concurrency := flag.Int("concurrency", 32, "concurrent requests")
	duration := flag.Duration("duration", 10*time.Second, "how long to measure")
	warmup := flag.Duration("warmup", 0, "send this long first, unmeasured")
	events := flag.Int("events", 1, "events per request: 1 sends an event object, more a batch array")
	pid := flag.Int("pid", 0, "report CPU seconds and peak RSS of this process (the receiver)")
	label := flag.String("label", "", "row label")
	waitFor := flag.String("wait-for", "", "poll this URL until it answers, then exit")
	header := flag.Bool("header", false, "print the table header and exit")
	flag.Parse()

	if *header {
		fmt.Printf("%-44s %8s %8s %9s %9s %9s %9s %6s %7s %8s\n",
			"scenario", "requests", "req/s", "events/s", "p50", "p99", "max", "errors", "cpu-s", "peakRSS")
		return
	}
	if *waitFor != "" {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if resp, err := http.Get(*waitFor); err == nil {
				resp.Body.Close()
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		fmt.Fprintf(os.Stderr, "%s did not come up\n", *waitFor)
		os.Exit(1)
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *concurrency, MaxIdleConns: *concurrency}, Timeout: 10 * time.Second}
	g := &generator{client: client, url: *target, secret: []byte(*secret), events: *events}
	if *warmup > 0 {
		g.run(*concurrency, *warmup, "w")
	}
	cpuBefore := cpuSeconds(*pid)
	if *pid != 0 {
		// Reset the process's RSS high-water mark, so peak RSS is this window's.
		_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", *pid), []byte("5"), 0)
	}
	latencies, failures := g.run(*concurrency, *duration, "m")
	cpu, peak := "-", "-"
	if *pid != 0 {
		cpu = fmt.Sprintf("%.2f", cpuSeconds(*pid)-cpuBefore)
		if _, hwm, err := procstat.Memory(*pid); err == nil {
			peak = fmt.Sprintf("%.0fMi", float64(hwm)/(1<<20))
		}
	}
	pct := func(p float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[min(len(latencies)-1, int(float64(len(latencies))*p))]
	}
	rps := float64(len(latencies)) / duration.Seconds()
	round := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	fmt.Printf("%-44s %8d %8.0f %9.0f %9s %9s %9s %6d %7s %8s\n", *label, len(latencies), rps, rps*float64(*events),
		round(pct(0.50)), round(pct(0.99)), round(pct(1)), failures, cpu, peak)
}

type generator struct {
	client *http.Client
	url    string
	secret []byte
	events int
}

// run sends from concurrency workers for d and returns the sorted latencies of the 200s and the
// count of everything else.
func (g *generator) run(concurrency int, d time.Duration, phase string) ([]time.Duration, int) {
	stop := time.Now().Add(d)
	latencies := make([][]time.Duration, concurrency)
	errs := make([]int, concurrency)
	var wg sync.WaitGroup
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var body []byte
			for i := 0; time.Now().Before(stop); i++ {
				var signed []byte
				body, signed = g.body(body[:0], fmt.Sprintf("%s%d-%d", phase, w, i))
				mac := hmac.New(sha1.New, g.secret)
				mac.Write(signed)
				req, _ := http.NewRequest(http.MethodPost, g.url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Signature", hex.EncodeToString(mac.Sum(nil)))
				start := time.Now()
				resp, err := g.client.Do(req)
				if err != nil {
					errs[w]++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs[w]++
					continue
				}
				latencies[w] = append(latencies[w], time.Since(start))
			}
		}()
	}
	wg.Wait()
	all := slices.Concat(latencies...)
	slices.Sort(all)
	failures := 0
	for _, e := range errs {
		failures += e
	}
	return all, failures
}

// body appends a request body to buf: one event, or an array of g.events events, with messageIds
// made unique by prefix. It returns the body and the bytes Segment signs.
func (g *generator) body(buf []byte, prefix string) (body, signed []byte) {
	if g.events == 1 {
		buf = appendEvent(buf, prefix, 0)
		return buf, buf
	}
	buf = append(buf, '[')
	var firstEnd int
	for i := range g.events {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendEvent(buf, prefix, i)
		if i == 0 {
			firstEnd = len(buf)
		}
	}
	buf = append(buf, ']')
	return buf, buf[1:firstEnd]
}

// appendEvent appends a track event as Segment's Actions destination sends it (about 940 bytes).
func appendEvent(buf []byte, prefix string, i int) []byte {
	buf = append(buf, `{"anonymousId":"anon-`...)
	buf = strconv.AppendInt(buf, int64(i), 10)
	buf = append(buf, `","context":{"ip":"203.0.113.9","library":{"name":"analytics.js","version":"next-1.53.0"},"locale":"fr-FR",`+
		`"page":{"path":"/checkout","referrer":"https://www.example.com/cart","title":"Paiement – Boutique","url":"https://www.example.com/checkout"},`+
		`"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"},`+
		`"event":"Order Completed","integrations":{},"messageId":"load-`...)
	buf = append(buf, prefix...)
	buf = append(buf, '-')
	buf = strconv.AppendInt(buf, int64(i), 10)
	buf = append(buf, `","originalTimestamp":"2024-05-01T12:00:00.000Z","properties":{"currency":"EUR","orderId":"o-`...)
	buf = strconv.AppendInt(buf, int64(i), 10)
	buf = append(buf, `","products":[{"name":"Crème brûlée","price":7.5,"quantity":2,"sku":"cb-1"},{"name":"Café","price":2.5,"quantity":1,"sku":"cf-2"}],`+
		`"revenue":17.5,"total":42.5},"receivedAt":"2024-05-01T12:00:00.120Z","sentAt":"2024-05-01T12:00:00.100Z",`+
		`"timestamp":"2024-05-01T12:00:00.000Z","type":"track","userId":"user-`...)
	buf = strconv.AppendInt(buf, int64(i%1000), 10)
	return append(buf, `"}`...)
}

// cpuSeconds is the user plus system CPU time of process pid so far (0 when pid is 0).
func cpuSeconds(pid int) float64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) start at state; utime and stime are
	// fields 14 and 15 of the line, in clock ticks (100 per second on Linux).
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / 100
}
