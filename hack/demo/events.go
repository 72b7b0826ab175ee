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
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
	"github.com/segment-webhook-operator/segment-webhook-operator/controllers"
	"github.com/segment-webhook-operator/segment-webhook-operator/internal/segmentsend"
)

func listenLocal() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

var messageSeq int

// event builds one Segment Spec event with a fresh messageId.
func event(typ string, fields map[string]any) []byte {
	messageSeq++
	e := map[string]any{
		"type":      typ,
		"messageId": fmt.Sprintf("demo-%d-%d", time.Now().UnixNano(), messageSeq),
		"userId":    "user-42",
		"timestamp": time.Now().UTC().Format(time.RFC3339),
		"context":   map[string]any{"ip": "203.0.113.7", "library": map[string]any{"name": "analytics.js"}},
		"sentAt":    time.Now().UTC().Format(time.RFC3339),
	}
	for k, v := range fields {
		if v == nil {
			delete(e, k)
		} else {
			e[k] = v
		}
	}
	b, _ := segmentsend.Marshal(e)
	return b
}

// exchange sends one request as Segment would (one event per request), signed with secret, prints
// the answer and what the sink got, and checks the code.
func (d *demo) exchange(ctx context.Context, title string, events [][]byte, secret string, wantCode int) (*segmentsend.Response, []received, error) {
	before := d.sink.count()
	resp, err := d.send(ctx, events, false, secret)
	if err != nil {
		return nil, nil, err
	}
	got := d.sinkAfter(before)
	d.linef("%s", title)
	d.expect(resp.Code == wantCode, "answered %d %s (want %d)", resp.Code, resp.Body, wantCode)
	d.printReceived(got)
	return resp, got, nil
}

// sinkAfter returns what the sink received after index before. Optional targets are delivered
// in the background: give them a moment.
func (d *demo) sinkAfter(before int) []received {
	time.Sleep(300 * time.Millisecond)
	got, _ := d.sink.since(before)
	return got
}

func (d *demo) printReceived(got []received) {
	if len(got) == 0 {
		d.linef("  sink received nothing")
	}
	for _, r := range got {
		d.linef("  sink %-9s <- %s", r.target, describe(r))
	}
}

// kubectlSWHSend runs 'kubectl swh send events' (bin/kubectl-swh, the plugin users install) against
// the local receiver, prints what it prints, and checks that it reports the answer wanted.
func (d *demo) kubectlSWHSend(ctx context.Context, title string, args ...string) ([]received, error) {
	before := d.sink.count()
	args = append([]string{"--kubeconfig", d.kubeconfig, "send", "events", "-n", demoNamespace, "--url", d.webhookURL}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(d.opts.BinDir, "kubectl-swh"), args...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	d.linef("%s", title)
	d.linef("  $ kubectl swh %s", strings.Join(args[2:], " "))
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		d.linef("  │ %s", line)
	}
	d.expect(err == nil && strings.Contains(string(out), "Answer: 200 OK"), "kubectl swh send: answered 200 (exit status: %v)", err)
	got := d.sinkAfter(before)
	d.printReceived(got)
	return got, nil
}

// bodyFor returns the body a target received.
func bodyFor(got []received, target string) []byte {
	for _, r := range got {
		if r.target == target {
			return r.body
		}
	}
	return nil
}

// describe summarises what a target received.
func describe(r received) string {
	var parts []string
	if ce := r.header.Get("Ce-Type"); ce != "" {
		parts = append(parts, "CloudEvent type="+ce)
	}
	var e map[string]any
	if json.Unmarshal(r.body, &e) == nil {
		if reason, ok := e["reason"]; ok {
			parts = append(parts, fmt.Sprintf("dead letter, reason %v", reason))
		} else {
			s := fmt.Sprint(e["type"])
			if name, ok := e["event"]; ok {
				s += fmt.Sprintf(" %q", name)
			}
			parts = append(parts, s)
		}
		if ctx, ok := e["context"].(map[string]any); ok {
			if _, hasIP := ctx["ip"]; !hasIP {
				parts = append(parts, "context.ip dropped")
			}
		}
	}
	if v := r.header.Get("X-Segment-Tracking-Plan-Violation"); v != "" {
		parts = append(parts, "X-Segment-Tracking-Plan-Violation="+v)
	}
	if k := r.header.Get("Idempotency-Key"); k != "" {
		parts = append(parts, "Idempotency-Key="+k)
	}
	if a := r.header.Get("Authorization"); a != "" {
		parts = append(parts, "Authorization="+a)
	}
	if x := r.header.Get("X-Team"); x != "" {
		parts = append(parts, "X-Team="+x)
	}
	return strings.Join(parts, ", ")
}

func targets(got []received) []string {
	out := make([]string, 0, len(got))
	for _, r := range got {
		out = append(out, r.target)
	}
	slices.Sort(out)
	return out
}

