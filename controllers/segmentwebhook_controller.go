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

// Package controllers reconciles SegmentWebhooks into receiver Deployments, Services and friends.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// SecretNameIndex indexes SegmentWebhooks by the Secrets they reference.
const SecretNameIndex = ".spec.secretNames"

// DefaultMaxConcurrentReconciles is how many SegmentWebhooks reconcile in parallel by default.
const DefaultMaxConcurrentReconciles = 4

// EventSource names the operator in the Events it records.
const EventSource = "segment-webhook-operator"

// NewSegmentWebhookReconciler wires a reconciler to the manager's clients and event recorder.
func NewSegmentWebhookReconciler(mgr ctrl.Manager, opts RenderOptions) *SegmentWebhookReconciler {
	return &SegmentWebhookReconciler{
		Client:                  mgr.GetClient(),
		SecretReader:            mgr.GetAPIReader(),
		Recorder:                mgr.GetEventRecorder(EventSource),
		Options:                 opts,
		MaxConcurrentReconciles: DefaultMaxConcurrentReconciles,
	}
}

// SegmentWebhookReconciler reconciles a SegmentWebhook into its receiver's children.
type SegmentWebhookReconciler struct {
	client.Client
	// SecretReader reads Secrets without caching them: the operator watches only Secret
	// metadata, so it never holds every Secret of the cluster in memory.
	SecretReader client.Reader
	Recorder     events.EventRecorder
	Options      RenderOptions
	// MaxConcurrentReconciles lets large fleets of SegmentWebhooks reconcile in parallel.
	MaxConcurrentReconciles int
}

