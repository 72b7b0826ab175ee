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
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	segmentv1alpha1 "github.com/segment-webhook-operator/segment-webhook-operator/api/v1alpha1"
)

// references follows the user objects of one kind that SegmentWebhooks reference (their Secrets,
// the ConfigMaps of their tracking plans) with a metadata watch, and remembers what the operator
// derived from each (a Secret's key names, a compiled plan) for as long as the object keeps its
// resourceVersion. So a reconcile reads such an object from the API server only after it changed,
// and a change wakes the SegmentWebhooks that reference it.
//
// It keeps nothing of the objects no SegmentWebhook references (what it kept for one whose
// references went away it drops at the next resync of the watch): its memory follows the
// SegmentWebhooks, not the cluster, where an informer would hold every Secret of every namespace.
// The watch is a client-go Reflector feeding this store instead of an informer's.
type references[T any] struct {
	resource schema.GroupVersionResource
	// referrers finds the SegmentWebhooks referencing an object, by a field index of the cache.
	referrers func(ctx context.Context, key types.NamespacedName) ([]reconcile.Request, error)

	// ctx and queue are set by start, before any watch runs.
	ctx   context.Context
	queue workqueue.TypedRateLimitingInterface[reconcile.Request]

	mu     sync.Mutex
	byName map[types.NamespacedName]*reference[T]
}

type reference[T any] struct {
	// latest is the resourceVersion the watch (or a read before it) saw last; "" once the watch
	// saw the object deleted, so that no read begun before the deletion counts as current.
	latest  string
	derived string // the resourceVersion value was derived from; "" for none yet
	value   T
}

// referencesResync is how often a watch drops what it kept for objects no longer referenced.
const referencesResync = 10 * time.Minute

func newReferences[T any](resource schema.GroupVersionResource,
	referrers func(context.Context, types.NamespacedName) ([]reconcile.Request, error)) *references[T] {
	return &references[T]{resource: resource, referrers: referrers, byName: map[types.NamespacedName]*reference[T]{}}
}

// lookup returns what was derived from the object's current version, if anything was.
func (r *references[T]) lookup(key types.NamespacedName) (T, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ref, ok := r.byName[key]; ok && ref.derived != "" && ref.derived == ref.latest {
		return ref.value, true
	}
	var zero T
	return zero, false
}

// remember keeps what was derived from the object at resourceVersion, read from the API server.
// A version (or deletion) the watch reported since stays the latest: the value then counts as
// stale, and the next reconcile reads the object again.
func (r *references[T]) remember(key types.NamespacedName, resourceVersion string, value T) {
	r.update(key, resourceVersion, func(T, bool) T { return value })
}

// update is remember for a value that reconciles running in parallel derive in parts: derive gets
// what is kept already, and whether it was derived from the same version, under the lock.
func (r *references[T]) update(key types.NamespacedName, resourceVersion string, derive func(kept T, sameVersion bool) T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ref, ok := r.byName[key]
	if !ok {
		ref = &reference[T]{latest: resourceVersion}
		r.byName[key] = ref
	}
	ref.value = derive(ref.value, ref.derived == resourceVersion)
	ref.derived = resourceVersion
}

// forget drops an object the API server no longer has.
func (r *references[T]) forget(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.byName, key)
}

// source starts one watch per namespace (nil: one for the cluster) when the controller starts.
// Listing and watching need the same RBAC as an informer: list and watch on the resource.
func (r *references[T]) source(metadataClient metadata.Interface, namespaces []string) source.Source {
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	return source.Func(func(ctx context.Context, queue workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		r.start(ctx, queue)
		for _, ns := range namespaces {
			objects := metadataClient.Resource(r.resource).Namespace(ns)
			lw := &cache.ListWatch{
				ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
					return objects.List(ctx, opts)
				},
				WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
					return objects.Watch(ctx, opts)
				},
			}
			reflector := cache.NewReflectorWithOptions(lw, &metav1.PartialObjectMetadata{}, r.store(ns),
				cache.ReflectorOptions{Name: fmt.Sprintf("referenced %s in %q", r.resource.Resource, ns), ResyncPeriod: referencesResync})
			go reflector.RunWithContext(ctx)
		}
		return nil
	})
}

func (r *references[T]) start(ctx context.Context, queue workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	r.ctx, r.queue = ctx, queue
}

// store is the Reflector's store (cache.ReflectorStore) for the watch of one namespace.
func (r *references[T]) store(namespace string) cache.ReflectorStore {
	return &namespaceStore[T]{references: r, namespace: namespace}
}

