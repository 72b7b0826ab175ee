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
	"fmt"
	"path"
	"strings"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// Policy is what the platform team lets SegmentWebhooks ask for. Whoever may edit a
// SegmentWebhook otherwise chooses the image its receiver pods run (with the namespace's Secrets
// mounted) and where they are scheduled; the zero Policy allows all of it, as before.
type Policy struct {
	// AllowedReceiverImages, when set, lists what spec.image may be: a prefix (such as
	// "registry.example.com/segment/receiver:"), or a glob when it holds *, ? or [ (path.Match:
	// * does not cross a /). The operator's own --receiver-image is always allowed.
	AllowedReceiverImages []string
	// DenySchedulingOverrides refuses spec.pod nodeSelector, tolerations, affinity and
	// priorityClassName.
	DenySchedulingOverrides bool
}

// check returns a stalled error when swh asks for what the policy does not allow: only a change
// of the spec (or of the operator's flags) can fix it, and until then nothing is applied, so a
// running receiver keeps its last spec.
func (p Policy) check(swh *segmentv1alpha1.SegmentWebhook) error {
	if image := swh.Spec.Image; image != "" && len(p.AllowedReceiverImages) > 0 && !p.imageAllowed(image) {
		return &notReadyError{reason: segmentv1alpha1.ReasonImageNotAllowed, stalled: true,
			msg: fmt.Sprintf("spec.image %q is not allowed by the operator's --allowed-receiver-images (%s); remove spec.image to run the operator's receiver image",
				image, strings.Join(p.AllowedReceiverImages, ", "))}
	}
	if p.DenySchedulingOverrides {
		pod := swh.Spec.Pod
		var set []string
		if len(pod.NodeSelector) > 0 {
			set = append(set, "nodeSelector")
		}
		if len(pod.Tolerations) > 0 {
			set = append(set, "tolerations")
		}
		if pod.Affinity != nil {
			set = append(set, "affinity")
		}
		if pod.PriorityClassName != "" {
			set = append(set, "priorityClassName")
		}
		if len(set) > 0 {
			return &notReadyError{reason: segmentv1alpha1.ReasonSchedulingNotAllowed, stalled: true,
				msg: fmt.Sprintf("spec.pod %s: the operator runs with --allow-scheduling-overrides=false; remove them", strings.Join(set, ", "))}
		}
	}
	return nil
}

func (p Policy) imageAllowed(image string) bool {
	for _, allowed := range p.AllowedReceiverImages {
		if strings.ContainsAny(allowed, "*?[") {
			if ok, err := path.Match(allowed, image); err == nil && ok {
				return true
			}
		} else if strings.HasPrefix(image, allowed) {
			return true
		}
	}
	return false
}
