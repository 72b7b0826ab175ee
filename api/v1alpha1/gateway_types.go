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

import (
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// GatewaySpec exposes the receiver through a Gateway API HTTPRoute
// (gateway.networking.k8s.io/v1), attached to Gateways the platform team runs.
type GatewaySpec struct {
	// ParentRefs are the Gateways, or listeners of them (sectionName), the HTTPRoute attaches
	// to. A Gateway in another namespace must allow routes from this one.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	ParentRefs []gatewayv1.ParentReference `json:"parentRefs"`
	// Hostnames Segment sends to; the first one is in status.url (https). Wildcards are not
	// allowed: a host is owned by one SegmentWebhook.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=set
	Hostnames []gatewayv1.PreciseHostname `json:"hostnames"`
	// Path of the webhook; the receiver serves it too.
	// +kubebuilder:default="/webhook"
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^/[-A-Za-z0-9._~/]*$`
	// +optional
	Path string `json:"path,omitempty"`
	// Annotations added to the HTTPRoute.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Condition types and reasons of the Gateway API exposure.
const (
	// ConditionRouteAccepted mirrors the Accepted condition every parent Gateway sets on the
	// HTTPRoute: until they all accept it, Segment cannot reach the receiver.
	ConditionRouteAccepted = "RouteAccepted"

	ReasonRouteAccepted        = "Accepted"
	ReasonRouteNotAccepted     = "RouteNotAccepted"
	ReasonRoutePending         = "RoutePending"
	ReasonGatewayAPINotPresent = "GatewayAPINotInstalled"
)

// Condition type and reasons of host ownership.
const (
	// ConditionHostsClaimed is True when the Namespace may claim the hosts and no other
	// SegmentWebhook, in any watched namespace, holds the same host and path first: one granted
	// it earlier, or, between claims never granted, an older one.
	ConditionHostsClaimed = "HostsClaimed"

	ReasonHostsClaimed = "HostsClaimed"
	ReasonHostConflict = "HostConflict"
	// ReasonHostNotAllowed: the Namespace's segment.webhook-operator.io/allowed-hosts
	// annotation does not list the host.
	ReasonHostNotAllowed = "HostNotAllowed"
)