type namespaceStore[T any] struct {
	*references[T]
	namespace string // metav1.NamespaceAll for the cluster
}

// Add records the version of a referenced object and wakes its referrers when it changed.
func (s *namespaceStore[T]) Add(obj any) error {
	s.observe(obj, false)
	return nil
}

// Update is Add.
func (s *namespaceStore[T]) Update(obj any) error {
	s.observe(obj, false)
	return nil
}

// Delete forgets the object and wakes its referrers.
func (s *namespaceStore[T]) Delete(obj any) error {
	s.observe(obj, true)
	return nil
}

// Replace takes the full list the watch of the namespace (re)starts from: a kept object of the
// namespace missing from it was deleted while nothing watched.
func (s *namespaceStore[T]) Replace(list []any, _ string) error {
	listed := make(map[types.NamespacedName]bool, len(list))
	for _, obj := range list {
		if o, ok := obj.(client.Object); ok {
			listed[client.ObjectKeyFromObject(o)] = true
			s.observe(o, false)
		}
	}
	s.mu.Lock()
	var gone []types.NamespacedName
	for key := range s.byName {
		if !listed[key] && (s.namespace == metav1.NamespaceAll || key.Namespace == s.namespace) {
			gone = append(gone, key)
		}
	}
	s.mu.Unlock()
	for _, key := range gone {
		s.observe(&metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}, true)
	}
	return nil
}

// Resync drops what is kept for the objects of the namespace that nothing references any more.
func (s *namespaceStore[T]) Resync() error {
	s.mu.Lock()
	keys := make([]types.NamespacedName, 0, len(s.byName))
	for key := range s.byName {
		if s.namespace == metav1.NamespaceAll || key.Namespace == s.namespace {
			keys = append(keys, key)
		}
	}
	s.mu.Unlock()
	for _, key := range keys {
		if reqs, err := s.referrers(s.ctx, key); err == nil && len(reqs) == 0 {
			s.mu.Lock()
			delete(s.byName, key)
			s.mu.Unlock()
		}
	}
	return nil
}

// observe records the version the watch saw of an object (none: deleted) and wakes the
// SegmentWebhooks referencing it when that is news. The version is recorded before the referrers
// are looked up, so a reconcile that starts referencing the object in between either reads the
// new version or is found and woken. An object nothing references is not kept.
func (r *references[T]) observe(obj any, deleted bool) {
	o, ok := obj.(client.Object)
	if !ok {
		return
	}
	key := client.ObjectKeyFromObject(o)
	version := o.GetResourceVersion()
	if deleted {
		version = ""
	}
	r.mu.Lock()
	ref, known := r.byName[key]
	if known {
		if ref.latest == version {
			r.mu.Unlock()
			return // the version a reconcile already read, or a relist of it
		}
		ref.latest = version
	}
	r.mu.Unlock()

	reqs, err := r.referrers(r.ctx, key)
	if err != nil {
		// Keep the news: the next reconcile of a referrer reads the object again.
		logf.FromContext(r.ctx).Error(err, "finding the SegmentWebhooks that reference an object; they see its change at their next resync",
			"resource", r.resource.Resource, "object", key)
	}
	if !known && (len(reqs) > 0 || err != nil) {
		r.mu.Lock()
		if ref, ok := r.byName[key]; ok { // a reconcile read it meanwhile
			ref.latest = version
		} else {
			r.byName[key] = &reference[T]{latest: version}
		}
		r.mu.Unlock()
	}
	for _, req := range reqs {
		r.queue.Add(req)
	}
}

// referrersByIndex finds the SegmentWebhooks whose field index holds an object's name.
func (r *SegmentWebhookReconciler) referrersByIndex(index string) func(context.Context, types.NamespacedName) ([]reconcile.Request, error) {
	return func(ctx context.Context, key types.NamespacedName) ([]reconcile.Request, error) {
		var list segmentv1alpha1.SegmentWebhookList
		if err := r.List(ctx, &list, client.InNamespace(key.Namespace), client.MatchingFields{index: key.Name},
			client.UnsafeDisableDeepCopy); err != nil {
			return nil, fmt.Errorf("listing SegmentWebhooks by %s: %w", index, err)
		}
		reqs := make([]reconcile.Request, 0, len(list.Items))
		for _, swh := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&swh)})
		}
		return reqs, nil
	}
}
