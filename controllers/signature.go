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
	"k8s.io/apimachinery/pkg/api/meta"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// firstElementOnlyMessage says what signature Any costs, and how to close it.
const firstElementOnlyMessage = "signature Any accepts an X-Signature over a batch's first element only: any one signed " +
	"request ever captured (a single event too) lets its holder inject any events after it, for as long as the secret " +
	"is valid; turn on \"Use X-Segment-Signature Header\" in the Actions Webhook destination, then set " +
	"authentication.signature: FullBody"

// reportSignatureCoverage sets SignatureCoverage in authentication mode HMAC, and removes it
// otherwise. It is informational: Ready does not depend on it, so kstatus, Flux and Argo CD read
// a receiver running signature Any as healthy, while kubectl describe shows the risk.
func reportSignatureCoverage(swh *segmentv1alpha1.SegmentWebhook) {
	auth := swh.Spec.Authentication
	switch {
	case auth.Mode != segmentv1alpha1.AuthenticationHMAC:
		meta.RemoveStatusCondition(&swh.Status.Conditions, segmentv1alpha1.ConditionSignatureCoverage)
	case auth.Signature == segmentv1alpha1.SignatureFullBody:
		setCondition(swh, segmentv1alpha1.ConditionSignatureCoverage, true, segmentv1alpha1.ReasonFullBody,
			"only signatures over the whole body are accepted")
	default:
		setCondition(swh, segmentv1alpha1.ConditionSignatureCoverage, false, segmentv1alpha1.ReasonFirstElementOnly,
			firstElementOnlyMessage)
	}
}
