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
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
	"github.com/segment-webhook-operator/segment-webhook-operator/controllers"
	"github.com/segment-webhook-operator/segment-webhook-operator/internal/segmentsend"
)

type sendOptions struct {
	kind         string
	url          string
	signature    string
	timeout      time.Duration
	insecureHTTP bool
}

func newSendCommand(c *cli) *cobra.Command {
	o := sendOptions{kind: "track", signature: "x-signature", timeout: 10 * time.Second}
	cmd := &cobra.Command{
		Use:   "send NAME",
		Short: "Send a signed sample request to a SegmentWebhook, exactly as Segment would, and explain the answer",
		Long: `Send reads the SegmentWebhook and its Secret with your kubeconfig, builds a sample Segment event
(or an Actions batch), authenticates it as the SegmentWebhook expects (X-Signature, X-Segment-Signature
or a bearer token), posts it to status.url or --url, and explains the answer. It exits 1 unless the
receiver answered 2xx, which means every required target has every event.`,
		Example: `  kubectl swh send events -n growth
  kubectl swh send events --type batch
  # the in-cluster URL from a laptop:
  kubectl -n growth port-forward svc/events-receiver 8080:80 &
  kubectl swh send events -n growth --url http://127.0.0.1:8080`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return c.send(cmd.Context(), args[0], o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.kind, "type", o.kind, "sample to send: "+strings.Join(segmentsend.Types, "|")+" (batch: an Actions batch of 3 events)")
	f.StringVar(&o.url, "url", "", "send here instead of status.url; without a path, the SegmentWebhook's webhook path is added")
	f.StringVar(&o.signature, "signature", o.signature, "HMAC header: x-signature (Segment's default) or x-segment-signature (Actions \"Use X-Segment-Signature Header\")")
	f.DurationVar(&o.timeout, "timeout", o.timeout, "how long to wait for the answer (Segment waits about 5s)")
	f.BoolVar(&o.insecureHTTP, "insecure-http", false, "send the bearer token or a signed request over plain http to a host other than loopback (anyone on the path can read or replay it)")
	return cmd
}

func (c *cli) send(ctx context.Context, name string, o sendOptions) error {
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
	header, err := signatureHeader(o.signature)
	if err != nil {
		return err
	}
	batch := o.kind == "batch"
	auth, how, err := authFor(ctx, cl, swh, header, batch)
	if err != nil {
		return err
	}
	target, err := targetURL(swh, o.url)
	if err != nil {
		return err
	}
	if err := plainHTTPRefusal(swh, target, auth, o.insecureHTTP); err != nil {
		return err
	}
	events, err := segmentsend.SampleEvents(o.kind, time.Now())
	if err != nil {
		return err
	}
	req, err := segmentsend.NewRequest(events, batch, auth)
	if err != nil {
		return err
	}

	what := fmt.Sprintf("one %s event", o.kind)
	if batch {
		what = fmt.Sprintf("an Actions batch of %d events (a JSON array)", len(events))
	}
	c.printf("%s %s\n", req.Method, target)
	c.printf("  %s as Segment's Webhooks (Actions) destination sends it, %d bytes\n", what, len(req.Body))
	c.printf("  %s\n", how)
	c.printf("  %s\n", abbreviate(string(req.Body), 160))

	start := time.Now()
	// A redirect is the answer: following it would send the credentials where it points.
	noRedirects := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := segmentsend.Send(ctx, &http.Client{Timeout: o.timeout, CheckRedirect: noRedirects}, target, req)
	if err != nil {
		c.printf("\nNo answer: %v\n", err)
		c.printf("%s", noAnswerHints(swh, target))
		return errors.New("no answer from the receiver")
	}
	c.printf("\nAnswer: %d %s after %s\n", resp.Code, http.StatusText(resp.Code), time.Since(start).Round(time.Millisecond))
	if resp.Body != "" {
		c.printf("  %s\n", abbreviate(resp.Body, 400))
	}
	c.printf("%s", explain(swh, req, resp, header))
	if resp.Code/100 != 2 {
		return &notDeliveredError{code: resp.Code}
	}
	return nil
}

// plainHTTPRefusal refuses to send credentials (a bearer token, or a signature: a request anyone
// who sees it can replay) over plain http to a host other than loopback, unless insecure.
func plainHTTPRefusal(swh *segmentv1alpha1.SegmentWebhook, target string, auth segmentsend.Auth, insecure bool) error {
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "http" || insecure || isLoopback(u.Hostname()) {
		return nil
	}
	var what string
	switch {
	case auth.BearerToken != "":
		what = "the bearer token"
	case len(auth.Secret) > 0:
		what = "a signed request (anyone who sees it can replay it)"
	default:
		return nil
	}
	msg := fmt.Sprintf("refusing to send %s over plain http to %s: pass --insecure-http to send it anyway", what, u.Host)
	if strings.HasSuffix(u.Hostname(), ".svc") {
		msg += fmt.Sprintf(", or reach the in-cluster Service through a port-forward: kubectl -n %s port-forward svc/%s 8080:%d, "+
			"then kubectl swh send %s -n %s --url http://127.0.0.1:8080",
			swh.Namespace, controllers.ChildName(swh), servicePort(swh), swh.Name, swh.Namespace)
	} else {
		msg += ", or give the SegmentWebhook an Ingress with TLS (https) and send there"
	}
	return errors.New(msg)
}

// isLoopback reports whether host is localhost or a loopback address.
func isLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func signatureHeader(flag string) (string, error) {
	switch strings.ToLower(flag) {
	case "x-signature":
		return segmentsend.XSignature, nil
	case "x-segment-signature":
		return segmentsend.XSegmentSignature, nil
	}
	return "", fmt.Errorf("--signature %q: want x-signature or x-segment-signature", flag)
}

// authFor reads the credential the SegmentWebhook expects and says in words what it does with it.
func authFor(ctx context.Context, cl client.Client, swh *segmentv1alpha1.SegmentWebhook, header string, batch bool) (segmentsend.Auth, string, error) {
	switch swh.Spec.Authentication.Mode {
	case segmentv1alpha1.AuthenticationNone:
		return segmentsend.Auth{}, "no signature (authentication.mode: None)", nil
	case segmentv1alpha1.AuthenticationBearer:
		ref := swh.Spec.Authentication.BearerTokenSecretRef
		if ref == nil {
			return segmentsend.Auth{}, "", errors.New("authentication.mode is Bearer but bearerTokenSecretRef is not set")
		}
		token, err := secretValue(ctx, cl, swh.Namespace, *ref)
		if err != nil {
			return segmentsend.Auth{}, "", err
		}
		return segmentsend.Auth{BearerToken: string(token)},
			fmt.Sprintf("Authorization: Bearer <token from Secret %s, key %s>", ref.Name, ref.Key), nil
	}
	if len(swh.Spec.SecretRefs) == 0 {
		return segmentsend.Auth{}, "", errors.New("authentication.mode is HMAC but secretRefs is empty")
	}
	ref := swh.Spec.SecretRefs[0]
	secret, err := secretValue(ctx, cl, swh.Namespace, ref)
	if err != nil {
		return segmentsend.Auth{}, "", err
	}
	over := "the body"
	if header == segmentsend.XSignature && batch {
		over = "element 0's bytes only (as Segment signs batches)"
	}
	return segmentsend.Auth{Secret: secret, SignatureHeader: header},
		fmt.Sprintf("%s: HMAC-SHA1 over %s with Secret %s, key %s (secretRefs[0])", header, over, ref.Name, ref.Key), nil
}

// secretValue reads a Secret key as the receiver uses it: one trailing newline removed.
func secretValue(ctx context.Context, cl client.Client, ns string, ref segmentv1alpha1.SecretKeyRef) ([]byte, error) {
	s := &corev1.Secret{}
	if err := cl.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, s); err != nil {
		return nil, fmt.Errorf("reading Secret %s/%s: %w", ns, ref.Name, err)
	}
	v, ok := s.Data[ref.Key]
	if !ok {
		return nil, fmt.Errorf("no key %q in Secret %s/%s", ref.Key, ns, ref.Name)
	}
	text, cut := strings.CutSuffix(string(v), "\n")
	if cut {
		text, _ = strings.CutSuffix(text, "\r")
	}
	if text == "" {
		return nil, fmt.Errorf("key %q of Secret %s/%s is empty", ref.Key, ns, ref.Name)
	}
	return []byte(text), nil
}

