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
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes,verbs=get;list;watch;create;update;patch;delete

// gatewayAPIServed reports whether the cluster serves HTTPRoute (gateway.networking.k8s.io/v1)
// and the manager's scheme knows it. Gateway API is optional: without its CRDs the operator
// runs as before and reports spec.gateway as unusable.
func gatewayAPIServed(mgr ctrl.Manager) bool {
	gvk := gatewayv1.SchemeGroupVersion.WithKind("HTTPRoute")
	if !mgr.GetScheme().Recognizes(gvk) {
		return false
	}
	_, err := mgr.GetRESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
	return err == nil
}

// AddGatewayCache limits the cache of HTTPRoutes to the operator's own, like CacheByObject, when
// the cluster serves them; the cache refuses a kind the API server does not know, so it cannot be
// listed unconditionally.
func AddGatewayCache(cfg *rest.Config, byObject map[client.Object]cache.ByObject) error {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	resources, err := dc.ServerResourcesForGroupVersion(gatewayv1.GroupVersion.String())
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("discovering %s: %w", gatewayv1.GroupVersion, err)
	}
	for _, r := range resources.APIResources {
		if r.Kind == "HTTPRoute" {
			byObject[&gatewayv1.HTTPRoute{}] = managedOnly()
		}
	}
	return nil
}

// ownGateway makes the controller own HTTPRoutes when the cluster has them, so a Gateway's
// answer on the route (its status) brings the SegmentWebhook back.
func (r *SegmentWebhookReconciler) ownGateway(mgr ctrl.Manager, b *builder.Builder) *builder.Builder {
	r.gatewayAPI = gatewayAPIServed(mgr)
	if !r.gatewayAPI {
		return b
	}
	return b.Owns(&gatewayv1.HTTPRoute{})
}

// gatewayChildren is the HTTPRoute child, when the cluster has the kind.
func (r *SegmentWebhookReconciler) gatewayChildren(swh *segmentv1alpha1.SegmentWebhook) []child {
	if !r.gatewayAPI {
		return nil
	}
	return []child{want(swh, HTTPRoute(swh))}
}

// observeRoute reports in RouteAccepted whether the Gateways accepted the HTTPRoute.
func (r *SegmentWebhookReconciler) observeRoute(ctx context.Context, swh *segmentv1alpha1.SegmentWebhook) error {
	if swh.Spec.Gateway == nil {
		meta.RemoveStatusCondition(&swh.Status.Conditions, segmentv1alpha1.ConditionRouteAccepted)
		return nil
	}
	if !r.gatewayAPI {
		setCondition(swh, segmentv1alpha1.ConditionRouteAccepted, metav1.ConditionFalse, segmentv1alpha1.ReasonGatewayAPINotPresent,
			"spec.gateway needs the Gateway API CRDs (HTTPRoute gateway.networking.k8s.io/v1); install them and restart the operator")
		return nil
	}
	route := &gatewayv1.HTTPRoute{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: swh.Namespace, Name: ChildName(swh)}, route); err != nil {
		return client.IgnoreNotFound(err)
	}
	status, reason, message := RouteAccepted(route)
	setCondition(swh, segmentv1alpha1.ConditionRouteAccepted, status, reason, message)
	return nil
}
