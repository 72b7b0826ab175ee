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
	"net"
	"net/url"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

const (
	dnsPort         = 53
	defaultNATSPort = 4222
)

// newNetworkPolicy renders the receiver's NetworkPolicy, or nil when spec.networkPolicy is not set.
// Ingress: the http port from the traffic namespaces, or from anywhere when the Service is a
// LoadBalancer or NodePort (Segment connects from outside the cluster, often through a node's
// address, which no selector matches); the metrics port from the metrics namespaces. Egress: DNS,
// and the ports of every target of the receiver config cfg, the dead-letter target included, to
// any address (targets may be outside the cluster, where no selector reaches).
func newNetworkPolicy(swh *segmentv1alpha1.SegmentWebhook, cfg *config.Config) *networkingv1.NetworkPolicy {
	np := swh.Spec.NetworkPolicy
	if np == nil {
		return nil
	}
	tcp := func(port intstr.IntOrString) networkingv1.NetworkPolicyPort {
		return networkingv1.NetworkPolicyPort{Protocol: ptr.To(corev1.ProtocolTCP), Port: &port}
	}
	traffic := networkingv1.NetworkPolicyIngressRule{Ports: []networkingv1.NetworkPolicyPort{tcp(intstr.FromString(httpPortName))}}
	if t := swh.Spec.Service.Type; t != corev1.ServiceTypeLoadBalancer && t != corev1.ServiceTypeNodePort {
		traffic.From = namespacePeers(np.TrafficNamespaces)
	}
	ingress := []networkingv1.NetworkPolicyIngressRule{traffic}
	if len(np.MetricsNamespaces) > 0 {
		ingress = append(ingress, networkingv1.NetworkPolicyIngressRule{
			From:  namespacePeers(np.MetricsNamespaces),
			Ports: []networkingv1.NetworkPolicyPort{tcp(intstr.FromString(metricsPortName))},
		})
	}
	dns := intstr.FromInt32(dnsPort)
	egress := []networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{
		{Protocol: ptr.To(corev1.ProtocolUDP), Port: &dns}, tcp(dns),
	}}}
	var targets []networkingv1.NetworkPolicyPort
	for _, port := range targetPorts(cfg) {
		targets = append(targets, tcp(intstr.FromInt32(port)))
	}
	if len(targets) > 0 {
		egress = append(egress, networkingv1.NetworkPolicyEgressRule{Ports: targets})
	}
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: childMeta(swh),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: selectorLabels(swh)},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress:     ingress,
			Egress:      egress,
		},
	}
}

// namespacePeers selects every pod of the named namespaces by the name label Kubernetes sets.
func namespacePeers(namespaces []string) []networkingv1.NetworkPolicyPeer {
	peers := make([]networkingv1.NetworkPolicyPeer, 0, len(namespaces))
	for _, ns := range namespaces {
		peers = append(peers, networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{
			MatchLabels: map[string]string{corev1.LabelMetadataName: ns},
		}})
	}
	return peers
}

// targetPorts are the TCP ports the receiver connects to, sorted and unique: each HTTP URL's
// port (80/443 by scheme), each Kafka bootstrap broker's, each NATS URL's (4222 by default), of
// every target the receiver config has, so the dead-letter target too.
func targetPorts(cfg *config.Config) []int32 {
	var ports []int32
	add := func(p string) {
		if n, err := strconv.ParseInt(p, 10, 32); err == nil && n > 0 && !slices.Contains(ports, int32(n)) {
			ports = append(ports, int32(n))
		}
	}
	urlPort := func(raw string, defaults map[string]string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		if p := u.Port(); p != "" {
			add(p)
		} else {
			add(defaults[u.Scheme])
		}
	}
	nats := strconv.Itoa(defaultNATSPort)
	for _, t := range cfg.AllTargets() {
		if t.HTTP != nil {
			urlPort(t.HTTP.URL, map[string]string{"http": "80", "https": "443"})
		}
		if t.Kafka != nil {
			for _, b := range t.Kafka.Brokers {
				if _, p, err := net.SplitHostPort(b); err == nil {
					add(p)
				}
			}
		}
		if t.NATS != nil {
			for _, u := range t.NATS.URLs {
				urlPort(u, map[string]string{"nats": nats, "tls": nats})
			}
		}
	}
	slices.Sort(ports)
	return ports
}
