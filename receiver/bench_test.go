package receiver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

func benchEvent(i int) string {
	return fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"user-%d","anonymousId":"anon-%d",`+
		`"messageId":"msg-%d","timestamp":"2024-05-01T12:00:00.000Z","sentAt":"2024-05-01T12:00:00.100Z",`+
		`"properties":{"orderId":"o-%d","total":42.5,"currency":"EUR","products":[{"sku":"a","qty":1}]},`+
		`"context":{"ip":"203.0.113.9","locale":"fr-FR","library":{"name":"analytics.js","version":"4.1.0"}}}`, i, i, i, i)
}

func benchBatch(n int) string {
	events := make([]string, n)
	for i := range events {
		events[i] = benchEvent(i)
	}
	return batch(events...)
}

func benchAuthenticator(b *testing.B) *authenticator {
	auth, err := newAuthenticator(config.Authentication{Mode: config.AuthHMAC, SecretFiles: []string{"s"}, Signature: config.SignatureAny},
		map[string][]byte{"s": []byte("secret")})
	if err != nil {
		b.Fatal(err)
	}
	return auth
}

func BenchmarkVerifySingle(b *testing.B) {
	body := []byte(benchEvent(1))
	auth := benchAuthenticator(b)
	h := http.Header{}
	h.Set(SignatureHeader, hmacHex("secret", string(body)))
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if !auth.verifyBody(h, body, func() []byte { return nil }) {
			b.Fatal("refused")
		}
	}
}

func BenchmarkVerifyBatchFirstElement(b *testing.B) {
	body := []byte(benchBatch(100))
	auth := benchAuthenticator(b)
	h := http.Header{}
	h.Set(SignatureHeader, hmacHex("secret", benchEvent(0)))
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		sc := newEventScanner(body, config.ValidationStrict, 1000)
		if !auth.verifyBody(h, body, sc.firstElement) {
			b.Fatal("refused")
		}
		sc.release()
	}
}

func BenchmarkDecodeValidateSingle(b *testing.B) {
	body := []byte(benchEvent(1))
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := decodeEvents(body, config.ValidationStrict, 1000); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeValidateBatch(b *testing.B) {
	for _, n := range []int{100, 4000} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			body := []byte(benchBatch(n))
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodeEvents(body, config.ValidationStrict, config.MaxEventsLimit); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// runBenchServer runs a receiver with cfg until the benchmark ends; its handler is called
// directly, without a network in between.
func runBenchServer(b *testing.B, cfg *config.Config) *Server {
	configVol := newVolume(b, map[string]string{config.FileName: configJSON(b, cfg)})
	server, err := NewServer(configVol.Path(config.FileName), Options{
		Logger:       slog.New(slog.DiscardHandler),
		Registry:     prometheus.NewRegistry(),
		Addr:         "127.0.0.1:0",
		MetricsAddr:  "127.0.0.1:0",
		PollInterval: -1,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	return server
}

// BenchmarkHandler drives the whole handler in-process (auth, decode, validate, route, deliver
// over loopback HTTP to a sink that answers 200 at once).
func BenchmarkHandler(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			sinkServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
			}))
			defer sinkServer.Close()
			secrets := newVolume(b, map[string]string{"hmac": testSecret})
			cfg := testConfig(secrets, config.Target{Name: "sink", HTTP: &config.HTTPTarget{URL: sinkServer.URL}})
			server := runBenchServer(b, cfg)
			handler := server // the webhook and health handler
			body := benchBatch(n)
			if n == 1 {
				body = benchEvent(0)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				// A fresh messageId each time, so dedupe does not skip the delivery.
				i++
				reqBody := strings.ReplaceAll(body, `"msg-`, fmt.Sprintf(`"r%d-msg-`, i))
				req := httptest.NewRequest(http.MethodPost, "/webhook", strings.NewReader(reqBody))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set(SignatureHeader, hmacHex(testSecret, reqBody))
				rec := httptest.NewRecorder()
				handler.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("got %d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}

// BenchmarkHandlerBatchMemory reports what one 4000-event batch allocates in the handler (B/op),
// with the target setups that copy events: one plain HTTP target, one in batch mode, one that
// drops a field from every event, and all three at once.
func BenchmarkHandlerBatchMemory(b *testing.B) {
	setups := map[string]func(url string) []config.Target{
		"http": func(url string) []config.Target {
			return []config.Target{{Name: "plain", HTTP: &config.HTTPTarget{URL: url}}}
		},
		"http-batch": func(url string) []config.Target {
			return []config.Target{{Name: "batched", HTTP: &config.HTTPTarget{URL: url, Batch: &config.HTTPBatch{}}}}
		},
		"http-dropFields": func(url string) []config.Target {
			return []config.Target{{Name: "dropping", DropFields: []string{"context.ip"}, HTTP: &config.HTTPTarget{URL: url}}}
		},
		"three-targets": func(url string) []config.Target {
			return []config.Target{
				{Name: "plain", HTTP: &config.HTTPTarget{URL: url}},
				{Name: "batched", HTTP: &config.HTTPTarget{URL: url, Batch: &config.HTTPBatch{}}},
				{Name: "dropping", DropFields: []string{"context.ip"}, HTTP: &config.HTTPTarget{URL: url}},
			}
		},
	}
	for _, name := range []string{"http", "http-batch", "http-dropFields", "three-targets"} {
		b.Run(name, func(b *testing.B) {
			sinkServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
			}))
			defer sinkServer.Close()
			secrets := newVolume(b, map[string]string{"hmac": testSecret})
			cfg := testConfig(secrets, setups[name](sinkServer.URL)...)
			cfg.Limits.MaxBodyBytes = config.DefaultMaxBodyBytes
			cfg.Limits.MaxEvents = 4000
			server := runBenchServer(b, cfg)
			body := benchBatch(4000)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				b.StopTimer()
				i++ // a fresh messageId each time, so dedupe does not skip the delivery
				reqBody := strings.ReplaceAll(body, `"msg-`, fmt.Sprintf(`"r%d-msg-`, i))
				req := httptest.NewRequest(http.MethodPost, "/webhook", strings.NewReader(reqBody))
				req.Header.Set("Content-Type", "application/json")
				first := reqBody[1 : strings.Index(reqBody, `},{"type"`)+1] // Segment signs element 0 of a batch
				req.Header.Set(SignatureHeader, hmacHex(testSecret, first))
				rec := httptest.NewRecorder()
				b.StartTimer()
				server.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("got %d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}

// BenchmarkDropFieldsManyMembers: a 16 MiB event of 3 M members through a target's dropFields,
// which has none of them (the common case: the event goes out as received) or its first.
func BenchmarkDropFieldsManyMembers(b *testing.B) {
	ev := Event{Raw: []byte(manyMembers("huge", config.DefaultMaxBodyBytes))}
	for _, paths := range [][]string{{"context.ip", "traits.email"}, {"_0"}} {
		b.Run(paths[0], func(b *testing.B) {
			d := newFieldDropper(paths)
			b.SetBytes(int64(len(ev.Raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.apply(ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
