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
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

func TestRouteAccepted(t *testing.T) {
	gw := func(name string) gatewayv1.ParentReference {
		return gatewayv1.ParentReference{Name: gatewayv1.ObjectName(name)}
	}
	accepted := func(ref gatewayv1.ParentReference, status metav1.ConditionStatus, generation int64) gatewayv1.RouteParentStatus {
		return gatewayv1.RouteParentStatus{ParentRef: ref, Conditions: []metav1.Condition{{
			Type: "Accepted", Status: status, Reason: "R", Message: "m", ObservedGeneration: generation,
		}}}
	}
	// The Gateway's answer names its defaults explicitly; it is the same parent.
	explicit := gatewayv1.ParentReference{Name: "a", Group: ptr.To(gatewayv1.Group(gatewayv1.GroupName)),
		Kind: ptr.To(gatewayv1.Kind("Gateway")), Namespace: ptr.To(gatewayv1.Namespace("team"))}
	for _, tc := range []struct {
		name    string
		parents []gatewayv1.RouteParentStatus
		want    string
	}{
		{"no answer yet", nil, segmentv1alpha1.ReasonRoutePending},
		{"one of two accepted", []gatewayv1.RouteParentStatus{accepted(explicit, metav1.ConditionTrue, 2)}, segmentv1alpha1.ReasonRoutePending},
		{"an answer for an older generation", []gatewayv1.RouteParentStatus{
			accepted(gw("a"), metav1.ConditionTrue, 1), accepted(gw("b"), metav1.ConditionTrue, 2)}, segmentv1alpha1.ReasonRoutePending},
		{"one refuses", []gatewayv1.RouteParentStatus{
			accepted(gw("a"), metav1.ConditionTrue, 2), accepted(gw("b"), metav1.ConditionFalse, 2)}, segmentv1alpha1.ReasonRouteNotAccepted},
		{"both accept", []gatewayv1.RouteParentStatus{
			accepted(explicit, metav1.ConditionTrue, 2), accepted(gw("b"), metav1.ConditionTrue, 2)}, segmentv1alpha1.ReasonRouteAccepted},
	} {
		route := &gatewayv1.HTTPRoute{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team", Generation: 2},
			Spec:       gatewayv1.HTTPRouteSpec{CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{gw("a"), gw("b")}}},
			Status:     gatewayv1.HTTPRouteStatus{RouteStatus: gatewayv1.RouteStatus{Parents: tc.parents}},
		}
		if _, reason, msg := RouteAccepted(route); reason != tc.want {
			t.Errorf("%s: reason %s (%s), want %s", tc.name, reason, msg, tc.want)
		}
	}
}

func TestHTTPRouteFollowsPathAndServicePort(t *testing.T) {
	swh := defaultedWebhook()
	swh.Spec.Ingress = nil
	swh.Spec.Gateway = &segmentv1alpha1.GatewaySpec{
		ParentRefs: []gatewayv1.ParentReference{{Name: "public"}},
		Hostnames:  []gatewayv1.PreciseHostname{"a.example.com", "b.example.com"},
		Path:       "/segment/v1",
	}
	swh.Spec.Service.Port = 8080
	route := newHTTPRoute(swh)
	if got := *route.Spec.Rules[0].Matches[0].Path.Value; got != "/segment/v1" {
		t.Errorf("route path %s", got)
	}
	if got := *route.Spec.Rules[0].BackendRefs[0].Port; got != 8080 {
		t.Errorf("backend port %d", got)
	}
	if newReceiverConfig(swh).Path != "/segment/v1" {
		t.Errorf("the receiver serves %s, not the route's path", newReceiverConfig(swh).Path)
	}
	if got := publicURL(swh, true, nil); got != "https://a.example.com/segment/v1" {
		t.Errorf("URL %s", got)
	}
	swh.Spec.Gateway = nil
	if newHTTPRoute(swh) != nil {
		t.Error("an HTTPRoute without spec.gateway")
	}
}

func TestHostAllowed(t *testing.T) {
	patterns := []string{"*.growth.example.com", "segment.example.com"}
	for host, want := range map[string]bool{
		"segment.example.com":        true,
		"a.growth.example.com":       true,
		"a.b.growth.example.com":     true,
		"growth.example.com":         false, // the wildcard covers subdomains only
		"evilgrowth.example.com":     false,
		"segment.example.com.attack": false,
		"other.example.com":          false,
	} {
		if got := hostAllowed(host, patterns); got != want {
			t.Errorf("hostAllowed(%s) = %v, want %v", host, got, want)
		}
	}
}
