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
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// SecretNameIndex indexes SegmentWebhooks by the Secrets they reference.
const SecretNameIndex = ".spec.secretNames"

// DefaultMaxConcurrentReconciles is how many SegmentWebhooks reconcile in parallel by default.
const DefaultMaxConcurrentReconciles = 8

// EventSource names the operator in the Events it records.
const EventSource = "segment-webhook-operator"

// NewSegmentWebhookReconciler wires a reconciler to the manager's clients and event recorder.
func NewSegmentWebhookReconciler(mgr ctrl.Manager, opts RenderOptions) *SegmentWebhookReconciler {
	r := &SegmentWebhookReconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Recorder:                mgr.GetEventRecorder(EventSource),
		Options:                 opts,
		MaxConcurrentReconciles: DefaultMaxConcurrentReconciles,
		verified:                &verifiedIntents{},
	}
	r.secrets = newReferences[[]string](secretsResource, r.referrersByIndex(SecretNameIndex))
	r.plans = newReferences[compiledPlans](configMapsResource, r.referrersByIndex(TrackingPlanConfigMapIndex))
	return r
}

// SegmentWebhookReconciler reconciles a SegmentWebhook into its receiver's children.
type SegmentWebhookReconciler struct {
	client.Client
	// APIReader reads what the cache does not hold: a referenced Secret or tracking plan when its
	// resourceVersion changed, an object that holds a child's name without the operator's label,
	// and the managedFields of a child version the applier has not verified.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Options   RenderOptions
	// Policy is what the platform team lets SegmentWebhooks ask for (image, scheduling).
	Policy Policy
	// MaxConcurrentReconciles lets large fleets of SegmentWebhooks reconcile in parallel.
	MaxConcurrentReconciles int

	secrets  *references[[]string] // the key names of the referenced Secrets
	verified *verifiedIntents
	plans    *references[compiledPlans]
	// gatewayAPI is set when the cluster serves HTTPRoute, as NewManager discovered it.
	gatewayAPI bool
	// namespaces are the watched namespaces, as the manager's cache has them; nil watches all.
	namespaces map[string]cache.Config
}