func targetURL(swh *segmentv1alpha1.SegmentWebhook, flag string) (string, error) {
	if flag == "" {
		// The public URL, else the in-cluster one (reachable from here only through a port-forward).
		if swh.Status.URL != "" {
			return swh.Status.URL, nil
		}
		if swh.Status.Address != nil && swh.Status.Address.URL != "" {
			return swh.Status.Address.URL, nil
		}
		return "", fmt.Errorf("SegmentWebhook %s has no status.url or status.address yet (is the operator running? kubectl swh status %s); "+
			"pass --url, for example with kubectl -n %s port-forward svc/%s 8080:%d and --url http://127.0.0.1:8080",
			swh.Name, swh.Name, swh.Namespace, controllers.ChildName(swh), servicePort(swh))
	}
	u, err := url.Parse(flag)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("--url %q: want an http(s) URL", flag)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = swh.Spec.WebhookPath()
	}
	return u.String(), nil
}

func servicePort(swh *segmentv1alpha1.SegmentWebhook) int32 {
	if swh.Spec.Service.Port != 0 {
		return swh.Spec.Service.Port
	}
	return 80
}

func noAnswerHints(swh *segmentv1alpha1.SegmentWebhook, target string) string {
	var b strings.Builder
	if u, err := url.Parse(target); err == nil && strings.HasSuffix(u.Hostname(), ".svc") {
		fmt.Fprintf(&b, "  %s is the in-cluster Service: it resolves only inside the cluster. From here:\n", u.Host)
		fmt.Fprintf(&b, "    kubectl -n %s port-forward svc/%s 8080:%d\n", swh.Namespace, controllers.ChildName(swh), servicePort(swh))
		fmt.Fprintf(&b, "    kubectl swh send %s -n %s --url http://127.0.0.1:8080\n", swh.Name, swh.Namespace)
		return b.String()
	}
	fmt.Fprintf(&b, "  Segment would time out too (it waits about 5 s) and retry for up to four hours.\n")
	fmt.Fprintf(&b, "  Check that the receiver pods are ready (kubectl swh status %s -n %s) and, for an Ingress URL,\n", swh.Name, swh.Namespace)
	fmt.Fprintf(&b, "  that DNS and the Ingress controller route %s to the Service.\n", target)
	return b.String()
}

