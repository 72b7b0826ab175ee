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
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// FieldOwner is the server-side apply field manager of every child.
const FieldOwner = "segment-webhook-operator"

// applyResult says what applying a child did.
type applyResult string

const (
	resultUnchanged applyResult = "Unchanged"
	resultCreated   applyResult = "Created"
	resultUpdated   applyResult = "Updated"
	resultDeleted   applyResult = "Deleted"
)

// applier writes children with server-side apply, but only when the live object does not already
// hold every field the operator sets. The API server adds defaults to what it stores, so the
// live object is a superset of the desired one when nothing has drifted; comparing "desired is
// contained in live" makes a no-op reconcile free of writes while any edit to an owned field,
// or a deleted child, is put back.
type applier struct {
	client client.Client
	owner  client.Object
}

// apply makes the live child match desired. live is an empty object of the same type, used to
// read the current state from the cache.
func (a *applier) apply(ctx context.Context, desired, live client.Object) (applyResult, error) {
	if err := controllerutil.SetControllerReference(a.owner, desired, a.client.Scheme()); err != nil {
		return "", err
	}
	want, err := toUnstructured(desired)
	if err != nil {
		return "", err
	}
	result := resultUpdated
	switch err := a.client.Get(ctx, client.ObjectKeyFromObject(desired), live); {
	case apierrors.IsNotFound(err):
		result = resultCreated
	case err != nil:
		return "", err
	default:
		have, err := runtime.DefaultUnstructuredConverter.ToUnstructured(live)
		if err != nil {
			return "", err
		}
		// Typed objects from the cache carry no apiVersion/kind; compare the rest.
		fields := maps.Clone(want.Object)
		delete(fields, "apiVersion")
		delete(fields, "kind")
		if contains(have, fields) {
			return resultUnchanged, nil
		}
	}
	if err := a.client.Apply(ctx, client.ApplyConfigurationFromUnstructured(want),
		client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return "", fmt.Errorf("applying %s %s: %w", want.GetKind(), want.GetName(), err)
	}
	return result, nil
}

// remove deletes the child named like obj if it exists and this SegmentWebhook controls it.
func (a *applier) remove(ctx context.Context, obj client.Object) (applyResult, error) {
	if err := a.client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return resultUnchanged, client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(obj, a.owner) {
		return resultUnchanged, nil
	}
	if err := a.client.Delete(ctx, obj, client.Preconditions{UID: ptr.To(obj.GetUID())}); err != nil {
		return "", client.IgnoreNotFound(err)
	}
	return resultDeleted, nil
}

// toUnstructured turns a typed object into an apply configuration, leaving out what is null or
// server-owned (creationTimestamp: null, status), so only fields the operator means are owned.
func toUnstructured(obj client.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	delete(m, "status")
	pruneNulls(m)
	return &unstructured.Unstructured{Object: m}, nil
}

func pruneNulls(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if e == nil {
				delete(v, k)
				continue
			}
			pruneNulls(e)
		}
	case []any:
		for _, e := range v {
			pruneNulls(e)
		}
	}
}

// contains reports whether live holds every field of want with the same value. Maps may hold
// more keys (server defaults); lists must have the same length, element by element.
func contains(live, want any) bool {
	switch w := want.(type) {
	case map[string]any:
		l, ok := live.(map[string]any)
		if !ok {
			return len(w) == 0 && live == nil
		}
		for k, wv := range w {
			if !contains(l[k], wv) {
				return false
			}
		}
		return true
	case []any:
		l, ok := live.([]any)
		if !ok || len(l) != len(w) {
			return false
		}
		for i := range w {
			if !contains(l[i], w[i]) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(live, want)
	}
}
