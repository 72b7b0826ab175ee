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

package v1alpha1

// NetworkPolicySpec has the operator render a NetworkPolicy that isolates the receiver pods:
// requests only from the namespaces that forward Segment's traffic (from any source in front of
// a LoadBalancer or NodePort Service), scrapes only from the monitoring namespaces, and egress
// only to DNS and the ports of the targets and the dead-letter target.
type NetworkPolicySpec struct {
	// TrafficNamespaces run the ingress controller or Gateway that forwards Segment's requests;
	// their pods may reach the receiver's http port. Required with a ClusterIP Service. With a
	// LoadBalancer or NodePort Service, Segment connects from outside the cluster, so the http
	// port is open to any source and these namespaces add nothing.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +listType=set
	// +optional
	TrafficNamespaces []string `json:"trafficNamespaces,omitempty"`
	// MetricsNamespaces run Prometheus; their pods may reach the receiver's metrics port.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +listType=set
	// +optional
	MetricsNamespaces []string `json:"metricsNamespaces,omitempty"`
}
