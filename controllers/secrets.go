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
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// secretsResource are Secrets, watched by their metadata.
var secretsResource = corev1.SchemeGroupVersion.WithResource("secrets")

// checkSecrets returns a Stalled error naming the first referenced Secret or key that does not
// exist; the Secret watch brings the SegmentWebhook back when it appears. The operator needs no
// Secret values, receivers read them from mounted files: it checks only that every referenced key
// exists, so that a receiver is never started with a volume that cannot mount.
func (r *SegmentWebhookReconciler) checkSecrets(ctx context.Context, swh *segmentv1alpha1.SegmentWebhook) error {
	for _, ref := range swh.Spec.SecretKeyRefs() {
		keys, err := r.secretKeys(ctx, types.NamespacedName{Namespace: swh.Namespace, Name: ref.Name})
		if apierrors.IsNotFound(err) {
			return &notReadyError{reason: segmentv1alpha1.ReasonSecretNotFound, stalled: true,
				msg: fmt.Sprintf("Secret %q not found in namespace %q", ref.Name, swh.Namespace)}
		}
		if err != nil {
			return fmt.Errorf("reading Secret %q: %w", ref.Name, err)
		}
		if !slices.Contains(keys, ref.Key) {
			return &notReadyError{reason: segmentv1alpha1.ReasonSecretKeyNotFound, stalled: true,
				msg: fmt.Sprintf("Secret %q has no key %q", ref.Name, ref.Key)}
		}
	}
	return nil
}

// secretKeys returns the key names of a Secret, read from the API server once per version: a
// no-op resync reads no Secret. The watch behind r.secrets keeps nothing of the Secrets no
// SegmentWebhook references.
func (r *SegmentWebhookReconciler) secretKeys(ctx context.Context, name types.NamespacedName) ([]string, error) {
	if keys, ok := r.secrets.lookup(name); ok {
		return keys, nil
	}
	secret := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, name, secret); err != nil {
		if apierrors.IsNotFound(err) {
			r.secrets.forget(name)
		}
		return nil, err
	}
	keys := slices.Collect(maps.Keys(secret.Data))
	r.secrets.remember(name, secret.ResourceVersion, keys)
	return keys, nil
}
