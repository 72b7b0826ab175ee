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
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// notReadyError says why a SegmentWebhook is not Ready when that is not a transient failure.
// A stalled one needs a change the controller watches (the spec, a Secret, the Deployment) or,
// with retryAfter, a look later; it is not retried with backoff. One that is not stalled is
// progressing: the controller waits for the Deployment to roll out.
type notReadyError struct {
	reason, msg string
	stalled     bool
	retryAfter  time.Duration
}

func (e *notReadyError) Error() string { return e.msg }

// reasonOf is the condition reason for err: its own, or ReconcileFailed for transient errors.
func reasonOf(err error) string {
	if nr, ok := errors.AsType[*notReadyError](err); ok {
		return nr.reason
	}
	return segmentv1alpha1.ReasonReconcileFailed
}

// firstNotReady picks, of the reasons a receiver is not Ready, the one status should report: the
// transient errors first, all of them (they are retried with backoff, which a stalled reason
// beside them must not cancel), then a stalled reason (it needs a change), then progress.
func firstNotReady(errs ...error) error {
	var transient []error
	var stalled, progressing error
	for _, err := range errs {
		nr, known := errors.AsType[*notReadyError](err)
		switch {
		case err == nil:
		case !known:
			transient = append(transient, err)
		case nr.stalled && stalled == nil:
			stalled = err
		case progressing == nil:
			progressing = err
		}
	}
	switch {
	case len(transient) > 0:
		return errors.Join(transient...)
	case stalled != nil:
		return stalled
	}
	return progressing
}

func setCondition(swh *segmentv1alpha1.SegmentWebhook, t string, ok bool, reason, msg string) {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&swh.Status.Conditions, metav1.Condition{
		Type: t, Status: status, Reason: reason, Message: msg, ObservedGeneration: swh.Generation,
	})
}

// isReady reports whether swh was Ready for its current generation.
func isReady(swh *segmentv1alpha1.SegmentWebhook) bool {
	c := meta.FindStatusCondition(swh.Status.Conditions, segmentv1alpha1.ConditionReady)
	return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == swh.Generation
}

// summarize turns the outcome of a reconcile into the kstatus conditions, writes the status when it
// changed, records an Event when readiness changed, and decides how the request is retried:
//   - nil: Ready=True; Reconciling and Stalled are removed.
//   - a stalled notReadyError: Stalled=True, Ready=False with its reason and message; no error is
//     returned, so there is no backoff loop (a watch, or retryAfter, brings the request back).
//   - a progressing notReadyError: Reconciling=True, Ready=False; the Deployment watch brings the
//     request back.
//   - any other error: Reconciling=True (ProgressingWithRetry), Ready=False with the error text;
//     the error is returned and retried with backoff.
func (r *SegmentWebhookReconciler) summarize(ctx context.Context, original, swh *segmentv1alpha1.SegmentWebhook, err error) (ctrl.Result, error) {
	var result ctrl.Result
	nr, known := errors.AsType[*notReadyError](err)
	switch {
	case err == nil:
		meta.RemoveStatusCondition(&swh.Status.Conditions, segmentv1alpha1.ConditionReconciling)
		meta.RemoveStatusCondition(&swh.Status.Conditions, segmentv1alpha1.ConditionStalled)
		setCondition(swh, segmentv1alpha1.ConditionReady, true, segmentv1alpha1.ReasonReady, "the receiver is serving at "+servingURL(swh))
	case known && nr.stalled:
		meta.RemoveStatusCondition(&swh.Status.Conditions, segmentv1alpha1.ConditionReconciling)
		setCondition(swh, segmentv1alpha1.ConditionStalled, true, nr.reason, nr.msg)
		setCondition(swh, segmentv1alpha1.ConditionReady, false, nr.reason, nr.msg)
		result.RequeueAfter, err = nr.retryAfter, nil
	case known:
		meta.RemoveStatusCondition(&swh.Status.Conditions, segmentv1alpha1.ConditionStalled)
		setCondition(swh, segmentv1alpha1.ConditionReconciling, true, nr.reason, nr.msg)
		setCondition(swh, segmentv1alpha1.ConditionReady, false, nr.reason, nr.msg)
		err = nil
	default:
		meta.RemoveStatusCondition(&swh.Status.Conditions, segmentv1alpha1.ConditionStalled)
		setCondition(swh, segmentv1alpha1.ConditionReconciling, true, segmentv1alpha1.ReasonProgressingWithRetry, err.Error())
		setCondition(swh, segmentv1alpha1.ConditionReady, false, segmentv1alpha1.ReasonReconcileFailed, err.Error())
	}
	swh.Status.ObservedGeneration = swh.Generation
	r.recordReadiness(original, swh)
	if equality.Semantic.DeepEqual(original.Status, swh.Status) {
		return result, err // a no-op reconcile writes nothing
	}
	if perr := r.Status().Patch(ctx, swh, client.MergeFrom(original)); perr != nil {
		return result, errors.Join(err, client.IgnoreNotFound(perr))
	}
	return result, err
}

