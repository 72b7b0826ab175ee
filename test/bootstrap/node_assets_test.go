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

package bootstrap

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

var nodeScript = filepath.Join("..", "..", "hack", "node-assets.sh")

const kubeletVersion = "1.34.4"

// dlSite serves binaries and their .sha256 files laid out as dl.k8s.io does.
func dlSite(t *testing.T, files map[string][]byte) string {
	t.Helper()
	mux := http.NewServeMux()
	for path, data := range files {
		sum := sha256.Sum256(data)
		mux.HandleFunc("/"+path, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(data) })
		mux.HandleFunc("/"+path+".sha256", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(hex.EncodeToString(sum[:]))) })
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func runNodeScript(t *testing.T, dir, site string) result {
	t.Helper()
	if _, err := os.ReadFile(nodeScript); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", nodeScript)
	cmd.Env = append(os.Environ(), "NODE_ASSETS="+dir, "NODE_DOWNLOAD_URL="+site,
		"KUBE_VERSION="+kubeVersion, "KUBELET_VERSION="+kubeletVersion)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("hack/node-assets.sh:\n%s", stderr.String())
	return result{dir: strings.TrimSpace(stdout.String()), stderr: stderr.String(), err: err}
}

// TestNodeAssetsDownloadThenCached: where dl.k8s.io answers, each binary is downloaded at its
// version and checked against its .sha256, and nothing is built; the next run reuses them without
// asking the network.
func TestNodeAssetsDownloadThenCached(t *testing.T) {
	arch := runtime.GOARCH
	bin := func(version, name string) string { return "v" + version + "/bin/linux/" + arch + "/" + name }
	site := dlSite(t, map[string][]byte{
		bin(kubeVersion, "kube-controller-manager"): standIn("Kubernetes v" + kubeVersion),
		bin(kubeVersion, "kube-scheduler"):          standIn("Kubernetes v" + kubeVersion),
		bin(kubeVersion, "kube-proxy"):              standIn("Kubernetes v" + kubeVersion),
		bin(kubeVersion, "kubectl"):                 standIn("Client Version: v" + kubeVersion),
		bin(kubeletVersion, "kubelet"):              standIn("Kubernetes v" + kubeletVersion),
	})
	dir := filepath.Join(t.TempDir(), "node")
	got := runNodeScript(t, dir, site)
	if got.err != nil {
		t.Fatalf("script failed: %v", got.err)
	}
	if got.dir != dir {
		t.Errorf("printed %q, want %q", got.dir, dir)
	}
	wantLines(t, got.stderr, "downloading kubelet v"+kubeletVersion, "downloading kube-proxy v"+kubeVersion, "downloaded: "+dir)
	refuseLines(t, got.stderr, "building", "falling back")
	if v := versionOf(t, filepath.Join(dir, "kubelet")); !strings.Contains(v, "v"+kubeletVersion) {
		t.Errorf("kubelet reports %q", v)
	}

	again := runNodeScript(t, dir, "http://127.0.0.1:1")
	if again.err != nil || again.dir != dir {
		t.Fatalf("second run: %v, printed %q", again.err, again.dir)
	}
	wantLines(t, again.stderr, "cached: reusing "+dir)
	refuseLines(t, again.stderr, "downloading", "building")
}
