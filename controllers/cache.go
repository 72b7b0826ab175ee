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
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// CacheByObject limits the manager's cache so that its memory follows the number of
// SegmentWebhooks, not the size of the cluster: of the child kinds it holds only the objects
// labelled as managed by this operator. A child whose label was removed looks absent; the applier
// then finds it on the API server and restores the label. The user's Secrets and tracking-plan
// ConfigMaps are not cached at all (see references).
func CacheByObject() map[client.Object]cache.ByObject {
	managed := managedOnly()
	return map[client.Object]cache.ByObject{
		&corev1.ConfigMap{}:                      managed,
		&corev1.Service{}:                        managed,
		&appsv1.Deployment{}:                     managed,
		&networkingv1.Ingress{}:                  managed,
		&autoscalingv2.HorizontalPodAutoscaler{}: managed,
		&policyv1.PodDisruptionBudget{}:          managed,
		&networkingv1.NetworkPolicy{}:            managed,
		&segmentv1alpha1.SegmentWebhook{}:        {Transform: cache.TransformStripManagedFields()},
	}
}

// managedOnly caches only the objects this operator manages, without what it never reads from the
// cache (dropUnread).
func managedOnly() cache.ByObject {
	return cache.ByObject{
		Label:     labels.SelectorFromSet(labels.Set{"app.kubernetes.io/managed-by": managedBy}),
		Transform: dropUnread,
	}
}

// dropUnread strips most of a child's size: its managedFields, which the applier reads from the
// API server only for a child version it has not verified yet, a Deployment's pod template and a
// ConfigMap's data. From the cache the operator reads a child's metadata, a Deployment's selector,
// replicas and status, and a Service; changes to the rest show as a new generation or (for a
// ConfigMap) a new resourceVersion.
func dropUnread(obj any) (any, error) {
	if o, ok := obj.(metav1.Object); ok {
		o.SetManagedFields(nil)
	}
	switch o := obj.(type) {
	case *appsv1.Deployment:
		o.Spec.Template = corev1.PodTemplateSpec{}
	case *corev1.ConfigMap:
		o.Data, o.BinaryData = nil, nil
	}
	return obj, nil
}
