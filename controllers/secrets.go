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
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// secretKeys tells which keys the referenced Secrets hold, reading each Secret from the API server
// once per resourceVersion.
//
// The operator needs no Secret values: receivers read them from mounted files. It only checks that
// every referenced key exists, so that a receiver is never started with a volume that cannot mount.
// The manager caches the metadata of Secrets (trimmed to name and resourceVersion, see
// CacheByObject), never their data; this map keeps the key names of the Secrets SegmentWebhooks
// reference, so its size follows the SegmentWebhooks and a no-op resync reads no Secret at all.
type secretKeys struct {
	cache  client.Reader // the manager's cache: Secret metadata
	reader client.Reader // the API server
	mu     sync.Mutex
	byName map[types.NamespacedName]secretVersion
}

type secretVersion struct {
	resourceVersion string
	keys            []string
}

func newSecretKeys(cache, reader client.Reader) *secretKeys {
	return &secretKeys{cache: cache, reader: reader, byName: map[types.NamespacedName]secretVersion{}}
}

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
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	// A Secret created just before its SegmentWebhook may not be in the cache yet: a miss is
	// confirmed on the API server below rather than reported as missing.
	if err := s.cache.Get(ctx, name, meta); client.IgnoreNotFound(err) != nil {
		return nil, err
	}
	s.mu.Lock()
	known, ok := s.byName[name]
	s.mu.Unlock()
	if ok && meta.ResourceVersion != "" && known.resourceVersion == meta.ResourceVersion {
		return known.keys, nil
	}
	secret := &corev1.Secret{}
	if err := s.reader.Get(ctx, name, secret); err != nil {
		if apierrors.IsNotFound(err) {
			s.forget(name)
		}
		return nil, err
	}
	keys := make([]string, 0, len(secret.Data))
	for k := range secret.Data {
		keys = append(keys, k)
	}
	s.mu.Lock()
	s.byName[name] = secretVersion{resourceVersion: secret.ResourceVersion, keys: keys}
	s.mu.Unlock()
	return keys, nil
}

func (s *secretKeys) forget(name types.NamespacedName) {
	s.mu.Lock()
	delete(s.byName, name)
	s.mu.Unlock()
}
