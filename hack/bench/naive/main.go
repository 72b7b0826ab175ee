// Command naive is the "naive forwarder" contender of hack/bench-receiver.sh: what a team would
// write in an afternoon. It verifies X-Signature (HMAC-SHA1 over the body), decodes the event with
// encoding/json into a map, checks it has a type, and forwards the body with an http.Client,
// answering 200 only when the sink did. No batches, retries, dedupe or limits.
package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18088", "listen address")
	upstream := flag.String("upstream", "http://127.0.0.1:18081/ingest", "where events are forwarded")
	secret := flag.String("secret", "bench-secret", "HMAC secret")
	flag.Parse()

	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 256 // the same pooling the receiver's targets get
	client := &http.Client{Transport: transport, Timeout: 3 * time.Second}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "read", http.StatusBadRequest)
			return
		}
		mac := hmac.New(sha1.New, []byte(*secret))
		mac.Write(body)
		want, _ := hex.DecodeString(r.Header.Get("X-Signature"))
		if !hmac.Equal(want, mac.Sum(nil)) {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		var event map[string]any
		if err := json.Unmarshal(body, &event); err != nil || event["type"] == nil {
			http.Error(w, "invalid", http.StatusBadRequest)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, *upstream, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if id, ok := event["messageId"].(string); ok {
			req.Header.Set("Idempotency-Key", id)
		}
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, "upstream", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode >= 300 {
			http.Error(w, "upstream", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	server := &http.Server{Addr: *addr, Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(server.ListenAndServe())
}
