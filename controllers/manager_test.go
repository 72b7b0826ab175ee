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

package controllers

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

// TestNewManagerWaitsForTheAPIServer: a manager started while the API server is down keeps
// asking until its context ends, instead of failing at once (which a crash loop's back-off would
// turn into minutes of downtime after the API server returns).
func TestNewManagerWaitsForTheAPIServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // nothing listens there now: connections are refused at once

	ctx, cancel := context.WithTimeout(context.Background(), 3*apiRetryInterval/2)
	defer cancel()
	start := time.Now()
	_, err = NewManager(ctx, &rest.Config{Host: "http://" + addr}, ManagerOptions{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("NewManager: %v, want it to wait until its context ends", err)
	}
	if waited := time.Since(start); waited < apiRetryInterval {
		t.Errorf("NewManager gave up after %s, before a second try", waited)
	}
}
