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
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes,verbs=get;list;watch;create;patch;delete

// AddGatewayCache reports whether the cluster serves HTTPRoute (gateway.networking.k8s.io/v1) and,
// when it does, limits the cache of HTTPRoutes to the operator's own, like CacheByObject. The cache
// refuses a kind the API server does not know, so HTTPRoutes cannot be listed unconditionally.
// Gateway API is optional: without its CRDs the operator runs as before and reports spec.gateway as
// unusable. It is asked once, before the manager starts; the reconciler is told the answer.
func AddGatewayCache(cfg *rest.Config, byObject map[client.Object]cache.ByObject) (bool, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return false, err
	}
	resources, err := dc.ServerResourcesForGroupVersion(gatewayv1.GroupVersion.String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("discovering %s: %w", gatewayv1.GroupVersion, err)
	}
	for _, r := range resources.APIResources {
		if r.Kind == "HTTPRoute" {
			byObject[&gatewayv1.HTTPRoute{}] = managedOnly()
			return true, nil
		}
	}
	return false, nil
}

// observeRoute reports in RouteAccepted whether the Gateways accepted the HTTPRoute, and returns
// why the receiver is not reachable through it yet: progressing while a Gateway has not answered,
// stalled when one refused the route or the cluster has no Gateway API. It reads the HTTPRoute as
// the applier left it, status included.
func (r *SegmentWebhookReconciler) observeRoute(swh *segmentv1alpha1.SegmentWebhook, children []child) error {
	if swh.Spec.Gateway == nil {
		meta.RemoveStatusCondition(&swh.Status.Conditions, segmentv1alpha1.ConditionRouteAccepted)
		return nil
	}
	if !r.gatewayAPI {
		msg := "spec.gateway needs the Gateway API CRDs (HTTPRoute gateway.networking.k8s.io/v1); install them and restart the operator"
		setCondition(swh, segmentv1alpha1.ConditionRouteAccepted, false, segmentv1alpha1.ReasonGatewayAPINotPresent, msg)
		return &notReadyError{reason: segmentv1alpha1.ReasonGatewayAPINotPresent, msg: msg, stalled: true}
	}
	var route *gatewayv1.HTTPRoute
	for _, c := range children {
		if live, ok := c.live.(*gatewayv1.HTTPRoute); ok && c.desired != nil {
			route = live
		}
	}
	if route == nil {
		return nil // removed: its host is not this SegmentWebhook's, which claimHosts reports
	}
	status, reason, msg := RouteAccepted(route)
	setCondition(swh, segmentv1alpha1.ConditionRouteAccepted, status == metav1.ConditionTrue, reason, msg)
	switch reason {
	case segmentv1alpha1.ReasonRouteAccepted:
		return nil
	case segmentv1alpha1.ReasonRouteNotAccepted:
		return &notReadyError{reason: reason, msg: msg, stalled: true}
	default:
		return &notReadyError{reason: reason, msg: msg}
	}
}
