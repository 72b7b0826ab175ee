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
	"net/http"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver"
)

// demoPlan is a small e-commerce tracking plan (the README has a fuller one).
const demoPlan = `{
  "track": {
    "Order Completed": {
      "type": "object",
      "properties": {"order_id": {"type": "string"}, "total": {"type": "number", "minimum": 0}},
      "required": ["order_id"],
      "additionalProperties": false
    }
  }
}`

// 9. A tracking plan, and one violation under each onViolation action.
func (d *demo) enforceTrackingPlan(ctx context.Context) error {
	d.stepf("Enforcing a tracking plan: one violation under each onViolation action")
	plan := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: demoNamespace, Name: "tracking-plan"},
		Data:       map[string]string{"plan.json": demoPlan},
	}
	if err := d.client.Create(ctx, plan); err != nil {
		return err
	}
	d.linef("ConfigMap tracking-plan: Order Completed needs order_id (string), allows total (number), nothing else")
	secret := d.secretValue(ctx, rotatedKey)
	violating := func() []byte {
		return event("track", map[string]any{"event": "Order Completed",
			"properties": map[string]any{"order_id": "o-1001", "total": "42.50", "coupon": "SPRING"}})
	}

	for i, action := range []string{"Forward", "OmitProperties", "DeadLetter", "Block"} {
		if err := d.setTrackingPlan(ctx, action, i == 0); err != nil {
			return err
		}
		if i == 0 {
			if err := d.waitFor(ctx, "TrackingPlanCompiled=True", func() error {
				if err := d.client.Get(ctx, client.ObjectKeyFromObject(d.swh), d.swh); err != nil {
					return err
				}
				if !meta.IsStatusConditionTrue(d.swh.Status.Conditions, segmentv1alpha1.ConditionTrackingPlanCompiled) {
					return errors.New("not compiled yet")
				}
				return nil
			}); err != nil {
				return err
			}
			d.expect(d.swh.Status.TrackingPlan != nil && d.swh.Status.TrackingPlan.Events == 1,
				"the operator compiled the plan: status.trackingPlan %+v", d.swh.Status.TrackingPlan)
		}
		if err := d.reloadWith(ctx, fmt.Sprintf(`"onViolation": %q`, action)); err != nil {
			return err
		}
		d.linef("spec.trackingPlan.onViolation = %s; the receiver reloaded", action)
		resp, got, err := d.exchange(ctx, fmt.Sprintf("%s: Order Completed with total as a string and an unplanned coupon:", action),
			[][]byte{violating()}, secret, http.StatusOK)
		if err != nil {
			return err
		}
		var warehouse *received
		var deadLetters []received
		for i, r := range got {
			switch r.target {
			case "warehouse":
				warehouse = &got[i]
			case "dead-letter":
				deadLetters = append(deadLetters, r)
			}
		}
		switch action {
		case "Forward":
			v := ""
			if warehouse != nil {
				v = warehouse.header.Get(receiver.HTTPHeaderPlanViolation)
			}
			d.expect(strings.Contains(v, "/properties/total type") && strings.Contains(v, "/properties/coupon additionalProperties"),
				"forwarded, marked %s: %s", receiver.HTTPHeaderPlanViolation, v)
		case "OmitProperties":
			d.expect(warehouse != nil && !strings.Contains(string(warehouse.body), `"total"`) && !strings.Contains(string(warehouse.body), `"coupon"`) &&
				strings.Contains(string(warehouse.body), `"order_id":"o-1001"`),
				"forwarded with total and coupon omitted, order_id kept")
		case "DeadLetter":
			var envelope struct {
				Reason     string
				Violations []struct{ Pointer, Keyword string }
			}
			if len(deadLetters) == 1 {
				_ = json.Unmarshal(deadLetters[0].body, &envelope)
			}
			d.expect(warehouse == nil && envelope.Reason == "tracking-plan" && len(envelope.Violations) == 2 && strings.Contains(resp.Body, `"deadLettered":1`),
				"dead-lettered with reason %q and violations %+v; the warehouse got nothing", envelope.Reason, envelope.Violations)
		case "Block":
			d.expect(len(got) == 0 && strings.Contains(resp.Body, `"blocked":1`), "blocked: no target got it")
		}
	}

	for _, action := range []string{"Forward", "OmitProperties", "DeadLetter", "Block"} {
		v, err := d.metricValue(ctx, fmt.Sprintf(`segment_receiver_tracking_plan_violations_total{action=%q,event="Order Completed"}`, action))
		if err != nil {
			return err
		}
		d.expect(v == 1, "segment_receiver_tracking_plan_violations_total{action=%q,event=\"Order Completed\"} = %g", action, v)
	}

	// A plan that does not compile: Ready=False, and the receivers keep the last good plan.
	if err := d.client.Get(ctx, client.ObjectKeyFromObject(plan), plan); err != nil {
		return err
	}
	plan.Data["plan.json"] = `{"track": {"Order Completed": {"type": "objekt"}}}`
	if err := d.client.Update(ctx, plan); err != nil {
		return err
	}
	d.linef("ConfigMap tracking-plan: Order Completed now has \"type\": \"objekt\"")
	var ready *metav1.Condition
	if err := d.waitFor(ctx, "Ready=False TrackingPlanInvalid", func() error {
		if err := d.client.Get(ctx, client.ObjectKeyFromObject(d.swh), d.swh); err != nil {
			return err
		}
		ready = meta.FindStatusCondition(d.swh.Status.Conditions, segmentv1alpha1.ConditionReady)
		if ready == nil || ready.Reason != segmentv1alpha1.ReasonTrackingPlanInvalid {
			return errors.New("not refused yet")
		}
		return nil
	}); err != nil {
		return err
	}
	d.expect(strings.Contains(ready.Message, `event "track/Order Completed"`),
		"Ready=False, reason %s: %s", ready.Reason, strings.SplitN(ready.Message, "\n", 2)[0])
	rendered := &corev1.ConfigMap{}
	if err := d.client.Get(ctx, types.NamespacedName{Namespace: demoNamespace, Name: "events-receiver"}, rendered); err != nil {
		return err
	}
	d.expect(rendered.Data["trackingplan.plan.json"] == demoPlan, "the receivers keep the last good plan (ConfigMap events-receiver unchanged)")
	return nil
}

