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

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// Issue 20: static headers and URLs land in the receiver ConfigMap, which the namespace's view
// role reads; credentials belong in headersFrom (Secrets).
var _ = Describe("Credentials in the receiver ConfigMap", func() {
	var (
		ctx = context.Background()
		ns  string
	)
	BeforeEach(func() { ns = newNamespace(ctx) })

	headers := func(name string) func(*segmentv1alpha1.HTTPTarget) {
		return func(h *segmentv1alpha1.HTTPTarget) {
			h.Headers = map[string]segmentv1alpha1.HTTPHeaderValue{"X-Shard": "2", name: "v"}
		}
	}
	url := func(u string) func(*segmentv1alpha1.HTTPTarget) {
		return func(h *segmentv1alpha1.HTTPTarget) { h.URL = u }
	}
	const headerMessage = "must not be a static header: the receiver config is a plain ConfigMap that the namespace's view role reads; send it from a Secret with headersFrom"
	const queryMessage = "url must not carry a credential in its query"

	DescribeTable("the API server refuses credentials in static headers and URL queries",
		func(mutate func(*segmentv1alpha1.HTTPTarget), message string) {
			for _, deadLetter := range []bool{false, true} {
				swh := sampleWebhook(ns)
				target := swh.Spec.Targets[0].HTTP
				if deadLetter {
					target = &segmentv1alpha1.HTTPTarget{URL: "https://dlq.example.com/segment"}
					swh.Spec.DeadLetter = &segmentv1alpha1.DeadLetterTarget{HTTP: target}
				}
				mutate(target)
				err := k8sClient.Create(ctx, swh)
				Expect(apierrors.IsInvalid(err)).To(BeTrue(), "expected Invalid (dead letter %t), got %v", deadLetter, err)
				Expect(err.Error()).To(ContainSubstring(message))
			}
		},
		Entry("Authorization", headers("Authorization"), headerMessage),
		Entry("authorization in lower case", headers("authorization"), headerMessage),
		Entry("Proxy-Authorization", headers("Proxy-Authorization"), headerMessage),
		Entry("Cookie", headers("Cookie"), headerMessage),
		Entry("X-Api-Key", headers("X-API-KEY"), headerMessage),
		Entry("a name with token", headers("X-Auth-Token"), headerMessage),
		Entry("a name with secret", headers("X-Client-Secret"), headerMessage),
		Entry("a name with password", headers("X-Password"), headerMessage),
		Entry("a name with api-key", headers("X-Partner-Api-Key"), headerMessage),
		Entry("?token=", url("https://collector.example.com/x?token=abc"), queryMessage),
		Entry("&access_token=", url("https://collector.example.com/x?a=1&access_token=abc"), queryMessage),
		Entry("api_key", url("https://collector.example.com/x?api_key=abc"), queryMessage),
		Entry("APIKEY in upper case", url("https://collector.example.com/x?APIKEY=abc"), queryMessage),
		Entry("key", url("https://collector.example.com/x?key=abc"), queryMessage),
		Entry("secret", url("https://collector.example.com/x?secret=abc"), queryMessage),
		Entry("password", url("https://collector.example.com/x?b=2&password=abc"), queryMessage),
		Entry("sig", url("https://collector.example.com/x?sig=abc"), queryMessage),
		Entry("signature", url("https://collector.example.com/x?Signature=abc"), queryMessage),
	)

	DescribeTable("the API server accepts what only looks close",
		func(mutate func(*segmentv1alpha1.HTTPTarget)) {
			swh := sampleWebhook(ns)
			mutate(swh.Spec.Targets[0].HTTP)
			Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		},
		Entry("ordinary static headers", headers("X-Shard")),
		Entry("a header named after a key that is no credential", headers("X-Partition-Key")),
		Entry("Content-Type", headers("Content-Type")),
		Entry("query parameters that merely contain a credential word",
			url("https://collector.example.com/x?keyspace=events&monkey=1&tokens_per_batch=5&signed=true")),
		Entry("a credential word in the path", url("https://collector.example.com/token/secret?key_id=7")),
	)

	It("still takes credential headers from Secrets", func() {
		swh := sampleWebhook(ns) // its warehouse target sends Authorization with headersFrom
		Expect(swh.Spec.Targets[0].HTTP.HeadersFrom[0].Name).To(Equal("Authorization"))
		swh.Spec.Targets[0].HTTP.HeadersFrom = append(swh.Spec.Targets[0].HTTP.HeadersFrom, segmentv1alpha1.HeaderFromSecret{
			Name: "X-Api-Key", SecretKeyRef: segmentv1alpha1.SecretKeyRef{Name: "collector", Key: "auth"},
		})
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
	})
})
