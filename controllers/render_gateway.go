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
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// newHTTPRoute renders the receiver's HTTPRoute, or nil when spec.gateway is not set: the webhook
// path, exactly, on every hostname, to the receiver Service.
func newHTTPRoute(swh *segmentv1alpha1.SegmentWebhook) *gatewayv1.HTTPRoute {
	g := swh.Spec.Gateway
	if g == nil {
		return nil
	}
	hostnames := make([]gatewayv1.Hostname, 0, len(g.Hostnames))
	for _, h := range g.Hostnames {
		hostnames = append(hostnames, gatewayv1.Hostname(h))
	}
	route := &gatewayv1.HTTPRoute{
		TypeMeta:   metav1.TypeMeta{APIVersion: gatewayv1.GroupVersion.String(), Kind: "HTTPRoute"},
		ObjectMeta: childMeta(swh),
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: g.ParentRefs},
			Hostnames:       hostnames,
			Rules: []gatewayv1.HTTPRouteRule{{
				Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{
					Type:  ptr.To(gatewayv1.PathMatchExact),
					Value: ptr.To(swh.Spec.WebhookPath()),
				}}},
				BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
					BackendObjectReference: gatewayv1.BackendObjectReference{
						Name: gatewayv1.ObjectName(ChildName(swh)),
						Port: ptr.To(swh.Spec.Service.Port),
					},
				}}},
			}},
		},
	}
	route.Annotations = g.Annotations
	return route
}

// gatewayURL is the URL Segment posts to through the HTTPRoute. Segment only sends to public
// HTTPS endpoints, so the Gateway listener is taken to terminate TLS.
func gatewayURL(swh *segmentv1alpha1.SegmentWebhook) string {
	return "https://" + string(swh.Spec.Gateway.Hostnames[0]) + swh.Spec.WebhookPath()
}

// RouteAccepted summarizes the Accepted condition each parent set on the HTTPRoute for the
// current generation: accepted when every parentRef accepted it, pending while one has not
// answered, and not accepted with the first refusal's reason.
func RouteAccepted(route *gatewayv1.HTTPRoute) (status metav1.ConditionStatus, reason, message string) {
	for _, ref := range route.Spec.ParentRefs {
		var accepted *metav1.Condition
		for i := range route.Status.Parents {
			p := &route.Status.Parents[i]
			if sameParent(p.ParentRef, ref, route.Namespace) {
				accepted = meta.FindStatusCondition(p.Conditions, string(gatewayv1.RouteConditionAccepted))
			}
		}
		switch {
		case accepted == nil || accepted.ObservedGeneration < route.Generation:
			return metav1.ConditionFalse, segmentv1alpha1.ReasonRoutePending,
				"waiting for Gateway " + parentName(ref, route.Namespace) + " to accept the HTTPRoute"
		case accepted.Status != metav1.ConditionTrue:
			return metav1.ConditionFalse, segmentv1alpha1.ReasonRouteNotAccepted,
				"Gateway " + parentName(ref, route.Namespace) + " does not accept the HTTPRoute: " + accepted.Reason + ": " + accepted.Message
		}
	}
	return metav1.ConditionTrue, segmentv1alpha1.ReasonRouteAccepted, "every parent Gateway accepted the HTTPRoute"
}

// sameParent compares parent references with the API's defaults filled in.
func sameParent(a, b gatewayv1.ParentReference, routeNamespace string) bool {
	group := func(r gatewayv1.ParentReference) string {
		return string(ptr.Deref(r.Group, gatewayv1.Group(gatewayv1.GroupName)))
	}
	kind := func(r gatewayv1.ParentReference) string { return string(ptr.Deref(r.Kind, "Gateway")) }
	return group(a) == group(b) && kind(a) == kind(b) && a.Name == b.Name &&
		parentNamespace(a, routeNamespace) == parentNamespace(b, routeNamespace) &&
		ptr.Deref(a.SectionName, "") == ptr.Deref(b.SectionName, "") &&
		ptr.Deref(a.Port, 0) == ptr.Deref(b.Port, 0)
}

func parentNamespace(r gatewayv1.ParentReference, routeNamespace string) string {
	return string(ptr.Deref(r.Namespace, gatewayv1.Namespace(routeNamespace)))
}

func parentName(r gatewayv1.ParentReference, routeNamespace string) string {
	name := parentNamespace(r, routeNamespace) + "/" + string(r.Name)
	if r.SectionName != nil {
		name += " (" + string(*r.SectionName) + ")"
	}
	return name
}
