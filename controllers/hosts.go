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
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
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

// claimedFirst orders SegmentWebhooks by age: the older one, then by namespace/name so that two
// created in the same second still have one winner. It decides only between claims of which
// neither, or both at the same instant, was granted (see precedes).
func claimedFirst(a, b *segmentv1alpha1.SegmentWebhook) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

// grantOf is when swh was granted claim, or nil. A grant counts only while the spec still
// claims it: the claimants of a host+path are found by their spec (ClaimedHostIndex).
func grantOf(swh *segmentv1alpha1.SegmentWebhook, claim string) *metav1.MicroTime {
	for i := range swh.Status.HostClaims {
		if c := &swh.Status.HostClaims[i]; c.Claim == claim {
			return &c.GrantedAt
		}
	}
	return nil
}

// precedes reports whether a's claim to a host+path goes before b's, as Gateway API orders
// routes by age: a granted claim before one never granted, the earlier grant first, and between
// claims never granted the older SegmentWebhook. A granted claim is never revoked because
// another team's object is older.
func precedes(a, b *segmentv1alpha1.SegmentWebhook, claim string) bool {
	ga, gb := grantOf(a, claim), grantOf(b, claim)
	switch {
	case ga != nil && gb == nil:
		return true
	case ga == nil && gb != nil:
		return false
	case ga != nil && !ga.Equal(gb):
		return ga.Before(gb)
	}
	return claimedFirst(a, b)
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

// hostOwners finds, for each of swh's host+path pairs that another SegmentWebhook holds before
// it, that owner (the first one found).
func (r *SegmentWebhookReconciler) hostOwners(ctx context.Context, swh *segmentv1alpha1.SegmentWebhook) (map[string]*segmentv1alpha1.SegmentWebhook, error) {
	owners := map[string]*segmentv1alpha1.SegmentWebhook{}
	for c, err := range r.claimants(ctx, swh) {
		if err != nil {
			return nil, err
		}
		if owners[c.claim] == nil && c.swh.DeletionTimestamp.IsZero() && precedes(c.swh, swh, c.claim) {
			owners[c.claim] = c.swh
		}
	}
	return owners, nil
}

// conflictMessage explains who holds claim, and why.
func conflictMessage(claim string, owner *segmentv1alpha1.SegmentWebhook) string {
	why := "which claimed it first (created earlier, neither claim granted yet)"
	if granted := grantOf(owner, claim); granted != nil {
		why = "granted it at " + granted.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("%s is claimed by SegmentWebhook %s/%s, %s; choose another host or path, or have the owner let go",
		claim, owner.Namespace, owner.Name, why)
}

// recordGrants keeps in status the grants of the claims swh still holds (held), in claim order,
// and, when serve is set (its route is applied), grants from now those it holds but was never
// granted. Grants of claims it no longer holds go.
func recordGrants(swh *segmentv1alpha1.SegmentWebhook, held func(claim string) bool, serve bool) {
	var grants []segmentv1alpha1.HostClaim
	for _, claim := range ClaimedHosts(swh) {
		if !held(claim) || slices.ContainsFunc(grants, func(g segmentv1alpha1.HostClaim) bool { return g.Claim == claim }) {
			continue
		}
		if granted := grantOf(swh, claim); granted != nil {
			grants = append(grants, segmentv1alpha1.HostClaim{Claim: claim, GrantedAt: *granted})
		} else if serve {
			grants = append(grants, segmentv1alpha1.HostClaim{Claim: claim, GrantedAt: metav1.NewMicroTime(time.Now().Truncate(time.Microsecond))})
		}
	}
	slices.SortFunc(grants, func(a, b segmentv1alpha1.HostClaim) int { return strings.Compare(a.Claim, b.Claim) })
	swh.Status.HostClaims = grants
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
// allows the hosts, and no other SegmentWebhook holds them before it (see precedes). If so, the
// claims are granted in status.hostClaims. If not, swh's Ingress and HTTPRoute are removed from
// the children (so deleted if they exist): its receiver runs, but gets no traffic for a host that
// is not its own, and a stalled error says why; it keeps the grants of the claims it still holds.
// Only a change of either SegmentWebhook (watched) or of the Namespace's annotation (seen at the
// next resync) can resolve it.
func (r *SegmentWebhookReconciler) claimHosts(ctx context.Context, swh *segmentv1alpha1.SegmentWebhook, children []child) error {
	if len(ClaimedHosts(swh)) == 0 {
		meta.RemoveStatusCondition(&swh.Status.Conditions, segmentv1alpha1.ConditionHostsClaimed)
		swh.Status.HostClaims = nil
		return nil
	}
	host, patterns, err := r.disallowedHost(ctx, swh)
	if err != nil {
		return err
	}
	var reason, message string
	if host != "" {
		// The platform team took the host away: the grants go with it.
		swh.Status.HostClaims = nil
		reason = segmentv1alpha1.ReasonHostNotAllowed
		message = fmt.Sprintf("namespace %s may claim only %q (annotation %s), not %s", swh.Namespace, patterns, AllowedHostsAnnotation, host)
	} else {
		owners, err := r.hostOwners(ctx, swh)
		if err != nil {
			return err
		}
		recordGrants(swh, func(claim string) bool { return owners[claim] == nil }, len(owners) == 0)
		if len(owners) == 0 {
			setCondition(swh, segmentv1alpha1.ConditionHostsClaimed, true, segmentv1alpha1.ReasonHostsClaimed,
				"the hosts are granted to this SegmentWebhook, and no claim granted earlier holds them")
			return nil
		}
		claim := slices.Sorted(maps.Keys(owners))[0]
		reason = segmentv1alpha1.ReasonHostConflict
		message = conflictMessage(claim, owners[claim])
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
// changed, was granted or let go, or went away, so a waiting one takes the host over when its
// owner lets go.
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

// hostClaimsChanged lets through updates that grant or let go of a host claim: those decide for
// the other claimants of the host too.
var hostClaimsChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		old, okOld := e.ObjectOld.(*segmentv1alpha1.SegmentWebhook)
		cur, okNew := e.ObjectNew.(*segmentv1alpha1.SegmentWebhook)
		return okOld && okNew && !equality.Semantic.DeepEqual(old.Status.HostClaims, cur.Status.HostClaims)
	},
}
