/*
Copyright 2026 The segment-webhook-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Command sink is the downstream target of the real-node suite, run as a pod: it accepts what a
// receiver's HTTP target sends (one event, or an array of events), after -delay (a target that
// far away), and counts each messageId it received. GET /received answers those counts as JSON.
package main

import (
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
	"sync"
	"time"
)

type event struct {
	MessageID string `json:"messageId"`
}

func main() {
	addr := flag.String("addr", ":8080", "listen address")
	delay := flag.Duration("delay", 20*time.Millisecond, "answer each delivery after this long")
	flag.Parse()

	var mu sync.Mutex
	received := map[string]int{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /received", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(received)
	})
	mux.HandleFunc("GET /healthz", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var events []event
		if len(body) > 0 && body[0] == '[' {
			err = json.Unmarshal(body, &events)
		} else {
			events = make([]event, 1)
			err = json.Unmarshal(body, &events[0])
		}
		if err != nil {
			http.Error(w, "not a Segment event or array: "+err.Error(), http.StatusBadRequest)
			return
		}
		time.Sleep(*delay)
		mu.Lock()
		for _, e := range events {
			received[e.MessageID]++
		}
		mu.Unlock()
	})
	server := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(server.ListenAndServe())
}
