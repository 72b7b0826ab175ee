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

// Package bootstrap tests hack/envtest-assets.sh, which gets a new user the envtest control plane:
// from the store, by setup-envtest's download, or by building it from the Go module proxy.
//
// The script and setup-envtest run for real. No download site is reachable here, so the download
// path is served by a local index and archive in setup-envtest's format whose kube-apiserver and
// etcd are stand-in shell scripts that print a version (the script only asks them for it). The
// fallback test builds a real etcd from the Go module proxy; it reuses the Go build cache, so it
// is quick on a machine that has built etcd before (make test's envtest step does, where it had to
// fall back); the kube-apiserver it reuses is a stand-in, so that build is not repeated here.
package bootstrap

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const kubeVersion = "1.37.2"

var script = filepath.Join("..", "..", "hack", "envtest-assets.sh")

type result struct {
	dir    string // stdout: the asset directory
	stderr string // what the user sees
	err    error
}

// runScript runs hack/envtest-assets.sh with a store and a download index of the test's choosing.
func runScript(t *testing.T, store, index string, extraEnv ...string) result {
	t.Helper()
	// bash reads the script, not this process: reading it here makes the go test cache notice edits.
	if _, err := os.ReadFile(script); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", script)
	cmd.Env = append(os.Environ(),
		"ENVTEST_STORE="+store, "ENVTEST_INDEX="+index, "KUBE_VERSION="+kubeVersion, "ETCD_VERSION=3.6.16")
	cmd.Env = append(cmd.Env, extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("hack/envtest-assets.sh:\n%s", stderr.String())
	return result{dir: strings.TrimSpace(stdout.String()), stderr: stderr.String(), err: err}
}

func assetDir(store string) string {
	return filepath.Join(store, "k8s", fmt.Sprintf("%s-%s-%s", kubeVersion, runtime.GOOS, runtime.GOARCH))
}

// standIn is a shell script that answers --version like the real binary.
func standIn(version string) []byte {
	return []byte("#!/bin/sh\necho '" + version + "'\n")
}

func writeExecutable(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// envtestIndex serves setup-envtest's index and one archive, laid out like the published ones.
func envtestIndex(t *testing.T, files map[string][]byte) string {
	t.Helper()
	var archive bytes.Buffer
	gz := gzip.NewWriter(&archive)
	tw := tar.NewWriter(gz)
	for name, data := range files {
		hdr := &tar.Header{Name: "controller-tools/envtest/" + name, Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	sum := sha512.Sum512(archive.Bytes())
	archiveName := fmt.Sprintf("envtest-v%s-%s-%s.tar.gz", kubeVersion, runtime.GOOS, runtime.GOARCH)
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	mux.HandleFunc("/envtest-releases.yaml", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "releases:\n  v%s:\n    %s:\n      hash: %s\n      selfLink: %s/%s\n",
			kubeVersion, archiveName, hex.EncodeToString(sum[:]), srv.URL, archiveName)
	})
	mux.HandleFunc("/"+archiveName, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(archive.Bytes()) })
	return srv.URL + "/envtest-releases.yaml"
}

// silentIndex accepts connections and never answers, like a site behind a dropping firewall.
func silentIndex(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return "http://" + ln.Addr().String() + "/envtest-releases.yaml"
}

func wantLines(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q", w)
		}
	}
}

func refuseLines(t *testing.T, out string, refused ...string) {
	t.Helper()
	for _, r := range refused {
		if strings.Contains(out, r) {
			t.Errorf("output has %q", r)
		}
	}
}

func versionOf(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v\n%s", bin, err, out)
	}
	return string(out)
}

// TestDownloadThenCached: with a reachable index, setup-envtest downloads the assets into the store
// and nothing is built; the next run reuses them without asking the network.
func TestDownloadThenCached(t *testing.T) {
	store := t.TempDir()
	index := envtestIndex(t, map[string][]byte{
		"kube-apiserver": standIn("Kubernetes v" + kubeVersion),
		"etcd":           standIn("etcd Version: 3.6.4"),
		"kubectl":        standIn("Client Version: v" + kubeVersion),
	})
	// A partial directory (an interrupted build) must not be taken as installed.
	writeExecutable(t, filepath.Join(assetDir(store), "etcd"), []byte("#!/bin/sh\nexit 1\n"))

	got := runScript(t, store, index)
	if got.err != nil {
		t.Fatalf("script failed: %v", got.err)
	}
	if got.dir != assetDir(store) {
		t.Errorf("printed %q, want the store's %q", got.dir, assetDir(store))
	}
	wantLines(t, got.stderr, "looking for envtest "+kubeVersion+" with setup-envtest",
		"downloading kube-apiserver and etcd "+kubeVersion+" with setup-envtest", "downloaded: "+assetDir(store))
	refuseLines(t, got.stderr, "building", "falling back")
	if v := versionOf(t, filepath.Join(got.dir, "etcd")); !strings.Contains(v, "3.6.4") {
		t.Errorf("etcd in the store reports %q, want the downloaded one", v)
	}

	again := runScript(t, store, "http://127.0.0.1:1/envtest-releases.yaml")
	if again.err != nil || again.dir != assetDir(store) {
		t.Fatalf("second run: %v, printed %q", again.err, again.dir)
	}
	wantLines(t, again.stderr, "cached: reusing "+assetDir(store))
	refuseLines(t, again.stderr, "looking for", "downloading", "building")
}

// TestFallbackToSourceBuild: when the download site does not answer, the script gives up after the
// index timeout, says so, falls back to the source build, reuses what the store already has (here
// kube-apiserver) and builds the rest (etcd) from the Go module proxy into the same store.
func TestFallbackToSourceBuild(t *testing.T) {
	store := t.TempDir()
	writeExecutable(t, filepath.Join(assetDir(store), "kube-apiserver"), standIn("Kubernetes v"+kubeVersion))

	got := runScript(t, store, silentIndex(t), "ENVTEST_INDEX_TIMEOUT=3")
	if got.err != nil {
		t.Fatalf("script failed: %v", got.err)
	}
	if got.dir != assetDir(store) {
		t.Errorf("printed %q, want the store's %q", got.dir, assetDir(store))
	}
	wantLines(t, got.stderr,
		"download failed: no answer within 3s",
		"falling back to the source build",
		"reusing kube-apiserver v"+kubeVersion,
		"building etcd v3.6.16 from the Go module proxy",
		"1-2 min for etcd",
		"about 9 min on 2 idle cores",
		"source build: "+assetDir(store))
	refuseLines(t, got.stderr, "building kube-apiserver", "downloading")
	if v := versionOf(t, filepath.Join(got.dir, "etcd")); !strings.Contains(v, "3.6.16") {
		t.Errorf("built etcd reports %q, want 3.6.16", v)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(got.dir, ".*.new")); len(leftovers) > 0 {
		t.Errorf("temporary build outputs left in the store: %v", leftovers)
	}
}