// +kubebuilder:rbac:groups=segment.webhook-operator.io,resources=segmentwebhooks,verbs=get;list;watch
// +kubebuilder:rbac:groups=segment.webhook-operator.io,resources=segmentwebhooks/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=segment.webhook-operator.io,resources=segmentwebhooks/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=configmaps;services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=autoscaling,resources=horizontalpodautoscalers,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile resolves the referenced Secrets, applies the children and reports status. Status
// is written once, at the end, and only when it changed.
func (r *SegmentWebhookReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	swh := &segmentv1alpha1.SegmentWebhook{}
	if err := r.Get(ctx, req.NamespacedName, swh); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !swh.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // owner references let the garbage collector remove the children
	}
	original := swh.DeepCopy()
	swh.Status.URL = publicURL(swh)
	defer func() {
		summarize(swh)
		if err := r.patchStatus(ctx, original, swh); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	secretData, err := r.resolveSecrets(ctx, swh)
	if err != nil {
		var missing *missingSecretError
		if errors.As(err, &missing) {
			// Keep the running receiver as it is; the Secret watch brings us back when it appears.
			setCondition(swh, segmentv1alpha1.ConditionSecretsResolved, metav1.ConditionFalse, missing.reason, missing.Error())
			if conditionChanged(original, swh, segmentv1alpha1.ConditionSecretsResolved) {
				r.Recorder.Eventf(swh, nil, corev1.EventTypeWarning, missing.reason, "ResolveSecrets", missing.Error())
			}
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	setCondition(swh, segmentv1alpha1.ConditionSecretsResolved, metav1.ConditionTrue,
		segmentv1alpha1.ReasonSecretsResolved, "all referenced Secret keys exist")

	if err := r.reconcileChildren(ctx, swh, secretData); err != nil {
		setCondition(swh, segmentv1alpha1.ConditionChildrenReconciled, metav1.ConditionFalse,
			segmentv1alpha1.ReasonReconcileFailed, err.Error())
		return ctrl.Result{}, err
	}
	setCondition(swh, segmentv1alpha1.ConditionChildrenReconciled, metav1.ConditionTrue,
		segmentv1alpha1.ReasonReconciled, "all children are up to date")

	return ctrl.Result{}, r.observeDeployment(ctx, swh)
}

// missingSecretError is a user error: a referenced Secret or key does not exist (yet).
type missingSecretError struct{ reason, msg string }

func (e *missingSecretError) Error() string { return e.msg }

// resolveSecrets reads every referenced Secret key. Their data only feeds the config hash.
func (r *SegmentWebhookReconciler) resolveSecrets(ctx context.Context, swh *segmentv1alpha1.SegmentWebhook) (map[segmentv1alpha1.SecretKeyRef][]byte, error) {
	data := map[segmentv1alpha1.SecretKeyRef][]byte{}
	secrets := map[string]*corev1.Secret{}
	for _, ref := range swh.Spec.SecretKeyRefs() {
		secret, ok := secrets[ref.Name]
		if !ok {
			secret = &corev1.Secret{}
			err := r.SecretReader.Get(ctx, types.NamespacedName{Namespace: swh.Namespace, Name: ref.Name}, secret)
			if apierrors.IsNotFound(err) {
				return nil, &missingSecretError{segmentv1alpha1.ReasonSecretNotFound,
					fmt.Sprintf("Secret %q not found in namespace %q", ref.Name, swh.Namespace)}
			}
			if err != nil {
				return nil, fmt.Errorf("reading Secret %q: %w", ref.Name, err)
			}
			secrets[ref.Name] = secret
		}
		value, ok := secret.Data[ref.Key]
		if !ok {
			return nil, &missingSecretError{segmentv1alpha1.ReasonSecretKeyNotFound,
				fmt.Sprintf("Secret %q has no key %q", ref.Name, ref.Key)}
		}
		data[ref] = value
	}
	return data, nil
}

// child pairs a desired object with an empty one of its type; a nil desired removes the child.
type child struct {
	desired client.Object
	live    client.Object
}

func want[T any, P interface {
	*T
	client.Object
}](swh *segmentv1alpha1.SegmentWebhook, desired P) child {
	live := P(new(T))
	live.SetName(ChildName(swh))
	live.SetNamespace(swh.Namespace)
	if desired == nil {
		return child{live: live}
	}
	return child{desired: desired, live: live}
}

func (r *SegmentWebhookReconciler) reconcileChildren(ctx context.Context, swh *segmentv1alpha1.SegmentWebhook, secretData map[segmentv1alpha1.SecretKeyRef][]byte) error {
	cfg := newReceiverConfig(swh)
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("rendering receiver config: %w", err)
	}
	configJSON, err := cfg.Marshal()
	if err != nil {
		return err
	}
	children := []child{
		want(swh, newConfigMap(swh, configJSON)),
		want(swh, newDeployment(swh, r.Options, configHash(configJSON, secretData))),
		want(swh, newService(swh)),
		want(swh, newIngress(swh)),
		want(swh, newHorizontalPodAutoscaler(swh)),
		want(swh, newPodDisruptionBudget(swh)),
	}
	a := &applier{client: r.Client, owner: swh}
	log := logf.FromContext(ctx)
	for _, c := range children {
		var result applyResult
		var err error
		if c.desired == nil {
			result, err = a.remove(ctx, c.live)
		} else {
			result, err = a.apply(ctx, c.desired, c.live)
		}
		if err != nil {
			return err
		}
		if result != resultUnchanged {
			gvk, err := r.GroupVersionKindFor(c.live)
			if err != nil {
				return err
			}
			log.Info("child "+strings.ToLower(string(result)), "kind", gvk.Kind, "name", c.live.GetName())
			// The child as related object keeps events about different children apart.
			r.Recorder.Eventf(swh, c.live, corev1.EventTypeNormal, "Child"+string(result), "Reconcile",
				"%s %s %s", gvk.Kind, c.live.GetName(), strings.ToLower(string(result)))
		}
	}
	return nil
}

// observeDeployment copies the receiver Deployment's state into status.
func (r *SegmentWebhookReconciler) observeDeployment(ctx context.Context, swh *segmentv1alpha1.SegmentWebhook) error {
	dep := &appsv1.Deployment{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: swh.Namespace, Name: ChildName(swh)}, dep); err != nil {
		return client.IgnoreNotFound(err)
	}
	swh.Status.Replicas = dep.Status.Replicas
	swh.Status.ReadyReplicas = dep.Status.ReadyReplicas
	available := findDeploymentCondition(dep, appsv1.DeploymentAvailable)
	switch {
	case available != nil && available.Status == corev1.ConditionTrue && dep.Status.ReadyReplicas > 0:
		setCondition(swh, segmentv1alpha1.ConditionAvailable, metav1.ConditionTrue, segmentv1alpha1.ReasonDeploymentAvailable,
			fmt.Sprintf("%d of %d receiver replicas ready", dep.Status.ReadyReplicas, dep.Status.Replicas))
	case available != nil && available.Message != "":
		setCondition(swh, segmentv1alpha1.ConditionAvailable, metav1.ConditionFalse, segmentv1alpha1.ReasonDeploymentUnavailable, available.Message)
	default:
		setCondition(swh, segmentv1alpha1.ConditionAvailable, metav1.ConditionFalse, segmentv1alpha1.ReasonDeploymentUnavailable,
			"waiting for the receiver Deployment to have ready replicas")
	}
	return nil
}