// +kubebuilder:rbac:groups=segment.webhook-operator.io,resources=segmentwebhooks,verbs=get;list;watch
// +kubebuilder:rbac:groups=segment.webhook-operator.io,resources=segmentwebhooks/status,verbs=patch
// blockOwnerDeletion on the children's owner references needs update on finalizers where the
// OwnerReferencesPermissionEnforcement admission plugin runs.
// +kubebuilder:rbac:groups=segment.webhook-operator.io,resources=segmentwebhooks/finalizers,verbs=update
// Server-side apply needs patch, and create when the apply creates the child.
// +kubebuilder:rbac:groups="",resources=configmaps;services,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=autoscaling,resources=horizontalpodautoscalers,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile reads top to bottom: fetch the SegmentWebhook, report what its signature mode covers,
// check it against the operator's policy, its Secrets and tracking plan, render the children, claim their hosts, apply them, observe
// the receiver and its route. Status is computed and written once, in the deferred summarize,
// from the error (or none) the steps return.
func (r *SegmentWebhookReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	swh := &segmentv1alpha1.SegmentWebhook{}
	if err := r.Get(ctx, req.NamespacedName, swh); err != nil {
		if apierrors.IsNotFound(err) {
			r.forgetChildren(req)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !swh.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // owner references let the garbage collector remove the children
	}
	if swh.Spec.Suspend {
		logf.FromContext(ctx).V(1).Info("reconciliation is suspended")
		return ctrl.Result{}, r.observeSuspended(ctx, swh)
	}
	original := swh.DeepCopy()
	defer func() { result, retErr = r.summarize(ctx, original, swh, retErr) }()
	reportSignatureCoverage(swh)

	// What the policy refuses is not applied: a running receiver keeps its last spec.
	if err := r.Policy.check(swh); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.checkSecrets(ctx, swh); err != nil {
		setCondition(swh, segmentv1alpha1.ConditionSecretsResolved, false, reasonOf(err), err.Error())
		return ctrl.Result{}, err
	}
	setCondition(swh, segmentv1alpha1.ConditionSecretsResolved, true,
		segmentv1alpha1.ReasonSecretsResolved, "all referenced Secret keys exist")

	// A missing or invalid plan leaves the running receivers, and their last good plan, as they are.
	planDocs, err := r.resolveTrackingPlan(ctx, swh)
	if err != nil {
		return ctrl.Result{}, err
	}

	children, err := r.render(swh, planDocs)
	if err != nil {
		return ctrl.Result{}, err
	}
	hostsErr := r.claimHosts(ctx, swh, children)
	if hostsErr != nil && reasonOf(hostsErr) == segmentv1alpha1.ReasonReconcileFailed {
		return ctrl.Result{}, hostsErr
	}
	if err := keepLiveSelector(ctx, r.Client, children); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.applyChildren(ctx, original, swh, children); err != nil {
		return ctrl.Result{}, err
	}
	// The receiver runs even without its host: the conflict explains Ready first.
	return ctrl.Result{}, firstNotReady(hostsErr, r.observeRoute(swh, children), observe(swh, children))
}

// child pairs a desired object with an empty one of its type; a nil desired removes the child.
// After applying, live holds the child as it is on the API server.
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

// render builds every child from the spec. A config the receiver would refuse is a Stalled error:
// only a change of the spec can fix it.
func (r *SegmentWebhookReconciler) render(swh *segmentv1alpha1.SegmentWebhook, planDocs trackingPlanDocs) ([]child, error) {
	cfg := newReceiverConfig(swh)
	cfg.TrackingPlan = receiverTrackingPlan(swh, planDocs)
	if err := cfg.Validate(); err != nil {
		return nil, &notReadyError{reason: segmentv1alpha1.ReasonInvalidConfig, stalled: true,
			msg: fmt.Sprintf("the rendered receiver config is invalid: %v", err)}
	}
	configJSON, err := cfg.Marshal()
	if err != nil {
		return nil, err
	}
	children := []child{
		want(swh, withTrackingPlan(newConfigMap(swh, configJSON), planDocs)),
		want(swh, newDeployment(swh, r.Options, configHash(configJSON))),
		want(swh, newService(swh)),
		want(swh, newIngress(swh)),
		want(swh, newHorizontalPodAutoscaler(swh)),
		want(swh, newPodDisruptionBudget(swh)),
		want(swh, newNetworkPolicy(swh, cfg)),
	}
	if r.gatewayAPI {
		children = append(children, want(swh, newHTTPRoute(swh)))
	}
	return children, nil
}

// applyChildren applies or removes the children, concurrently: each is a round trip to the API
// server, and they do not depend on each other (a pod waits for its ConfigMap anyway). A change to
// a child of a Ready SegmentWebhook whose spec did not change is drift (someone edited or deleted
// it): only that is worth an Event.
func (r *SegmentWebhookReconciler) applyChildren(ctx context.Context, original, swh *segmentv1alpha1.SegmentWebhook, children []child) error {
	a := &applier{client: r.Client, reader: r.APIReader, owner: swh, verified: r.verified}
	drift := isReady(original)
	log := logf.FromContext(ctx)
	errs := make([]error, len(children))
	var wg sync.WaitGroup
	for i, c := range children {
		wg.Go(func() {
			var result applyResult
			var err error
			if c.desired == nil {
				result, err = a.remove(ctx, c.live)
			} else {
				result, err = a.apply(ctx, c.desired, c.live)
			}
			if err != nil || result == resultUnchanged {
				errs[i] = err
				return
			}
			gvk, err := r.GroupVersionKindFor(c.live)
			if err != nil {
				errs[i] = err
				return
			}
			kind := gvk.Kind
			log.Info("child "+strings.ToLower(string(result)), "kind", kind, "name", c.live.GetName())
			if drift {
				// The child as related object keeps events about different children apart.
				r.Recorder.Eventf(swh, c.live, corev1.EventTypeNormal, "DriftCorrected", "Reconcile",
					"%s %s %s", kind, c.live.GetName(), strings.ToLower(string(result)))
			}
		})
	}
	wg.Wait()
	return firstNotReady(errs...)
}

// forgetChildren drops what the applier remembers of a deleted SegmentWebhook's children.
func (r *SegmentWebhookReconciler) forgetChildren(req ctrl.Request) {
	name := ChildName(&segmentv1alpha1.SegmentWebhook{ObjectMeta: metav1.ObjectMeta{Name: req.Name}})
	for _, obj := range r.childTypes() {
		obj.SetNamespace(req.Namespace)
		obj.SetName(name)
		r.verified.forget(obj)
	}
}

// childTypes are the kinds of the children, one empty object each.
func (r *SegmentWebhookReconciler) childTypes() []client.Object { return ChildTypes(r.gatewayAPI) }

// ChildTypes are the kinds of a SegmentWebhook's children, one empty object each; the HTTPRoute
// only where the cluster serves the Gateway API.
func ChildTypes(gatewayAPI bool) []client.Object {
	types := []client.Object{&corev1.ConfigMap{}, &appsv1.Deployment{}, &corev1.Service{}, &networkingv1.Ingress{},
		&autoscalingv2.HorizontalPodAutoscaler{}, &policyv1.PodDisruptionBudget{}, &networkingv1.NetworkPolicy{}}
	if gatewayAPI {
		types = append(types, &gatewayv1.HTTPRoute{})
	}
	return types
}

// SetupWithManager registers the controller, its Secret index and its watches.
func (r *SegmentWebhookReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &segmentv1alpha1.SegmentWebhook{}, SecretNameIndex,
		func(o client.Object) []string { return o.(*segmentv1alpha1.SegmentWebhook).Spec.SecretNames() }); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &segmentv1alpha1.SegmentWebhook{}, ClaimedHostIndex,
		func(o client.Object) []string { return ClaimedHosts(o.(*segmentv1alpha1.SegmentWebhook)) }); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &segmentv1alpha1.SegmentWebhook{}, TrackingPlanConfigMapIndex,
		func(o client.Object) []string {
			if tp := o.(*segmentv1alpha1.SegmentWebhook).Spec.TrackingPlan; tp != nil {
				return []string{tp.ConfigMapRef.Name}
			}
			return nil
		}); err != nil {
		return err
	}
	// Secrets and plan ConfigMaps are the user's: the manager's cache holds none of them (see
	// references). In namespace-scoped mode only the watched namespaces are listed.
	userObjects, err := metadata.NewForConfigAndClient(mgr.GetConfig(), mgr.GetHTTPClient())
	if err != nil {
		return err
	}
	namespaces := slices.Collect(maps.Keys(r.namespaces))
	// Children wake the controller only when something it applies or reads changed, not for the
	// status noise of HPAs, PDBs and Deployments. An HTTPRoute's status is the Gateway's answer,
	// which the controller reads: every change of it counts.
	b := ctrl.NewControllerManagedBy(mgr).
		For(&segmentv1alpha1.SegmentWebhook{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, resync)))
	for _, obj := range r.childTypes() {
		if _, route := obj.(*gatewayv1.HTTPRoute); route {
			b = b.Owns(obj)
			continue
		}
		b = b.Owns(obj, builder.WithPredicates(childChanged))
	}
	return b.WatchesRawSource(r.secrets.source(userObjects, namespaces)).
		WatchesRawSource(r.plans.source(userObjects, namespaces)).
		// A SegmentWebhook letting go of a host lets the next claimant take it over.
		Watches(&segmentv1alpha1.SegmentWebhook{}, handler.EnqueueRequestsFromMapFunc(r.requestsForHosts),
			builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, hostClaimsChanged))).
		Named("segmentwebhook").
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.MaxConcurrentReconciles, 1)}).
		Complete(r)
}
