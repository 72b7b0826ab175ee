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
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

func policyPorts(ports []networkingv1.NetworkPolicyPort) []string {
	var out []string
	for _, p := range ports {
		out = append(out, string(*p.Protocol)+"/"+p.Port.String())
	}
	return out
}

var _ = Describe("The receiver NetworkPolicy", func() {
	ctx := context.Background()

	It("admits the traffic and metrics namespaces, allows DNS and the targets' ports, and goes with its field", func() {
		_, swh := sampleWithSecrets(ctx)
		swh.Spec.NetworkPolicy = &segmentv1alpha1.NetworkPolicySpec{
			TrafficNamespaces: []string{"ingress-nginx"},
			MetricsNamespaces: []string{"monitoring"},
		}
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		np := getChild[networkingv1.NetworkPolicy](ctx, swh)
		expectOwnedChild(np, swh)
		Expect(np.Spec.PodSelector.MatchLabels).To(Equal(selectorLabels(swh)))
		Expect(np.Spec.PolicyTypes).To(ConsistOf(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress))

		Expect(np.Spec.Ingress).To(HaveLen(2))
		Expect(np.Spec.Ingress[0].From[0].NamespaceSelector.MatchLabels).To(Equal(map[string]string{corev1.LabelMetadataName: "ingress-nginx"}))
		Expect(policyPorts(np.Spec.Ingress[0].Ports)).To(Equal([]string{"TCP/" + httpPortName}))
		Expect(np.Spec.Ingress[1].From[0].NamespaceSelector.MatchLabels).To(Equal(map[string]string{corev1.LabelMetadataName: "monitoring"}))
		Expect(policyPorts(np.Spec.Ingress[1].Ports)).To(Equal([]string{"TCP/" + metricsPortName}))

		Expect(np.Spec.Egress).To(HaveLen(2))
		Expect(policyPorts(np.Spec.Egress[0].Ports)).To(Equal([]string{"UDP/53", "TCP/53"}))
		// https://collector.example.com/segment and http://analytics.tools.svc:8080/events
		Expect(policyPorts(np.Spec.Egress[1].Ports)).To(Equal([]string{"TCP/443", "TCP/8080"}))

		update(ctx, swh, func(swh *segmentv1alpha1.SegmentWebhook) { swh.Spec.NetworkPolicy = nil })
		expectGone(ctx, np)
	})

	It("renders a policy the API server accepts for Kafka and NATS targets (server-side dry run)", func() {
		ns := newNamespace(ctx)
		swh := sampleWebhook(ns)
		swh.Spec.Targets = []segmentv1alpha1.Target{
			{Name: "stream", Kafka: &segmentv1alpha1.KafkaTarget{Brokers: []string{"kafka-0.kafka:9093", "[fd00::1]:9092"}, Topic: "segment"}},
			{Name: "bus", NATS: &segmentv1alpha1.NATSTarget{URLs: []string{"nats://nats.nats.svc", "tls://nats.example.com:7422"}, Subject: "segment"}},
		}
		swh.Spec.NetworkPolicy = &segmentv1alpha1.NetworkPolicySpec{TrafficNamespaces: []string{"gateway-system", "ingress-nginx"}}
		np := newNetworkPolicy(swh, newReceiverConfig(swh))
		Expect(k8sClient.Create(ctx, np, client.DryRunAll)).To(Succeed())
		Expect(np.Spec.Ingress).To(HaveLen(1), "no metrics rule without metrics namespaces")
		Expect(np.Spec.Ingress[0].From).To(HaveLen(2))
		Expect(policyPorts(np.Spec.Egress[1].Ports)).To(Equal([]string{"TCP/4222", "TCP/7422", "TCP/9092", "TCP/9093"}))
		Expect(*np.Spec.Egress[1].Ports[0].Port).To(Equal(intstr.FromInt32(4222)))
	})

	It("allows egress to the dead-letter target, which the receiver config renders like any target", func() {
		_, swh := sampleWithSecrets(ctx)
		swh.Spec.DeadLetter = &segmentv1alpha1.DeadLetterTarget{
			Kafka: &segmentv1alpha1.KafkaTarget{Brokers: []string{"dlq-kafka.data.svc:9092"}, Topic: "segment-dead-letter"},
		}
		swh.Spec.NetworkPolicy = &segmentv1alpha1.NetworkPolicySpec{TrafficNamespaces: []string{"ingress-nginx"}}
		Expect(k8sClient.Create(ctx, swh)).To(Succeed())
		np := getChild[networkingv1.NetworkPolicy](ctx, swh)
		Expect(policyPorts(np.Spec.Egress[1].Ports)).To(Equal([]string{"TCP/443", "TCP/8080", "TCP/9092"}))
	})

	It("opens the http port to any source when the Service is a LoadBalancer or NodePort, not the metrics port", func() {
		_, swh := sampleWithSecrets(ctx)
		swh.Spec.Ingress = nil
		swh.Spec.Service.Type = corev1.ServiceTypeLoadBalancer
		swh.Spec.NetworkPolicy = &segmentv1alpha1.NetworkPolicySpec{MetricsNamespaces: []string{"monitoring"}}
		Expect(k8sClient.Create(ctx, swh)).To(Succeed(), "trafficNamespaces are not needed in front of a LoadBalancer")
		np := getChild[networkingv1.NetworkPolicy](ctx, swh)
		Expect(np.Spec.Ingress).To(HaveLen(2))
		Expect(np.Spec.Ingress[0].From).To(BeEmpty(), "Segment connects from outside the cluster")
		Expect(policyPorts(np.Spec.Ingress[0].Ports)).To(Equal([]string{"TCP/" + httpPortName}))
		Expect(np.Spec.Ingress[1].From).To(HaveLen(1))

		update(ctx, swh, func(swh *segmentv1alpha1.SegmentWebhook) {
			swh.Spec.Service.Type = corev1.ServiceTypeNodePort
			swh.Spec.NetworkPolicy.TrafficNamespaces = []string{"ingress-nginx"}
		})
		observed := func(g Gomega) {
			got := &segmentv1alpha1.SegmentWebhook{}
			g.Expect(k8sClient.Get(ctx, key(swh), got)).To(Succeed())
			g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
			g.Expect(k8sClient.Get(ctx, key(np), np)).To(Succeed())
		}
		Eventually(observed).Should(Succeed())
		Expect(np.Spec.Ingress[0].From).To(BeEmpty(), "a NodePort receives from outside the cluster too")

		update(ctx, swh, func(swh *segmentv1alpha1.SegmentWebhook) { swh.Spec.Service.Type = corev1.ServiceTypeClusterIP })
		Eventually(observed).Should(Succeed())
		Expect(np.Spec.Ingress[0].From).To(HaveLen(1), "behind an ingress controller, only its namespace")
	})

	It("is refused without trafficNamespaces in front of a ClusterIP Service", func() {
		_, swh := sampleWithSecrets(ctx)
		swh.Spec.NetworkPolicy = &segmentv1alpha1.NetworkPolicySpec{MetricsNamespaces: []string{"monitoring"}}
		err := k8sClient.Create(ctx, swh)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "expected Invalid, got %v", err)
		Expect(err.Error()).To(ContainSubstring("networkPolicy.trafficNamespaces is required with a ClusterIP Service"))
	})
})
