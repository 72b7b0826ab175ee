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

package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
	"github.com/segment-webhook-operator/segment-webhook-operator/controllers"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

// segmentMaxEventBytes is Segment's cap on one event.
const segmentMaxEventBytes = 32 << 10

const lastEvents = 10

func newStatusCommand(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:     "status NAME",
		Short:   "Show a SegmentWebhook's conditions, children, recent events and the Segment settings to paste",
		Example: `  kubectl swh status events -n growth`,
		Args:    cobra.ExactArgs(1),
		RunE:    func(cmd *cobra.Command, args []string) error { return c.status(cmd.Context(), args[0]) },
	}
}

func (c *cli) status(ctx context.Context, name string) error {
	cl, ns, err := c.client()
	if err != nil {
		return err
	}
	swh := &segmentv1alpha1.SegmentWebhook{}
	if err := cl.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, swh); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("SegmentWebhook %s/%s not found (kubectl get swh -n %s)", ns, name, ns)
		}
		return err
	}
	now := time.Now()
	st := swh.Status
	c.printf("SegmentWebhook %s/%s\n", swh.Namespace, swh.Name)
	current := "the status describes the current spec"
	if st.ObservedGeneration != swh.Generation {
		current = "the operator has not processed the current spec yet"
	}
	c.printf("  generation %d, observed %d: %s\n", swh.Generation, st.ObservedGeneration, current)
	c.printf("  URL        %s\n", orDefault(st.URL, "(none yet)"))
	c.printf("  replicas   %d ready of %d\n", st.ReadyReplicas, st.Replicas)

	c.printf("\nConditions:\n")
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  TYPE\tSTATUS\tREASON\tAGE\tMESSAGE")
	for _, cond := range st.Conditions {
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\n", cond.Type, cond.Status, cond.Reason, age(now, cond.LastTransitionTime), cond.Message)
	}
	if len(st.Conditions) == 0 {
		fmt.Fprintln(w, "  (none: the operator has not reconciled it; is it running and watching this namespace?)")
	}
	_ = w.Flush()

	c.printf("\nChildren (owned by the SegmentWebhook):\n")
	children, err := children(ctx, cl, swh)
	if err != nil {
		return err
	}
	w = tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	for _, ch := range children {
		fmt.Fprintf(w, "  %s\t%s\n", ch.name, ch.state)
	}
	if len(children) == 0 {
		fmt.Fprintln(w, "  (none yet)")
	}
	_ = w.Flush()

	c.printf("\nSegment destination settings (Webhooks (Actions), or the Classic Webhooks destination):\n")
	for _, s := range destinationSettings(swh) {
		c.printf("  %-14s %s\n", s[0], s[1])
	}

	c.printf("\nEvents (last %d):\n", lastEvents)
	events, err := recentEvents(ctx, cl, swh)
	if err != nil {
		return err
	}
	w = tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  AGE\tTYPE\tREASON\tOBJECT\tMESSAGE")
	for _, e := range events {
		count := ""
		if e.Series != nil {
			count = fmt.Sprintf(" (x%d)", e.Series.Count)
		}
		obj := e.Regarding.Kind + "/" + e.Regarding.Name
		if e.Related != nil {
			obj = e.Related.Kind + "/" + e.Related.Name
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s%s\n", age(now, eventTime(e)), e.Type, e.Reason, obj, e.Note, count)
	}
	if len(events) == 0 {
		fmt.Fprintln(w, "  (none)")
	}
	return w.Flush()
}

type child struct{ name, state string }

// children reads the objects the operator makes for a SegmentWebhook. A cluster without the
// Gateway API has no HTTPRoute kind.
func children(ctx context.Context, cl client.Client, swh *segmentv1alpha1.SegmentWebhook) ([]child, error) {
	key := types.NamespacedName{Namespace: swh.Namespace, Name: controllers.ChildName(swh)}
	var out []child
	for _, o := range controllers.ChildTypes(true) {
		if err := cl.Get(ctx, key, o); err != nil {
			if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
				continue
			}
			return nil, err
		}
		if ref := metav1.GetControllerOf(o); ref == nil || ref.UID != swh.UID {
			continue
		}
		out = append(out, describeChild(o))
	}
	return out, nil
}

func describeChild(o client.Object) child {
	switch o := o.(type) {
	case *corev1.ConfigMap:
		return child{"ConfigMap/" + o.Name, "the receiver config (config.json)"}
	case *appsv1.Deployment:
		want := ptr.Deref(o.Spec.Replicas, 1)
		image := ""
		if cs := o.Spec.Template.Spec.Containers; len(cs) > 0 {
			image = ", image " + cs[0].Image
		}
		return child{"Deployment/" + o.Name, fmt.Sprintf("%d/%d ready%s", o.Status.ReadyReplicas, want, image)}
	case *corev1.Service:
		var ports []string
		for _, p := range o.Spec.Ports {
			ports = append(ports, fmt.Sprint(p.Port))
		}
		return child{"Service/" + o.Name, fmt.Sprintf("%s, port %s", o.Spec.Type, strings.Join(ports, ","))}
	case *networkingv1.Ingress:
		var hosts []string
		for _, r := range o.Spec.Rules {
			hosts = append(hosts, r.Host)
		}
		tls := "no TLS"
		if len(o.Spec.TLS) > 0 {
			tls = "TLS " + o.Spec.TLS[0].SecretName
		}
		return child{"Ingress/" + o.Name, strings.Join(hosts, ",") + ", " + tls}
	case *autoscalingv2.HorizontalPodAutoscaler:
		return child{"HorizontalPodAutoscaler/" + o.Name, fmt.Sprintf("%d replicas now, %d-%d", o.Status.CurrentReplicas, ptr.Deref(o.Spec.MinReplicas, 1), o.Spec.MaxReplicas)}
	case *policyv1.PodDisruptionBudget:
		return child{"PodDisruptionBudget/" + o.Name, fmt.Sprintf("%d disruptions allowed", o.Status.DisruptionsAllowed)}
	case *networkingv1.NetworkPolicy:
		return child{"NetworkPolicy/" + o.Name, "ingress to the receiver port only from the allowed peers"}
	case *gatewayv1.HTTPRoute:
		return child{"HTTPRoute/" + o.Name, fmt.Sprintf("hostnames %v", o.Spec.Hostnames)}
	}
	return child{o.GetName(), ""}
}

