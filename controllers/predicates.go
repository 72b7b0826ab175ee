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
	"maps"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// resync passes the cache's periodic resync of a SegmentWebhook (an update that changes nothing),
// so that every SegmentWebhook is checked again each sync period.
var resync = predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
	return e.ObjectOld.GetResourceVersion() == e.ObjectNew.GetResourceVersion()
}}

// childChanged passes deletions of a child, and updates that change what the operator applies
// (spec, labels, annotations, owner references; the spec by generation, or compared where the
// generation may not follow it) or reads (a Deployment's rollout and replica counts, a
// LoadBalancer's address). Creations come from the operator itself, which already holds the
// created object, and status-only updates, such as an HPA's metrics or a PDB's counts, and
// resyncs do not cost a reconcile.
var childChanged = predicate.Funcs{CreateFunc: func(event.CreateEvent) bool { return false }, UpdateFunc: func(e event.UpdateEvent) bool {
	o, n := e.ObjectOld, e.ObjectNew
	if o.GetGeneration() != n.GetGeneration() ||
		!maps.Equal(o.GetLabels(), n.GetLabels()) ||
		!maps.Equal(o.GetAnnotations(), n.GetAnnotations()) ||
		!equality.Semantic.DeepEqual(o.GetOwnerReferences(), n.GetOwnerReferences()) ||
		!o.GetDeletionTimestamp().Equal(n.GetDeletionTimestamp()) {
		return true
	}
	switch n := n.(type) {
	case *appsv1.Deployment:
		od := o.(*appsv1.Deployment)
		os, om := rolloutOf(od)
		ns, nm := rolloutOf(n)
		return os != ns || om != nm || od.Status.Replicas != n.Status.Replicas || od.Status.ReadyReplicas != n.Status.ReadyReplicas
	case *corev1.Service:
		// ConfigMaps and Services have no generation.
		return !equality.Semantic.DeepEqual(o.(*corev1.Service).Spec, n.Spec) ||
			!equality.Semantic.DeepEqual(o.(*corev1.Service).Status.LoadBalancer, n.Status.LoadBalancer)
	case *autoscalingv2.HorizontalPodAutoscaler:
		// An HPA's generation follows its spec only with the HPAGeneration feature (Kubernetes
		// 1.37): before it, an edit of maxReplicas changes nothing but the spec.
		return !equality.Semantic.DeepEqual(o.(*autoscalingv2.HorizontalPodAutoscaler).Spec, n.Spec)
	case *corev1.ConfigMap:
		// The cache drops a ConfigMap's data (dropUnread); a ConfigMap has no status, so any
		// update is a change of it.
		return o.GetResourceVersion() != n.GetResourceVersion()
	}
	return false
}}
