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

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// TestObserveRouteReadsTheAppliedRoute checks that RouteAccepted and the returned reason come from
// the HTTPRoute child as the applier left it, without another read.
func TestObserveRouteReadsTheAppliedRoute(t *testing.T) {
	swh := &segmentv1alpha1.SegmentWebhook{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "team", Generation: 3}}
	swh.Spec.Gateway = &segmentv1alpha1.GatewaySpec{
		ParentRefs: []gatewayv1.ParentReference{{Name: "public"}},
		Hostnames:  []gatewayv1.PreciseHostname{"segment.example.com"},
	}
	// applied is the route child after applying: the route the API server answered with.
	applied := func(accepted *metav1.ConditionStatus) []child {
		route := newHTTPRoute(swh)
		route.Generation = 2
		if accepted != nil {
			route.Status.Parents = []gatewayv1.RouteParentStatus{{ParentRef: route.Spec.ParentRefs[0], Conditions: []metav1.Condition{{
				Type: string(gatewayv1.RouteConditionAccepted), Status: *accepted, Reason: "R", Message: "m", ObservedGeneration: 2,
			}}}}
		}
		return []child{{desired: newHTTPRoute(swh), live: route}}
	}
	accepted, refused := metav1.ConditionTrue, metav1.ConditionFalse

	for _, tc := range []struct {
		name       string
		gatewayAPI bool
		children   []child
		condition  string // the RouteAccepted reason, "" for none
		err        string // the returned reason, "" for nil
		stalled    bool
	}{
		{name: "no Gateway API", condition: segmentv1alpha1.ReasonGatewayAPINotPresent,
			err: segmentv1alpha1.ReasonGatewayAPINotPresent, stalled: true},
		{name: "accepted", gatewayAPI: true, children: applied(&accepted), condition: segmentv1alpha1.ReasonRouteAccepted},
		{name: "refused", gatewayAPI: true, children: applied(&refused), condition: segmentv1alpha1.ReasonRouteNotAccepted,
			err: segmentv1alpha1.ReasonRouteNotAccepted, stalled: true},
		{name: "not answered", gatewayAPI: true, children: applied(nil), condition: segmentv1alpha1.ReasonRoutePending,
			err: segmentv1alpha1.ReasonRoutePending},
		{name: "removed for a host conflict", gatewayAPI: true,
			children: []child{{live: &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: ChildName(swh), Namespace: swh.Namespace}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := swh.DeepCopy()
			r := &SegmentWebhookReconciler{gatewayAPI: tc.gatewayAPI}
			err := r.observeRoute(got, tc.children)

			c := meta.FindStatusCondition(got.Status.Conditions, segmentv1alpha1.ConditionRouteAccepted)
			switch {
			case tc.condition == "" && c != nil:
				t.Errorf("RouteAccepted = %+v, want none", c)
			case tc.condition != "" && (c == nil || c.Reason != tc.condition):
				t.Errorf("RouteAccepted = %+v, want reason %s", c, tc.condition)
			case c != nil && (c.Status == metav1.ConditionTrue) != (tc.condition == segmentv1alpha1.ReasonRouteAccepted):
				t.Errorf("RouteAccepted status = %s with reason %s", c.Status, c.Reason)
			}
			if tc.err == "" {
				if err != nil {
					t.Fatalf("observeRoute = %v, want nil", err)
				}
				return
			}
			nr, ok := err.(*notReadyError)
			if !ok || nr.reason != tc.err || nr.stalled != tc.stalled {
				t.Fatalf("observeRoute = %#v, want reason %s, stalled %v", err, tc.err, tc.stalled)
			}
		})
	}

	t.Run("no gateway", func(t *testing.T) {
		got := swh.DeepCopy()
		got.Spec.Gateway = nil
		setCondition(got, segmentv1alpha1.ConditionRouteAccepted, true, segmentv1alpha1.ReasonRouteAccepted, "")
		if err := (&SegmentWebhookReconciler{gatewayAPI: true}).observeRoute(got, nil); err != nil {
			t.Fatalf("observeRoute = %v, want nil", err)
		}
		if c := meta.FindStatusCondition(got.Status.Conditions, segmentv1alpha1.ConditionRouteAccepted); c != nil {
			t.Errorf("RouteAccepted = %+v, want it removed", c)
		}
	})
}
