// Command load sends signed Segment events at a fixed concurrency for a fixed time and prints one
// table row: requests per second and latency percentiles. Only loopback targets are meant.
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
	"sync"
	"time"
)

func main() {
	target := flag.String("url", "http://127.0.0.1:18084/webhook", "URL to POST to")
	secret := flag.String("secret", "bench-secret", "HMAC secret for X-Signature")
	concurrency := flag.Int("concurrency", 32, "concurrent requests")
	duration := flag.Duration("duration", 10*time.Second, "how long to send")
	label := flag.String("label", "", "row label")
	waitFor := flag.String("wait-for", "", "poll this URL until it answers, then exit")
	header := flag.Bool("header", false, "print the table header and exit")
	flag.Parse()

	if *header {
		fmt.Printf("%-34s %10s %10s %10s %10s %8s\n", "scenario", "requests", "req/s", "p50", "p99", "errors")
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
	stop := time.Now().Add(*duration)
	latencies := make([][]time.Duration, *concurrency)
	errs := make([]int, *concurrency)
	var wg sync.WaitGroup
	for w := range *concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				// A fresh messageId per request, so the receiver's dedupe does not skip delivery.
				body := fmt.Appendf(nil, `{"type":"track","event":"Order Completed","userId":"user-%d","messageId":"load-%d-%d",`+
					`"timestamp":"2024-05-01T12:00:00.000Z","properties":{"orderId":"o-%d","total":42.5,"currency":"EUR"},`+
					`"context":{"ip":"203.0.113.9","locale":"fr-FR"}}`, w, w, i, i)
				mac := hmac.New(sha1.New, []byte(*secret))
				mac.Write(body)
				req, _ := http.NewRequest(http.MethodPost, *target, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Signature", hex.EncodeToString(mac.Sum(nil)))
				start := time.Now()
				resp, err := client.Do(req)
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
	pct := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(float64(len(all))*p))]
	}
	fmt.Printf("%-34s %10d %10.0f %10s %10s %8d\n", *label, len(all), float64(len(all))/duration.Seconds(),
		pct(0.50).Round(time.Microsecond), pct(0.99).Round(time.Microsecond), failures)
}