// explain says what an answer means for this SegmentWebhook and what to check.
func explain(swh *segmentv1alpha1.SegmentWebhook, req *segmentsend.Request, resp *segmentsend.Response, header string) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	ref := fmt.Sprintf("%s -n %s", swh.Name, swh.Namespace)
	switch {
	case resp.Code/100 == 2:
		line("Delivered: every required target accepted every event (the receiver answers 2xx only then).")
		for _, r := range routes(swh, req.Events) {
			line("  %s", r)
		}
	case resp.Code/100 == 3:
		line("Redirected to %q: not followed, so the request and its credentials went nowhere else.", resp.Header.Get("Location"))
		line("  Segment does not get events through a redirect either: point it (and --url) at the final URL,")
		line("  typically https:// where an Ingress or load balancer redirects http.")
	case resp.Code == http.StatusUnauthorized:
		line("Not authenticated (Segment does not retry 401). Check:")
		switch swh.Spec.Authentication.Mode {
		case segmentv1alpha1.AuthenticationBearer:
			line("  - the receiver compares the bearer token with the file mounted from bearerTokenSecretRef; a")
			line("    Secret changed a moment ago reaches the pods after the kubelet's sync (up to a minute or so).")
		default:
			line("  - this request was signed with secretRefs[0], so the running receiver does not have that value:")
			line("    a Secret changed a moment ago reaches the pods after the kubelet's sync (up to a minute or so);")
			line("    the receiver then reloads by itself. During a rotation keep both keys in secretRefs.")
			if header == segmentsend.XSignature && swh.Spec.Authentication.Signature == segmentv1alpha1.SignatureFullBody {
				line("  - authentication.signature is FullBody, which refuses batches signed over element 0 only:")
				line("    send with --signature x-segment-signature, as Segment does with \"Use X-Segment-Signature Header\".")
			}
			line("  - in Segment, the destination's Shared Secret must be exactly the Secret's value (one trailing")
			line("    newline is ignored, other whitespace is not).")
		}
		line("  - kubectl swh status %s: Ready, SecretsResolved and observedGeneration == generation.", ref)
		line("  - segment_receiver_signature_failures_total rises with each refused request.")
	case resp.Code == http.StatusBadRequest:
		line("Refused as invalid (Segment does not retry 400): the answer names the event index, field and reason.")
		line("  validation is %s; an Actions mapping that reshapes events needs validation: Lenient.", orDefault(string(swh.Spec.Validation), "Strict"))
	case resp.Code == http.StatusNotFound:
		line("Not found: the receiver serves only %s. Check the URL's path (status.url, spec.ingress.path).", swh.Spec.WebhookPath())
	case resp.Code == http.StatusRequestEntityTooLarge:
		maxBody, maxEvents := limits(swh)
		line("Too large (Segment does not retry 413): limits.maxBodyBytes=%s, limits.maxEvents=%d.", bytesText(maxBody), maxEvents)
		line("  Raise the limits, or lower the batch size in Segment (kubectl swh status %s shows the advice).", ref)
	case resp.Code == http.StatusUnsupportedMediaType:
		line("Unsupported media type: the request left here as application/json; a proxy on the way changed it.")
	case resp.Code == http.StatusTooManyRequests:
		line("Overloaded (Segment retries 429; Retry-After: %s): more requests in flight, or more body bytes", orDefault(resp.Header.Get("Retry-After"), "none"))
		line("  held at once, than one receiver allows. Add replicas or spec.autoscaling.")
	case resp.Code == http.StatusServiceUnavailable:
		line("Not delivered, retry later (Segment retries 503 for up to four hours, so nothing is lost yet; Retry-After: %s).", orDefault(resp.Header.Get("Retry-After"), "none"))
		line("  Either a required target did not accept in time, or the receiver has no valid config. Check:")
		line("  - the required targets for this request:")
		for _, r := range routes(swh, req.Events) {
			if !r.optional && r.events > 0 {
				line("      %s", r)
			}
		}
		line("  - segment_receiver_target_failures_total{kind=\"transient\"} and the receiver logs:")
		line("      kubectl -n %s logs deploy/%s", swh.Namespace, controllers.ChildName(swh))
		line("  - segment_receiver_ready and segment_receiver_config_reloads_total{result=\"failure\"} for the config;")
		line("  - a target that may miss events can be marked optional: true.")
	case resp.Code >= 500:
		line("%d does not come from the receiver (it answers 503 itself): a proxy or Ingress controller on the way", resp.Code)
		line("  could not reach the receiver pods. kubectl swh status %s shows whether they are ready.", ref)
	default:
		line("Unexpected answer; see the receiver's README for its response codes.")
	}
	return b.String()
}

