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
	"iter"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get

// AllowedHostsAnnotation on a Namespace lists, comma-separated, the hosts its SegmentWebhooks may
// claim: exact hosts, or "*.example.com" for any host under example.com. Without it any host
// may be claimed (first come, first served).
const AllowedHostsAnnotation = "segment.webhook-operator.io/allowed-hosts"

// ClaimedHostIndex indexes SegmentWebhooks, in every namespace the operator watches, by the
// host+path pairs their Ingress or HTTPRoute would serve.
const ClaimedHostIndex = ".spec.claimedHosts"

// ClaimedHosts are the host+path pairs (such as "segment.example.com/webhook") a SegmentWebhook
// exposes to Segment. Hosts are compared as written: a wildcard Ingress host is its own claim.
func ClaimedHosts(swh *segmentv1alpha1.SegmentWebhook) []string {
	var hosts []string
	if in := swh.Spec.Ingress; in != nil {
		hosts = append(hosts, in.Host)
	}
	if g := swh.Spec.Gateway; g != nil {
		for _, h := range g.Hostnames {
			hosts = append(hosts, string(h))
		}
	}
	claims := make([]string, 0, len(hosts))
	for _, h := range hosts {
		claims = append(claims, h+swh.Spec.WebhookPath())
	}
	return claims
}

// claimedFirst orders SegmentWebhooks by who claimed first: the older one, then by
// namespace/name so that two created in the same second still have one winner.
func claimedFirst(a, b *segmentv1alpha1.SegmentWebhook) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

// claimant is another SegmentWebhook claiming the host+path pair claim.
type claimant struct {
	claim string
	swh   *segmentv1alpha1.SegmentWebhook
}

// claimants yields, claim by claim, the other SegmentWebhooks that claim one of swh's host+path
// pairs. A claim whose lookup failed yields its error, and the next claim follows.
func (r *SegmentWebhookReconciler) claimants(ctx context.Context, swh *segmentv1alpha1.SegmentWebhook) iter.Seq2[claimant, error] {
	return func(yield func(claimant, error) bool) {
		for _, claim := range ClaimedHosts(swh) {
			var list segmentv1alpha1.SegmentWebhookList
			if err := r.List(ctx, &list, client.MatchingFields{ClaimedHostIndex: claim}); err != nil {
				if !yield(claimant{}, fmt.Errorf("listing SegmentWebhooks that claim %s: %w", claim, err)) {
					return
				}
				continue
			}
			for i := range list.Items {
				if other := &list.Items[i]; other.UID != swh.UID && !yield(claimant{claim, other}, nil) {
					return
				}
			}
		}
	}
}

// hostOwner finds an earlier SegmentWebhook claiming one of swh's host+path pairs.
func (r *SegmentWebhookReconciler) hostOwner(ctx context.Context, swh *segmentv1alpha1.SegmentWebhook) (*segmentv1alpha1.SegmentWebhook, string, error) {
	for c, err := range r.claimants(ctx, swh) {
		if err != nil {
			return nil, "", err
		}
		if c.swh.DeletionTimestamp.IsZero() && claimedFirst(c.swh, swh) {
			return c.swh, c.claim, nil
		}
	}
	return nil, "", nil
}

// hostAllowed matches a host against the patterns of AllowedHostsAnnotation.
func hostAllowed(host string, patterns []string) bool {
	for _, p := range patterns {
		if suffix, ok := strings.CutPrefix(p, "*."); ok {
			if strings.HasSuffix(host, "."+suffix) {
				return true
			}
		} else if host == p {
			return true
		}
	}
	return false
}

