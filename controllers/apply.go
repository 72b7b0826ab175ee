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
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	autoscalingv2ac "k8s.io/client-go/applyconfigurations/autoscaling/v2"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayv1ac "sigs.k8s.io/gateway-api/applyconfiguration/apis/v1"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

const (
	// FieldOwner is the server-side apply field manager of every child.
	FieldOwner = "segment-webhook-operator"
	// ReplicasFieldOwner holds a Deployment's spec.replicas while the operator hands it over to
	// the HorizontalPodAutoscaler.
	ReplicasFieldOwner = "segment-webhook-operator-replicas-handoff"

	// conflictRetryInterval is how often a child name held by an object the operator does not
	// own is looked at again: such an object carries no label the operator's cache watches.
	conflictRetryInterval = time.Minute
)

// applyResult says what applying a child did.
type applyResult string

const (
	resultUnchanged applyResult = "Unchanged"
	resultCreated   applyResult = "Created"
	resultUpdated   applyResult = "Updated"
	resultDeleted   applyResult = "Deleted"
)

// applier writes children with server-side apply when the operator's intent differs from what it
// last applied. What it last applied is read back from the child's managedFields (client-go's
// Extract functions), so:
//   - a field the operator stops setting differs from what it owns, and the apply removes it;
//   - fields other managers add (an injected container, an annotation, an owner reference) are
//     not the operator's and never cause a write;
//   - an edit or removal of an operator field by another manager moves or drops the operator's
//     ownership, so drift is seen and put back;
//   - the API server's defaults are not the operator's either, so a no-op reconcile writes nothing.
type applier struct {
	client client.Client
	// reader looks behind the cache, which holds only children labelled as managed and without
	// their managedFields: before a child is created, so an object the operator does not own is
	// never taken over, and for the managedFields of a child version not verified yet.
	reader client.Reader
	owner  *segmentv1alpha1.SegmentWebhook
	// verified skips reading and extracting managedFields for a child version already known to
	// hold the intent, so a no-op reconcile reads nothing from the API server.
	verified *verifiedIntents
}

// verifiedIntents remembers, per child, the resourceVersion at which its owned fields were known
// to equal an intent (by hash). Entries of a deleted SegmentWebhook are dropped with it.
type verifiedIntents struct{ m sync.Map }

type verifiedIntent struct{ uid, resourceVersion, hash string }

func childID(obj client.Object) string {
	return fmt.Sprintf("%T/%s/%s", obj, obj.GetNamespace(), obj.GetName())
}

func (v *verifiedIntents) holds(live client.Object, hash string) bool {
	got, ok := v.m.Load(childID(live))
	return ok && got.(verifiedIntent) == verifiedIntent{string(live.GetUID()), live.GetResourceVersion(), hash}
}

func (v *verifiedIntents) remember(live client.Object, hash string) {
	v.m.Store(childID(live), verifiedIntent{string(live.GetUID()), live.GetResourceVersion(), hash})
}

func (v *verifiedIntents) forget(live client.Object) { v.m.Delete(childID(live)) }

// apply makes the child match desired. live is an empty object of desired's type; it is filled with
// the child as it is after the call.
func (a *applier) apply(ctx context.Context, desired, live client.Object) (applyResult, error) {
	if err := controllerutil.SetControllerReference(a.owner, desired, a.client.Scheme()); err != nil {
		return "", err
	}
	intent, err := runtime.DefaultUnstructuredConverter.ToUnstructured(desired)
	if err != nil {
		return "", err
	}
	delete(intent, "status")
	pruneNulls(intent)
	raw, err := json.Marshal(intent)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(raw)
	hash := hex.EncodeToString(sum[:])

	key := client.ObjectKeyFromObject(desired)
	result := resultUpdated
	switch err := a.client.Get(ctx, key, live); {
	case apierrors.IsNotFound(err):
		found, err := a.unmanaged(ctx, desired)
		if err != nil {
			return "", err
		}
		if !found {
			result = resultCreated
		}
	case err != nil:
		return "", err
	default:
		if err := a.checkOwner(desired, live); err != nil {
			return "", err
		}
		if a.verified.holds(live, hash) {
			return resultUnchanged, nil
		}
		// The cache holds children without their managedFields and bulk (dropUnread). The API
		// server's watch cache answers for a version no older than the one the cache has.
		if err := a.reader.Get(ctx, key, live,
			&client.GetOptions{Raw: &metav1.GetOptions{ResourceVersion: live.GetResourceVersion()}}); err != nil {
			return "", err
		}
		owned, err := ownedFields(live)
		if err != nil {
			return "", err
		}
		if equality.Semantic.DeepEqual(owned, desired) {
			a.verified.remember(live, hash)
			return resultUnchanged, nil
		}
		if err := a.handOverReplicas(ctx, desired, owned, live); err != nil {
			return "", err
		}
	}
	// The intent's JSON is the apply patch itself; the answer decodes straight into live.
	// Forced: the object is this SegmentWebhook's child (checked above), and what another manager
	// changed in the operator's fields is drift to put back.
	live.SetNamespace(desired.GetNamespace())
	live.SetName(desired.GetName())
	if err := a.client.Patch(ctx, live, client.RawPatch(types.ApplyPatchType, raw),
		client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		if apierrors.IsInvalid(err) {
			// The same spec renders the same child: retrying cannot help, a change of the spec can.
			return "", &notReadyError{reason: segmentv1alpha1.ReasonInvalidChild, stalled: true,
				msg: fmt.Sprintf("the API server refuses the child rendered from this spec; change the spec: %v", err)}
		}
		return "", fmt.Errorf("applying %s %s: %w", desired.GetObjectKind().GroupVersionKind().Kind, desired.GetName(), err)
	}
	// What the operator owns now is its intent: the apply was forced.
	a.verified.remember(live, hash)
	return result, nil
}

