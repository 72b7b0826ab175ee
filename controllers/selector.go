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
	"maps"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// keepLiveSelector lets a receiver Deployment made by an earlier release, which selected its
// pods by app.kubernetes.io/instance, keep that selector: a Deployment's selector cannot change.
// Its pods then carry the old selector labels as well as the new ones, and the Service and the
// PodDisruptionBudget keep selecting by the old labels, which old and new pods both have, so the
// upgrade's rollout never leaves the Service without ready endpoints. Deleting the Deployment
// (the operator recreates it) or recreating the SegmentWebhook moves it to the new selector.
func keepLiveSelector(ctx context.Context, c client.Reader, children []child) error {
	var dep *appsv1.Deployment
	for _, ch := range children {
		if d, ok := ch.desired.(*appsv1.Deployment); ok {
			dep = d
		}
	}
	if dep == nil {
		return nil
	}
	live := &appsv1.Deployment{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(dep), live); err != nil {
		return client.IgnoreNotFound(err)
	}
	if live.Spec.Selector == nil || equality.Semantic.DeepEqual(live.Spec.Selector, dep.Spec.Selector) {
		return nil
	}
	selector := live.Spec.Selector.MatchLabels
	dep.Spec.Selector = live.Spec.Selector.DeepCopy()
	maps.Copy(dep.Spec.Template.Labels, selector)
	for _, ch := range children {
		switch o := ch.desired.(type) {
		case *corev1.Service:
			o.Spec.Selector = maps.Clone(selector)
		case *policyv1.PodDisruptionBudget:
			o.Spec.Selector = live.Spec.Selector.DeepCopy()
		}
	}
	return nil
}