// route is where a request's events go, by the SegmentWebhook's target filters (as the
// receiver routes them).
type route struct {
	target   string
	kind     string
	optional bool
	events   int
	of       int
	filter   string
}

func (r route) String() string {
	role := "required"
	if r.optional {
		role = "optional, delivered in the background"
	}
	s := fmt.Sprintf("%-12s %s, %s: %d of %d events", r.target, r.kind, role, r.events, r.of)
	if r.events < r.of && r.filter != "" {
		s += " (filter " + r.filter + ")"
	}
	return s
}

func routes(swh *segmentv1alpha1.SegmentWebhook, events [][]byte) []route {
	type summary struct {
		Type  string `json:"type"`
		Event string `json:"event"`
	}
	parsed := make([]summary, len(events))
	for i, e := range events {
		_ = json.Unmarshal(e, &parsed[i])
	}
	out := make([]route, 0, len(swh.Spec.Targets))
	for _, t := range swh.Spec.Targets {
		r := route{target: t.Name, kind: targetKind(t), optional: t.Optional, of: len(events)}
		filter := controllers.ReceiverFilter(t.Filter)
		for _, e := range parsed {
			if filter.Matches(e.Type, e.Event) {
				r.events++
			}
		}
		if f := t.Filter; f != nil {
			var parts []string
			if len(f.EventTypes) > 0 {
				parts = append(parts, fmt.Sprintf("eventTypes=%v", f.EventTypes))
			}
			if len(f.TrackEvents) > 0 {
				parts = append(parts, fmt.Sprintf("trackEvents=%q", f.TrackEvents))
			}
			r.filter = strings.Join(parts, " ")
		}
		out = append(out, r)
	}
	return out
}

func targetKind(t segmentv1alpha1.Target) string {
	switch {
	case t.HTTP != nil:
		return "http " + t.HTTP.URL
	case t.Kafka != nil:
		return "kafka topic " + t.Kafka.Topic
	case t.NATS != nil:
		return "nats subject " + t.NATS.Subject
	}
	return "unknown kind"
}

func orDefault(v, def string) string {
	if v == "" || v == "0" {
		return def
	}
	return v
}

func abbreviate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}