// unmanaged reports whether an object named like desired exists although the cache does not hold
// it (someone removed the managed-by label, or it was never the operator's), and refuses it when
// this SegmentWebhook does not control it.
func (a *applier) unmanaged(ctx context.Context, desired client.Object) (bool, error) {
	gvk, err := apiutil.GVKForObject(desired, a.client.Scheme())
	if err != nil {
		return false, err
	}
	found := &metav1.PartialObjectMetadata{}
	found.SetGroupVersionKind(gvk)
	// Served from the API server's watch cache (resourceVersion 0) rather than a quorum read from
	// etcd: the check races with a create by someone else either way, and it runs once for every
	// child the operator creates.
	switch err := a.reader.Get(ctx, client.ObjectKeyFromObject(desired), found,
		&client.GetOptions{Raw: &metav1.GetOptions{ResourceVersion: "0"}}); {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, a.checkOwner(desired, found)
}

// checkOwner refuses to touch an object this SegmentWebhook does not control.
func (a *applier) checkOwner(desired client.Object, live metav1.Object) error {
	if metav1.IsControlledBy(live, a.owner) {
		return nil
	}
	return &notReadyError{
		reason: segmentv1alpha1.ReasonChildConflict,
		msg: fmt.Sprintf("%s %q exists and is not owned by this SegmentWebhook; the operator leaves it untouched: delete or rename it",
			desired.GetObjectKind().GroupVersionKind().Kind, desired.GetName()),
		stalled:    true,
		retryAfter: conflictRetryInterval,
	}
}

// handOverReplicas keeps a Deployment's replica count when the operator stops setting it (the HPA
// takes over). Dropping spec.replicas from an apply would reset it to the default of 1 if nobody
// else owned it, so a second field manager first takes co-ownership of the current value, as the
// Kubernetes server-side apply documentation describes for handing a field to a controller.
func (a *applier) handOverReplicas(ctx context.Context, desired, owned, live client.Object) error {
	want, ok := desired.(*appsv1.Deployment)
	if !ok || want.Spec.Replicas != nil || owned.(*appsv1.Deployment).Spec.Replicas == nil {
		return nil
	}
	current := live.(*appsv1.Deployment).Spec.Replicas
	handoff := appsv1ac.Deployment(want.Name, want.Namespace).
		WithSpec(appsv1ac.DeploymentSpec().WithReplicas(ptr.Deref(current, 1)))
	if err := a.client.Apply(ctx, handoff, client.FieldOwner(ReplicasFieldOwner)); err != nil {
		return fmt.Errorf("handing spec.replicas of Deployment %s over to the autoscaler: %w", want.Name, err)
	}
	return nil
}

// remove deletes the child named like obj if it exists and this SegmentWebhook controls it.
func (a *applier) remove(ctx context.Context, obj client.Object) (applyResult, error) {
	if err := a.client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return resultUnchanged, client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(obj, a.owner) {
		return resultUnchanged, nil
	}
	if err := a.client.Delete(ctx, obj, client.Preconditions{UID: ptr.To(obj.GetUID())}); err != nil {
		return "", client.IgnoreNotFound(err)
	}
	a.verified.forget(obj)
	return resultDeleted, nil
}

// ownedFields returns the fields of live that the operator applied, as an object of live's type.
func ownedFields(live client.Object) (client.Object, error) {
	var extracted any
	var err error
	switch o := live.(type) {
	case *corev1.ConfigMap:
		extracted, err = corev1ac.ExtractConfigMap(o, FieldOwner)
	case *corev1.Service:
		extracted, err = corev1ac.ExtractService(o, FieldOwner)
	case *appsv1.Deployment:
		extracted, err = appsv1ac.ExtractDeployment(o, FieldOwner)
	case *networkingv1.Ingress:
		extracted, err = networkingv1ac.ExtractIngress(o, FieldOwner)
	case *autoscalingv2.HorizontalPodAutoscaler:
		extracted, err = autoscalingv2ac.ExtractHorizontalPodAutoscaler(o, FieldOwner)
	case *policyv1.PodDisruptionBudget:
		extracted, err = policyv1ac.ExtractPodDisruptionBudget(o, FieldOwner)
	case *networkingv1.NetworkPolicy:
		extracted, err = networkingv1ac.ExtractNetworkPolicy(o, FieldOwner)
	case *gatewayv1.HTTPRoute:
		extracted, err = gatewayv1ac.ExtractHTTPRoute(o, FieldOwner)
	default:
		return nil, fmt.Errorf("no managed-fields extraction for %T", live)
	}
	if err != nil {
		return nil, err
	}
	// The apply configuration mirrors the type's JSON, so it decodes into the typed object, where
	// semantic equality compares quantities by value and nil like empty.
	raw, err := json.Marshal(extracted)
	if err != nil {
		return nil, err
	}
	owned := reflect.New(reflect.TypeOf(live).Elem()).Interface().(client.Object)
	return owned, json.Unmarshal(raw, owned)
}

// pruneNulls leaves out what is null (creationTimestamp: null), so only fields the operator means
// are applied and owned.
func pruneNulls(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if e == nil {
				delete(v, k)
				continue
			}
			pruneNulls(e)
		}
	case []any:
		for _, e := range v {
			pruneNulls(e)
		}
	}
}