// disallowedHost returns the first host swh may not claim under its Namespace's
// AllowedHostsAnnotation, with the patterns; "" when every host is allowed.
func (r *SegmentWebhookReconciler) disallowedHost(ctx context.Context, swh *segmentv1alpha1.SegmentWebhook) (string, string, error) {
	// An uncached GET of this one Namespace: a Role in the namespace can grant it, so it works
	// with watchNamespaces too, and the operator does not cache every Namespace.
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := r.APIReader.Get(ctx, types.NamespacedName{Name: swh.Namespace}, ns); err != nil {
		return "", "", fmt.Errorf("reading Namespace %s for %s: %w", swh.Namespace, AllowedHostsAnnotation, err)
	}
	value, ok := ns.Annotations[AllowedHostsAnnotation]
	if !ok {
		return "", "", nil
	}
	var patterns []string
	for _, p := range strings.Split(value, ",") {
		if p = strings.TrimSpace(p); p != "" {
			patterns = append(patterns, p)
		}
	}
	for _, claim := range ClaimedHosts(swh) {
		host := strings.TrimSuffix(claim, swh.Spec.WebhookPath())
		if !hostAllowed(host, patterns) {
			return host, value, nil
		}
	}
	return "", "", nil
}

// claimHosts reports in HostsClaimed whether swh may have its host+path pairs: its Namespace
// allows the hosts, and no other SegmentWebhook claimed them first. If not, swh's Ingress and
// HTTPRoute are removed from the children (so deleted if they exist): its receiver runs, but
// gets no traffic for a host that is not its own, and a stalled error says why. Only a change of
// either SegmentWebhook (watched) or of the Namespace's annotation (seen at the next resync) can
// resolve it.
func (r *SegmentWebhookReconciler) claimHosts(ctx context.Context, swh *segmentv1alpha1.SegmentWebhook, children []child) error {
	if len(ClaimedHosts(swh)) == 0 {
		meta.RemoveStatusCondition(&swh.Status.Conditions, segmentv1alpha1.ConditionHostsClaimed)
		return nil
	}
	host, patterns, err := r.disallowedHost(ctx, swh)
	if err != nil {
		return err
	}
	var reason, message string
	if host != "" {
		reason = segmentv1alpha1.ReasonHostNotAllowed
		message = fmt.Sprintf("namespace %s may claim only %q (annotation %s), not %s", swh.Namespace, patterns, AllowedHostsAnnotation, host)
	} else {
		owner, claim, err := r.hostOwner(ctx, swh)
		if err != nil {
			return err
		}
		if owner == nil {
			setCondition(swh, segmentv1alpha1.ConditionHostsClaimed, true, segmentv1alpha1.ReasonHostsClaimed,
				"no earlier SegmentWebhook claims these hosts")
			return nil
		}
		reason = segmentv1alpha1.ReasonHostConflict
		message = fmt.Sprintf("%s is claimed by SegmentWebhook %s/%s, created first; choose another host or path", claim, owner.Namespace, owner.Name)
	}
	for i, c := range children {
		switch c.live.(type) {
		case *networkingv1.Ingress, *gatewayv1.HTTPRoute:
			children[i].desired = nil
		}
	}
	setCondition(swh, segmentv1alpha1.ConditionHostsClaimed, false, reason, message)
	return &notReadyError{reason: reason, msg: message, stalled: true}
}

// requestsForHosts enqueues the other SegmentWebhooks claiming a host+path of the one that
// changed or went away, so a waiting one takes the host over when its owner lets go.
func (r *SegmentWebhookReconciler) requestsForHosts(ctx context.Context, obj client.Object) []reconcile.Request {
	swh, ok := obj.(*segmentv1alpha1.SegmentWebhook)
	if !ok {
		return nil
	}
	var reqs []reconcile.Request
	for c, err := range r.claimants(ctx, swh) {
		if err != nil {
			logf.FromContext(ctx).Error(err, "enqueueing the other claimants of a host")
			continue
		}
		req := reconcile.Request{NamespacedName: client.ObjectKeyFromObject(c.swh)}
		if !slices.Contains(reqs, req) {
			reqs = append(reqs, req)
		}
	}
	return reqs
}
