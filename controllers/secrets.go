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
	"sigs.k8s.io/controller-runtime/pkg/client"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// secretKeys tells which keys the referenced Secrets hold, reading each Secret from the API server
// once per resourceVersion.
//
// The operator needs no Secret values: receivers read them from mounted files. It only checks that
// every referenced key exists, so that a receiver is never started with a volume that cannot mount.
// The key names of the referenced Secrets are remembered per version by references, whose watch
// keeps nothing of the Secrets no SegmentWebhook references, so a no-op resync reads no Secret.
type secretKeys struct {
	reader client.Reader         // the API server
	known  *references[[]string] // key names by Secret version
}

// secretsResource are Secrets, watched by their metadata.
var secretsResource = corev1.SchemeGroupVersion.WithResource("secrets")

// check returns a Stalled error naming the first referenced Secret or key that does not exist.
// The Secret watch brings the SegmentWebhook back when it appears.
func (s *secretKeys) check(ctx context.Context, swh *segmentv1alpha1.SegmentWebhook) error {
	for _, ref := range swh.Spec.SecretKeyRefs() {
		keys, err := s.keysOf(ctx, types.NamespacedName{Namespace: swh.Namespace, Name: ref.Name})
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

func (s *secretKeys) keysOf(ctx context.Context, name types.NamespacedName) ([]string, error) {
	if keys, ok := s.known.lookup(name); ok {
		return keys, nil
	}
	secret := &corev1.Secret{}
	if err := s.reader.Get(ctx, name, secret); err != nil {
		if apierrors.IsNotFound(err) {
			s.known.forget(name)
		}
		return nil, err
	}
	keys := slices.Collect(maps.Keys(secret.Data))
	s.known.remember(name, secret.ResourceVersion, keys)
	return keys, nil
}