// setTrackingPlan sets spec.trackingPlan with the action, and a dead-letter target for DeadLetter.
func (d *demo) setTrackingPlan(ctx context.Context, action string, show bool) error {
	swh := &segmentv1alpha1.SegmentWebhook{}
	if err := d.client.Get(ctx, client.ObjectKeyFromObject(d.swh), swh); err != nil {
		return err
	}
	patch := client.MergeFrom(swh.DeepCopy())
	swh.Spec.TrackingPlan = &segmentv1alpha1.TrackingPlan{
		ConfigMapRef: segmentv1alpha1.ConfigMapReference{Name: "tracking-plan"},
		OnViolation:  action,
	}
	swh.Spec.DeadLetter = &segmentv1alpha1.DeadLetterTarget{HTTP: &segmentv1alpha1.HTTPTarget{URL: "https://dlq.example.com/segment"}}
	if show {
		d.linef("SegmentWebhook events: trackingPlan {configMapRef: tracking-plan}, deadLetter {http: https://dlq.example.com/segment}")
	}
	return d.client.Patch(ctx, swh, patch)
}

// reloadWith waits for the operator to render a config containing want, writes the pod's files
// like the kubelet, and waits for the receiver to load them.
func (d *demo) reloadWith(ctx context.Context, want string) error {
	if err := d.waitFor(ctx, "the operator to render "+want, func() error {
		cm := &corev1.ConfigMap{}
		if err := d.client.Get(ctx, types.NamespacedName{Namespace: demoNamespace, Name: "events-receiver"}, cm); err != nil {
			return err
		}
		if !strings.Contains(cm.Data["config.json"], want) {
			return errors.New("not rendered yet")
		}
		return nil
	}); err != nil {
		return err
	}
	const reloads = `segment_receiver_config_reloads_total{result="success"}`
	before, err := d.metricValue(ctx, reloads)
	if err != nil {
		return err
	}
	if _, err := d.materialise(ctx, false); err != nil {
		return err
	}
	return d.waitFor(ctx, "the receiver to reload", func() error {
		after, err := d.metricValue(ctx, reloads)
		if err != nil {
			return err
		}
		if after <= before {
			return errors.New("not reloaded yet")
		}
		return nil
	})
}

// metricValue reads one series from the receiver's /metrics (0 when absent).
func (d *demo) metricValue(ctx context.Context, series string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.metricsURL, nil)
	if err != nil {
		return 0, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if value, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return strconv.ParseFloat(value, 64)
		}
	}
	return 0, sc.Err()
}
