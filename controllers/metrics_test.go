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
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

var _ = Describe("Metrics endpoint", func() {
	// The manager's certificate is self-signed, as without --metrics-cert-dir.
	httpsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

	scrape := func(ctx context.Context, token string) (int, string) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+metricsAddr+"/metrics", nil)
		Expect(err).NotTo(HaveOccurred())
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := httpsClient.Do(req)
		if err != nil {
			return 0, err.Error() // the metrics server is still starting
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	// tokenFor issues a token for a new ServiceAccount through the TokenRequest API.
	tokenFor := func(ctx context.Context, ns, name string) string {
		Expect(k8sClient.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})).To(Succeed())
		tr, err := clientset.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		return tr.Status.Token
	}

	It("answers 401 without a token, 403 to a ServiceAccount without metrics-reader and 200 with it", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		Eventually(func() int { code, _ := scrape(ctx, ""); return code }).Should(Equal(http.StatusUnauthorized))

		code, body := scrape(ctx, tokenFor(ctx, ns, "curious"))
		Expect(code).To(Equal(http.StatusForbidden), body)

		// The metrics-reader ClusterRole exactly as config/rbac ships it.
		raw, err := os.ReadFile(filepath.Join("..", "config", "rbac", "metrics_reader_role.yaml"))
		Expect(err).NotTo(HaveOccurred())
		reader := &rbacv1.ClusterRole{}
		Expect(yaml.Unmarshal(raw, reader)).To(Succeed())
		reader.Name = ns + "-metrics-reader"
		Expect(k8sClient.Create(ctx, reader)).To(Succeed())
		token := tokenFor(ctx, ns, "prometheus")
		Expect(k8sClient.Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: ns + "-prometheus"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: reader.Name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "prometheus"}},
		})).To(Succeed())
		Eventually(func() int { code, _ := scrape(ctx, token); return code }).Should(Equal(http.StatusOK))
		_, body = scrape(ctx, token)
		Expect(body).To(ContainSubstring("rest_client_requests_total"), "the manager's own metrics")
	})
})