// 7. Segment's traffic, good and bad.
func (d *demo) sendEvents(ctx context.Context) error {
	d.stepf("Sending Segment events to the receiver")
	secret := d.secretValue(ctx, "shared-secret")
	d.oldSecret = secret
	d.linef("shared secret from Secret segment/shared-secret; X-Signature = hex(HMAC-SHA1(secret, body))")
	d.linef("kubectl swh send reads the SegmentWebhook and the Secret itself (kubeconfig %s)", d.kubeconfig)

	// a. One event, as Classic and unbatched Actions destinations send it.
	got, err := d.kubectlSWHSend(ctx, "a) one signed track \"Order Completed\" event, sent with kubectl swh:", "--type", "track")
	if err != nil {
		return err
	}
	d.expect(slices.Equal(targets(got), []string{"analytics", "warehouse"}),
		"warehouse (all events) and analytics (only Order Completed, as a CloudEvent) received it")
	for _, r := range got {
		if r.target == "warehouse" {
			d.expect(r.header.Get("Authorization") == "Bearer collector-token", "warehouse got its Authorization header from Secret collector")
		}
		if r.target == "analytics" {
			d.expect(!strings.Contains(string(r.body), "203.0.113.7"), "analytics did not get context.ip (dropFields)")
		}
	}

	order := bodyFor(got, "warehouse")

	// b. An Actions batch: a bare array; Segment signs only the bytes of element 0.
	got, err = d.kubectlSWHSend(ctx, "b) an Actions batch of 3 events, X-Signature over element 0's bytes only:", "--type", "batch")
	if err != nil {
		return err
	}
	d.expect(slices.Equal(targets(got), []string{"warehouse", "warehouse", "warehouse"}),
		"warehouse received all 3; analytics none (its filter wants track \"Order Completed\")")

	// c. Segment retries after a timeout: the same bytes again.
	if order == nil {
		return errors.New("warehouse did not receive the event of a)")
	}
	_, got, err = d.exchange(ctx, "c) the event of a) again, byte for byte, as a Segment retry would send it:", [][]byte{order}, secret, http.StatusOK)
	if err != nil {
		return err
	}
	d.expect(len(got) == 0, "no target got it twice (messageId dedupe)")

	// d. A wrong secret.
	stray := event("track", map[string]any{"event": "Order Completed"})
	_, got, err = d.exchange(ctx, "d) an event signed with the wrong secret:", [][]byte{stray}, "not-the-secret", http.StatusUnauthorized)
	if err != nil {
		return err
	}
	d.expect(len(got) == 0, "nothing was forwarded")

	// e. A track event without its event name: a permanent error, Segment does not retry 400.
	invalid := event("track", map[string]any{"properties": map[string]any{"revenue": 1}})
	_, got, err = d.exchange(ctx, "e) a signed but invalid event (track without \"event\"):", [][]byte{invalid}, secret, http.StatusBadRequest)
	if err != nil {
		return err
	}
	d.expect(len(got) == 0, "nothing was forwarded")
	return nil
}

func (d *demo) secretValue(ctx context.Context, key string) string {
	s := &corev1.Secret{}
	if err := d.client.Get(ctx, types.NamespacedName{Namespace: demoNamespace, Name: "segment"}, s); err != nil {
		return ""
	}
	return strings.TrimRight(string(s.Data[key]), "\r\n")
}

// 8. Rotation as README describes it: add the new key, switch Segment, remove the old key.
func (d *demo) rotateSecret(ctx context.Context) error {
	d.stepf("Rotating the shared secret without dropping a request")
	hashBefore := d.configHash(ctx)

	secret := &corev1.Secret{}
	if err := d.client.Get(ctx, types.NamespacedName{Namespace: demoNamespace, Name: "segment"}, secret); err != nil {
		return err
	}
	secret.Data[rotatedKey] = []byte(rotatedSecret)
	if err := d.client.Update(ctx, secret); err != nil {
		return err
	}
	d.linef("Secret segment: added key %s", rotatedKey)
	if err := d.setSecretRefs(ctx, []segmentv1alpha1.SecretKeyRef{
		{Name: "segment", Key: "shared-secret"}, {Name: "segment", Key: rotatedKey},
	}); err != nil {
		return err
	}
	d.linef("SegmentWebhook events: secretRefs = [segment/shared-secret, segment/%s]", rotatedKey)
	if err := d.waitForSecretFiles(ctx, 2); err != nil {
		return err
	}
	// The operator applies the children concurrently: the Deployment may follow the ConfigMap.
	hashErr := d.waitFor(ctx, "the Deployment's new config-hash", func() error {
		if d.configHash(ctx) == hashBefore {
			return errors.New("unchanged")
		}
		return nil
	})
	d.expect(hashErr == nil, "the operator re-rendered the ConfigMap (2 secret files) and the Deployment's config-hash changed")
	if _, err := d.materialise(ctx, false); err != nil {
		return err
	}
	d.linef("re-materialised the ConfigMap and the new Secret key; the receiver hot-reloads them")
	if err := d.waitForCode(ctx, rotatedSecret, http.StatusOK); err != nil {
		return err
	}
	for _, s := range []struct{ name, secret string }{{"old", d.oldSecret}, {"new", rotatedSecret}} {
		e := event("track", map[string]any{"event": "Order Completed"})
		if _, _, err := d.exchange(ctx, fmt.Sprintf("an event signed with the %s secret, during rotation:", s.name), [][]byte{e}, s.secret, http.StatusOK); err != nil {
			return err
		}
	}

	d.linef("Segment now uses the new secret: removing the old key from secretRefs")
	if err := d.setSecretRefs(ctx, []segmentv1alpha1.SecretKeyRef{{Name: "segment", Key: rotatedKey}}); err != nil {
		return err
	}
	if err := d.waitForSecretFiles(ctx, 1); err != nil {
		return err
	}
	if _, err := d.materialise(ctx, false); err != nil {
		return err
	}
	if err := d.waitForCode(ctx, d.oldSecret, http.StatusUnauthorized); err != nil {
		return err
	}
	for _, s := range []struct {
		name, secret string
		code         int
	}{{"old", d.oldSecret, http.StatusUnauthorized}, {"new", rotatedSecret, http.StatusOK}} {
		e := event("track", map[string]any{"event": "Order Completed"})
		if _, _, err := d.exchange(ctx, fmt.Sprintf("an event signed with the %s secret, after rotation:", s.name), [][]byte{e}, s.secret, s.code); err != nil {
			return err
		}
	}
	return nil
}