func findDeploymentCondition(dep *appsv1.Deployment, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range dep.Status.Conditions {
		if dep.Status.Conditions[i].Type == t {
			return &dep.Status.Conditions[i]
		}
	}
	return nil
}

func setCondition(swh *segmentv1alpha1.SegmentWebhook, t string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&swh.Status.Conditions, metav1.Condition{
		Type: t, Status: status, Reason: reason, Message: msg, ObservedGeneration: swh.Generation,
	})
}

// summarize derives Ready from the finer conditions: the first one that is not True explains it.
func summarize(swh *segmentv1alpha1.SegmentWebhook) {
	swh.Status.ObservedGeneration = swh.Generation
	for _, t := range []string{
		segmentv1alpha1.ConditionSecretsResolved,
		segmentv1alpha1.ConditionChildrenReconciled,
		segmentv1alpha1.ConditionAvailable,
	} {
		c := meta.FindStatusCondition(swh.Status.Conditions, t)
		if c == nil || c.ObservedGeneration != swh.Generation {
			setCondition(swh, segmentv1alpha1.ConditionReady, metav1.ConditionFalse, "Progressing", "waiting for "+t)
			return
		}
		if c.Status != metav1.ConditionTrue {
			setCondition(swh, segmentv1alpha1.ConditionReady, metav1.ConditionFalse, c.Reason, c.Message)
			return
		}
	}
	setCondition(swh, segmentv1alpha1.ConditionReady, metav1.ConditionTrue, segmentv1alpha1.ReasonReady,
		"the receiver is serving at "+swh.Status.URL)
}

func conditionChanged(before, after *segmentv1alpha1.SegmentWebhook, t string) bool {
	b := meta.FindStatusCondition(before.Status.Conditions, t)
	a := meta.FindStatusCondition(after.Status.Conditions, t)
	return b == nil || a == nil || b.Status != a.Status || b.Reason != a.Reason || b.Message != a.Message
}

// patchStatus writes status only when it differs, so a no-op reconcile writes nothing.
func (r *SegmentWebhookReconciler) patchStatus(ctx context.Context, original, swh *segmentv1alpha1.SegmentWebhook) error {
	if equality.Semantic.DeepEqual(original.Status, swh.Status) {
		return nil
	}
	if err := r.Status().Patch(ctx, swh, client.MergeFrom(original)); err != nil {
		return client.IgnoreNotFound(err)
	}
	return nil
}

// requestsForSecret enqueues the SegmentWebhooks that reference a Secret.
func (r *SegmentWebhookReconciler) requestsForSecret(ctx context.Context, secret client.Object) []reconcile.Request {
	var list segmentv1alpha1.SegmentWebhookList
	if err := r.List(ctx, &list, client.InNamespace(secret.GetNamespace()),
		client.MatchingFields{SecretNameIndex: secret.GetName()}); err != nil {
		logf.FromContext(ctx).Error(err, "listing SegmentWebhooks for a Secret", "secret", secret.GetName())
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, swh := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&swh)})
	}
	return reqs
}

// SetupWithManager registers the controller, its Secret index and its watches.
func (r *SegmentWebhookReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &segmentv1alpha1.SegmentWebhook{}, SecretNameIndex,
		func(o client.Object) []string { return o.(*segmentv1alpha1.SegmentWebhook).Spec.SecretNames() }); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&segmentv1alpha1.SegmentWebhook{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&corev1.ConfigMap{}).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&networkingv1.Ingress{}).
		Owns(&autoscalingv2.HorizontalPodAutoscaler{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.requestsForSecret), builder.OnlyMetadata).
		Named("segmentwebhook").
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.MaxConcurrentReconciles, 1)}).
		Complete(r)
}
