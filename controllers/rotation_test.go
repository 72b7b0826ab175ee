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
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
	"github.com/segment-webhook-operator/segment-webhook-operator/internal/kubevolume"
	"github.com/segment-webhook-operator/segment-webhook-operator/internal/segmentsend"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

var _ = Describe("Secret rotation", func() {
	It("reaches the running receiver through its mounted files, without changing the Deployment", func(ctx SpecContext) {
		sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
		DeferCleanup(sink.Close)
		ns := newNamespace(ctx)
		secret := newSecret(ctx, ns, "segment", map[string]string{"shared-secret": "old-secret"})
		swh := &segmentv1alpha1.SegmentWebhook{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "events"},
			Spec: segmentv1alpha1.SegmentWebhookSpec{
				SecretRefs: []segmentv1alpha1.SecretKeyRef{{Name: "segment", Key: "shared-secret"}},
				Targets:    []segmentv1alpha1.Target{{Name: "sink", HTTP: &segmentv1alpha1.HTTPTarget{URL: sink.URL + "/events"}}},
			},
		}
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		dep := getChild[appsv1.Deployment](ctx, swh)
		cm := getChild[corev1.ConfigMap](ctx, swh)

		// Stand in for the kubelet: mount the Secret volume the Deployment names, and the config
		// with the mount path moved under a temporary directory.
		pod := GinkgoT().TempDir()
		var mountPath string
		for _, m := range dep.Spec.Template.Spec.Containers[0].VolumeMounts {
			if strings.HasPrefix(m.MountPath, secretsMountPath) {
				mountPath = m.MountPath
			}
		}
		Expect(mountPath).To(Equal(secretsMountPath + "/segment"))
		secretVolume, err := kubevolume.New(mkdir(filepath.Join(pod, mountPath)), map[string][]byte{"shared-secret": []byte("old-secret")})
		Expect(err).NotTo(HaveOccurred())
		configJSON := strings.ReplaceAll(cm.Data[config.FileName], secretsMountPath, filepath.Join(pod, secretsMountPath))
		_, err = kubevolume.New(mkdir(filepath.Join(pod, "config")), map[string][]byte{config.FileName: []byte(configJSON)})
		Expect(err).NotTo(HaveOccurred())

		server, err := receiver.NewServer(filepath.Join(pod, "config", config.FileName), receiver.Options{
			Logger: slog.New(slog.NewTextHandler(GinkgoWriter, nil)), Addr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0",
		})
		Expect(err).NotTo(HaveOccurred())
		runCtx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- server.Run(runCtx) }()
		DeferCleanup(func() { stop(); Expect(<-done).To(Succeed()) })

		post := func(secret string) int {
			body := []byte(`{"type":"identify","userId":"u1","messageId":"m-` + secret + `","timestamp":"2026-11-28T21:00:00Z"}`)
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+server.Addr()+config.DefaultPath, bytes.NewReader(body))
			Expect(err).NotTo(HaveOccurred())
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Signature", segmentsend.Sign([]byte(secret), body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return 0
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode
		}
		Eventually(func() int { return post("old-secret") }).Should(Equal(http.StatusOK))

		update(ctx, secret, func(s *corev1.Secret) { s.Data["shared-secret"] = []byte("new-secret") })
		start := reconciles()
		Eventually(reconciles).Should(BeNumerically(">", start), "the Secret watch reconciles the SegmentWebhook")
		// The kubelet refreshes the mounted Secret on its own; nothing the operator writes is needed.
		Expect(secretVolume.Write(map[string][]byte{"shared-secret": []byte("new-secret")})).To(Succeed())
		Eventually(func() int { return post("new-secret") }).Should(Equal(http.StatusOK))
		Expect(post("old-secret")).To(Equal(http.StatusUnauthorized))

		Expect(writesDuring(ctx, 3)).To(BeZero())
		got := &appsv1.Deployment{}
		Expect(k8sClient.Get(ctx, key(dep), got)).To(Succeed())
		Expect(got.Generation).To(Equal(dep.Generation), "rotation must not roll the receiver pods")
		Expect(got.Spec.Template.Annotations[ConfigHashAnnotation]).To(Equal(dep.Spec.Template.Annotations[ConfigHashAnnotation]))
	})
})

func mkdir(dir string) string {
	ExpectWithOffset(1, os.MkdirAll(dir, 0o755)).To(Succeed())
	return dir
}
