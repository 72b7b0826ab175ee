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
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/trackingplan"
)

// TrackingPlanConfigMapIndex indexes SegmentWebhooks by the ConfigMap holding their tracking plan.
const TrackingPlanConfigMapIndex = ".spec.trackingPlan.configMapRef.name"

// planKeyPrefix marks the plan documents in the receiver's ConfigMap, beside config.json: the
// plan and the config it belongs to reach the pods in one volume update.
const planKeyPrefix = "trackingplan."

// trackingPlanDocs are the plan documents to render into the receiver ConfigMap, by their key
// there; nil without a tracking plan.
type trackingPlanDocs map[string]string

// resolveTrackingPlan reads and compiles the referenced plan with the receiver's own compiler, so
// that the operator refuses exactly the plans the receiver would. A plan that is missing or does
// not compile is a stalled error (the ConfigMap watch brings the request back): the condition says
// why, and the caller leaves the running receivers (and their last good plan) as they are.
func (r *SegmentWebhookReconciler) resolveTrackingPlan(ctx context.Context, swh *segmentv1alpha1.SegmentWebhook) (trackingPlanDocs, error) {
	spec := swh.Spec.TrackingPlan
	if spec == nil {
		meta.RemoveStatusCondition(&swh.Status.Conditions, segmentv1alpha1.ConditionTrackingPlanCompiled)
		swh.Status.TrackingPlan = nil
		return nil, nil
	}
	refuse := func(reason, msg string) (trackingPlanDocs, error) {
		setCondition(swh, segmentv1alpha1.ConditionTrackingPlanCompiled, false, reason, msg)
		return nil, &notReadyError{reason: reason, msg: msg, stalled: true}
	}
	name := types.NamespacedName{Namespace: swh.Namespace, Name: spec.ConfigMapRef.Name}
	selection := strings.Join(spec.Keys, "\x00")
	known, _ := r.plans.lookup(name)
	if plan, ok := known[selection]; ok {
		plan.report(swh)
		return plan.docs, nil
	}
	// The plan's ConfigMap is read past the cache, which holds only the operator's own children.
	cm := &corev1.ConfigMap{}
	err := r.APIReader.Get(ctx, name, cm)
	if apierrors.IsNotFound(err) {
		r.plans.forget(name)
		return refuse(segmentv1alpha1.ReasonTrackingPlanNotFound,
			fmt.Sprintf("ConfigMap %q not found in namespace %q", spec.ConfigMapRef.Name, swh.Namespace))
	}
	if err != nil {
		return nil, fmt.Errorf("reading tracking plan ConfigMap %q: %w", spec.ConfigMapRef.Name, err)
	}
	keys := spec.Keys
	if len(keys) == 0 {
		for key := range cm.Data {
			keys = append(keys, key)
		}
		slices.Sort(keys)
	}
	if len(keys) == 0 {
		return refuse(segmentv1alpha1.ReasonTrackingPlanNotFound, fmt.Sprintf("ConfigMap %q holds no plan documents", cm.Name))
	}
	var plan []trackingplan.Document
	docs := trackingPlanDocs{}
	for _, key := range keys {
		data, found := cm.Data[key]
		if !found {
			return refuse(segmentv1alpha1.ReasonTrackingPlanNotFound, fmt.Sprintf("ConfigMap %q has no key %q", cm.Name, key))
		}
		if errs := validation.IsConfigMapKey(planKeyPrefix + key); len(errs) > 0 {
			return refuse(segmentv1alpha1.ReasonTrackingPlanInvalid, fmt.Sprintf("ConfigMap %q key %q cannot be copied as %q: %s",
				cm.Name, key, planKeyPrefix+key, strings.Join(errs, "; ")))
		}
		plan = append(plan, trackingplan.Document{Name: key, Data: []byte(data)})
		docs[planKeyPrefix+key] = data
	}
	compiled, err := trackingplan.Compile(plan)
	if err != nil {
		var perr *trackingplan.Error
		msg := err.Error()
		if errors.As(err, &perr) && perr.Event != "" {
			msg = fmt.Sprintf("ConfigMap %q key %q, event %q: %v", cm.Name, perr.Document, perr.Event, perr.Err)
		}
		return refuse(segmentv1alpha1.ReasonTrackingPlanInvalid, truncate(msg, 1024))
	}
	result := compiledPlan{docs: docs,
		status: segmentv1alpha1.TrackingPlanStatus{Events: int32(compiled.Events), Hash: compiled.Hash}}
	r.plans.update(name, cm.ResourceVersion, func(kept compiledPlans, sameVersion bool) compiledPlans {
		next := compiledPlans{}
		if sameVersion { // other SegmentWebhooks' keys of the same version stay compiled
			maps.Copy(next, kept)
		}
		next[selection] = result
		return next
	})
	result.report(swh)
	return docs, nil
}

// compiledPlans are what one version of a plan ConfigMap compiled to, by key selection: several
// SegmentWebhooks may each take other keys of one ConfigMap. references remembers them per
// ConfigMap version, so that a reconcile (every resync) reads and compiles a plan only after its
// ConfigMap changed, as r.secrets does for Secrets. A map once remembered is never written.
type compiledPlans map[string]compiledPlan

// compiledPlan is what a plan ConfigMap compiled to for one key selection.
type compiledPlan struct {
	docs   trackingPlanDocs
	status segmentv1alpha1.TrackingPlanStatus
}

// configMapsResource are ConfigMaps, of which the operator watches those holding tracking plans.
var configMapsResource = corev1.SchemeGroupVersion.WithResource("configmaps")

// report sets the compiled plan's condition and status.
func (plan compiledPlan) report(swh *segmentv1alpha1.SegmentWebhook) {
	msg := fmt.Sprintf("%d track events planned (%s)", plan.status.Events, plan.status.Hash)
	setCondition(swh, segmentv1alpha1.ConditionTrackingPlanCompiled, true, segmentv1alpha1.ReasonTrackingPlanCompiled, msg)
	swh.Status.TrackingPlan = plan.status.DeepCopy()
}

// maxEventNote is the most an Event's note may hold.
const maxEventNote = 1024

// truncate shortens s to at most n bytes, marking the cut with "...": a compiler's output can be
// long, and an Event's note has a limit.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// receiverTrackingPlan renders the plan's part of the receiver config: the documents' paths in the
// mounted receiver ConfigMap, and the actions (which the CRD defaults, and the receiver's config
// defaults again).
func receiverTrackingPlan(swh *segmentv1alpha1.SegmentWebhook, docs trackingPlanDocs) *config.TrackingPlan {
	spec := swh.Spec.TrackingPlan
	if spec == nil {
		return nil
	}
	tp := &config.TrackingPlan{UnplannedEvents: spec.UnplannedEvents, OnViolation: spec.OnViolation}
	for key := range docs {
		tp.Files = append(tp.Files, path.Join(configMountPath, key))
	}
	slices.Sort(tp.Files)
	return tp
}

// withTrackingPlan adds the plan documents to the receiver ConfigMap. Their content is not part of
// the config hash: a changed plan reaches the running pods by the volume update and a hot reload,
// without a rollout.
func withTrackingPlan(cm *corev1.ConfigMap, docs trackingPlanDocs) *corev1.ConfigMap {
	for key, data := range docs {
		cm.Data[key] = data
	}
	return cm
}
