package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segment-webhook-operator/segment-webhook-operator/internal/syncbuf"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// The receiver image must stay small and have no business with the Kubernetes API.
func TestDoesNotLinkClientGo(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list returned too little to be credible: %q", deps)
	}
	for _, pkg := range deps {
		if strings.HasPrefix(pkg, "k8s.io/") || strings.HasPrefix(pkg, "sigs.k8s.io/") {
			t.Errorf("cmd/receiver links %s", pkg)
		}
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--log-level", "loud"}, {"--no-such-flag"}} {
		var stderr bytes.Buffer
		if code := run(context.Background(), args, io.Discard, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// run serves until its context ends (SIGTERM in main) and then exits 0.
func TestRunExitsCleanlyOnCancel(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "hmac")
	if err := os.WriteFile(secret, []byte("s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Config{
		Source:         "ns/name",
		Authentication: config.Authentication{Mode: config.AuthHMAC, SecretFiles: []string{secret}},
		Targets:        []config.Target{{Name: "t", HTTP: &config.HTTPTarget{URL: "http://127.0.0.1:1/"}}},
	}
	data, _ := json.Marshal(cfg)
	path := filepath.Join(dir, config.FileName)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--config", path, "--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
			"--drain-delay", "0s", "--shutdown-timeout", "5s", "--log-level", "debug"}, io.Discard, &stderr)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "receiver listening") {
		if time.Now().After(deadline) {
			t.Fatalf("receiver did not start:\n%s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr.String())
	}
	if strings.Contains(stderr.String(), `"s"`) {
		t.Fatalf("logs may contain the secret:\n%s", stderr.String())
	}
}