func (d *demo) setSecretRefs(ctx context.Context, refs []segmentv1alpha1.SecretKeyRef) error {
	swh := &segmentv1alpha1.SegmentWebhook{}
	if err := d.client.Get(ctx, client.ObjectKeyFromObject(d.swh), swh); err != nil {
		return err
	}
	patch := client.MergeFrom(swh.DeepCopy())
	swh.Spec.SecretRefs = refs
	return d.client.Patch(ctx, swh, patch)
}

// waitForSecretFiles waits for the operator to render a config naming n secret files.
func (d *demo) waitForSecretFiles(ctx context.Context, n int) error {
	return d.waitFor(ctx, fmt.Sprintf("a receiver config with %d secret files", n), func() error {
		cm := &corev1.ConfigMap{}
		if err := d.client.Get(ctx, types.NamespacedName{Namespace: demoNamespace, Name: "events-receiver"}, cm); err != nil {
			return err
		}
		var cfg struct {
			Authentication struct {
				SecretFiles []string `json:"secretFiles"`
			} `json:"authentication"`
		}
		if err := json.Unmarshal([]byte(cm.Data["config.json"]), &cfg); err != nil {
			return err
		}
		if len(cfg.Authentication.SecretFiles) != n {
			return fmt.Errorf("%d secret files", len(cfg.Authentication.SecretFiles))
		}
		return nil
	})
}

// waitForCode waits until an event signed with secret gets code: the receiver has reloaded.
func (d *demo) waitForCode(ctx context.Context, secret string, code int) error {
	start := time.Now()
	err := d.waitFor(ctx, fmt.Sprintf("the receiver to reload (a %d)", code), func() error {
		e := event("identify", nil)
		resp, err := d.send(ctx, [][]byte{e}, false, secret)
		if err != nil {
			return err
		}
		if resp.Code != code {
			return fmt.Errorf("answered %d", resp.Code)
		}
		return nil
	})
	if err == nil {
		d.linef("the receiver reloaded within %s", time.Since(start).Round(10*time.Millisecond))
	}
	return err
}

func (d *demo) configHash(ctx context.Context) string {
	dep := &appsv1.Deployment{}
	if err := d.client.Get(ctx, types.NamespacedName{Namespace: demoNamespace, Name: "events-receiver"}, dep); err != nil {
		return ""
	}
	return dep.Spec.Template.Annotations[controllers.ConfigHashAnnotation]
}

// 10. The metrics an operator of this service watches.
func (d *demo) showMetrics(ctx context.Context) error {
	d.stepf("Metrics")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.metricsURL, nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	d.linef("receiver (%s):", d.metricsURL)
	values := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "segment_receiver_") || strings.Contains(line, "_bucket") ||
			strings.Contains(line, "attempt_duration") {
			continue
		}
		d.linef("  %s", line)
		if name, value, ok := strings.Cut(line, " "); ok {
			values[name] = value
		}
	}
	d.expect(values[`segment_receiver_requests_total{code="401"}`] != "", "401s are counted in segment_receiver_requests_total")
	d.expect(values[`segment_receiver_signature_failures_total`] != "" && values[`segment_receiver_signature_failures_total`] != "0",
		"bad signatures are counted in segment_receiver_signature_failures_total")

	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		return err
	}
	d.linef("operator (controller-runtime, on the manager's --metrics-bind-address):")
	for _, f := range families {
		name := f.GetName()
		if name != "controller_runtime_reconcile_total" && name != "controller_runtime_reconcile_errors_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			if v := m.GetCounter().GetValue(); v > 0 || name == "controller_runtime_reconcile_errors_total" {
				d.linef("  %s{%s} %g", name, strings.Join(labels, ","), v)
			}
		}
	}
	if len(families) == 0 {
		return errors.New("no controller-runtime metrics")
	}
	return nil
}