// observeSuspended records that the operator has seen the generation that suspended it, so that
// health checks do not wait for it forever. As in Flux, the conditions stay as they were: they
// describe the receiver left running, and their own observedGeneration says which spec they judged.
func (r *SegmentWebhookReconciler) observeSuspended(ctx context.Context, swh *segmentv1alpha1.SegmentWebhook) error {
	if swh.Status.ObservedGeneration == swh.Generation {
		return nil
	}
	original := swh.DeepCopy()
	swh.Status.ObservedGeneration = swh.Generation
	return client.IgnoreNotFound(r.Status().Patch(ctx, swh, client.MergeFrom(original)))
}

// recordReadiness records an Event when the SegmentWebhook becomes Ready, or starts failing or
// stalls with a new reason. Progress steps are in the status only; they are not worth a write.
func (r *SegmentWebhookReconciler) recordReadiness(original, swh *segmentv1alpha1.SegmentWebhook) {
	before := meta.FindStatusCondition(original.Status.Conditions, segmentv1alpha1.ConditionReady)
	after := meta.FindStatusCondition(swh.Status.Conditions, segmentv1alpha1.ConditionReady)
	if before != nil && before.Status == after.Status && before.Reason == after.Reason {
		return
	}
	note := truncate(after.Message, maxEventNote)
	switch {
	case after.Status == metav1.ConditionTrue:
		r.Recorder.Eventf(swh, nil, corev1.EventTypeNormal, after.Reason, "Reconcile", "%s", note)
	case meta.IsStatusConditionTrue(swh.Status.Conditions, segmentv1alpha1.ConditionStalled) ||
		after.Reason == segmentv1alpha1.ReasonReconcileFailed:
		r.Recorder.Eventf(swh, nil, corev1.EventTypeWarning, after.Reason, "Reconcile", "%s", note)
	}
}

// observe copies the receiver's state into status: its addresses, its replicas, and whether the
// Deployment has rolled out. It returns why the receiver is not Ready yet, or nil.
func observe(swh *segmentv1alpha1.SegmentWebhook, children []child) error {
	var dep *appsv1.Deployment
	var svc *corev1.Service
	var routed bool // an Ingress or HTTPRoute is applied, not removed because its host is another's
	for _, c := range children {
		switch live := c.live.(type) {
		case *appsv1.Deployment:
			dep = live
		case *corev1.Service:
			svc = live
		case *networkingv1.Ingress, *gatewayv1.HTTPRoute:
			routed = routed || c.desired != nil
		}
	}
	swh.Status.URL = publicURL(swh, routed, svc)
	swh.Status.Address = &segmentv1alpha1.Addressable{URL: inClusterURL(swh)}
	swh.Status.Replicas = dep.Status.Replicas
	swh.Status.ReadyReplicas = dep.Status.ReadyReplicas

	state, msg := rolloutOf(dep)
	switch state {
	case rolloutComplete:
		setCondition(swh, segmentv1alpha1.ConditionAvailable, true, segmentv1alpha1.ReasonDeploymentAvailable, msg)
		return nil
	case rolloutStalled:
		setCondition(swh, segmentv1alpha1.ConditionAvailable, false, segmentv1alpha1.ReasonProgressDeadlineExceeded, msg)
		return &notReadyError{reason: segmentv1alpha1.ReasonProgressDeadlineExceeded, msg: msg, stalled: true}
	default:
		setCondition(swh, segmentv1alpha1.ConditionAvailable, false, segmentv1alpha1.ReasonDeploymentProgressing, msg)
		return &notReadyError{reason: segmentv1alpha1.ReasonDeploymentProgressing, msg: msg}
	}
}

// servingURL is the URL the Ready message points users to.
func servingURL(swh *segmentv1alpha1.SegmentWebhook) string {
	if swh.Status.URL != "" {
		return swh.Status.URL
	}
	return swh.Status.Address.URL + " (inside the cluster only)"
}

type rollout int

const (
	rolloutProgressing rollout = iota
	rolloutComplete
	rolloutStalled
)

// rolloutOf tells how far the Deployment's rollout is, as `kubectl rollout status` does: the
// controller observed the current generation, every replica runs the current template, old
// replicas are gone, and the updated ones are available. A rollout past its progress deadline
// (a bad image, a crash loop) has stalled: the old pods may still serve, but the spec is not live.
func rolloutOf(dep *appsv1.Deployment) (rollout, string) {
	if dep.Generation > dep.Status.ObservedGeneration {
		return rolloutProgressing, "waiting for the Deployment controller to observe the receiver Deployment's new generation"
	}
	for _, c := range dep.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
			return rolloutStalled, fmt.Sprintf("the receiver Deployment's rollout exceeded its progress deadline: %s", c.Message)
		}
	}
	want := ptr.Deref(dep.Spec.Replicas, 1)
	st := dep.Status
	switch {
	case st.UpdatedReplicas < want:
		return rolloutProgressing, fmt.Sprintf("rolling out: %d of %d receiver replicas updated", st.UpdatedReplicas, want)
	case st.Replicas > st.UpdatedReplicas:
		return rolloutProgressing, fmt.Sprintf("rolling out: %d old receiver replicas pending termination", st.Replicas-st.UpdatedReplicas)
	case st.AvailableReplicas < st.UpdatedReplicas:
		return rolloutProgressing, fmt.Sprintf("rolling out: %d of %d updated receiver replicas available", st.AvailableReplicas, st.UpdatedReplicas)
	}
	return rolloutComplete, fmt.Sprintf("%d of %d receiver replicas available", st.AvailableReplicas, want)
}