// destinationSettings are the values to enter in Segment, with batching advice from limits.
func destinationSettings(swh *segmentv1alpha1.SegmentWebhook) [][2]string {
	spec := swh.Spec
	out := [][2]string{{"Webhook URL", orDefault(swh.Status.URL, "(none yet)")}}
	if swh.Status.URL == "" {
		if swh.Status.Address != nil {
			out = append(out, [2]string{"", "reachable only inside the cluster, at " + swh.Status.Address.URL})
		}
		out = append(out, [2]string{"", "Segment needs spec.ingress, spec.gateway or a LoadBalancer Service, with TLS"})
	}
	out = append(out, [2]string{"Method", "POST (PUT and PATCH work too)"})
	switch spec.Authentication.Mode {
	case segmentv1alpha1.AuthenticationNone:
		out = append(out, [2]string{"Shared Secret", "none: authentication.mode is None, anyone who knows the URL can send"})
	case segmentv1alpha1.AuthenticationBearer:
		if ref := spec.Authentication.BearerTokenSecretRef; ref != nil {
			out = append(out, [2]string{"Headers", fmt.Sprintf("Authorization: Bearer <the value of Secret %s, key %s>", ref.Name, ref.Key)})
		}
	default:
		for i, ref := range spec.SecretRefs {
			label := ""
			if i == 0 {
				label = "Shared Secret"
			}
			out = append(out, [2]string{label, fmt.Sprintf("the value of Secret %s, key %s:  kubectl -n %s get secret %s -o jsonpath='{.data.%s}' | base64 -d",
				ref.Name, ref.Key, swh.Namespace, ref.Name, ref.Key)})
		}
		if len(spec.SecretRefs) > 1 {
			out = append(out, [2]string{"", "any of these is accepted (rotation): paste the newest one"})
		}
		out = append(out, [2]string{"Signature", "X-Signature (Segment's default); \"Use X-Segment-Signature Header\" signs whole batches"})
	}
	maxBody, maxEvents := limits(swh)
	safe := min(maxEvents, maxBody/segmentMaxEventBytes)
	out = append(out,
		[2]string{"Batching", fmt.Sprintf("on is fine; Batch Size at most %d (limits.maxEvents; Segment allows up to 4000)", maxEvents)},
		[2]string{"", fmt.Sprintf("a full batch of %d must fit limits.maxBodyBytes=%s: events averaging up to %s each;",
			maxEvents, bytesText(maxBody), bytesText(maxBody/maxEvents))},
		[2]string{"", fmt.Sprintf("at Segment's 32 KiB per event, batches of up to %d always fit. Over the limits is 413, never retried.", safe)})
	budget := config.DefaultBudget
	if spec.Delivery.Budget != nil {
		budget = spec.Delivery.Budget.Duration
	}
	out = append(out, [2]string{"Timeout", fmt.Sprintf("Segment waits about 5s; the receiver answers within %s (delivery.budget)", budget)})
	return out
}

// limits are the receiver's body and batch limits: the spec's, else the receiver's defaults.
func limits(swh *segmentv1alpha1.SegmentWebhook) (maxBodyBytes, maxEvents int64) {
	maxBodyBytes, maxEvents = swh.Spec.Limits.MaxBodyBytes, int64(swh.Spec.Limits.MaxEvents)
	if maxBodyBytes == 0 {
		maxBodyBytes = config.DefaultMaxBodyBytes
	}
	if maxEvents == 0 {
		maxEvents = config.DefaultMaxEvents
	}
	return maxBodyBytes, maxEvents
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// recentEvents are the newest events about the SegmentWebhook (the operator's Events name the
// SegmentWebhook as regarding and the child as related).
func recentEvents(ctx context.Context, cl client.Client, swh *segmentv1alpha1.SegmentWebhook) ([]eventsv1.Event, error) {
	var list eventsv1.EventList
	if err := cl.List(ctx, &list, client.InNamespace(swh.Namespace)); err != nil {
		return nil, fmt.Errorf("listing events: %w", err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.UID == swh.UID || (e.Regarding.Kind == "SegmentWebhook" && e.Regarding.Name == swh.Name) {
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b eventsv1.Event) int { return eventTime(a).Compare(eventTime(b).Time) })
	if len(out) > lastEvents {
		out = out[len(out)-lastEvents:]
	}
	return out, nil
}

func eventTime(e eventsv1.Event) metav1.Time {
	switch {
	case e.Series != nil:
		return metav1.Time{Time: e.Series.LastObservedTime.Time}
	case !e.EventTime.IsZero():
		return metav1.Time{Time: e.EventTime.Time}
	case !e.DeprecatedLastTimestamp.IsZero():
		return e.DeprecatedLastTimestamp
	}
	return e.CreationTimestamp
}

func age(now time.Time, t metav1.Time) string {
	if t.IsZero() {
		return "?"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}
