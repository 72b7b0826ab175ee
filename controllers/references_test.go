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
	"errors"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// referencesFixture: Secret "segment" in namespace "team" is referenced by SegmentWebhook "events"
// while *referenced is true; nothing references any other object.
func referencesFixture(t *testing.T) (*references[[]string], workqueue.TypedRateLimitingInterface[reconcile.Request], *bool) {
	t.Helper()
	referenced := true
	refs, queue := startedReferences(t, func(_ context.Context, key types.NamespacedName) ([]reconcile.Request, error) {
		if referenced && key == (types.NamespacedName{Namespace: "team", Name: "segment"}) {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: "team", Name: "events"}}}, nil
		}
		return nil, nil
	})
	return refs, queue, &referenced
}

// startedReferences are Secret references started on a real workqueue.
func startedReferences(t *testing.T, referrers func(context.Context, types.NamespacedName) ([]reconcile.Request, error)) (
	*references[[]string], workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	t.Helper()
	refs := newReferences[[]string](secretsResource, referrers)
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	t.Cleanup(queue.ShutDown)
	refs.start(context.Background(), queue)
	return refs, queue
}

func secretMeta(name, resourceVersion string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name, ResourceVersion: resourceVersion}}
}

// drain returns the requests queued so far.
func drain(queue workqueue.TypedRateLimitingInterface[reconcile.Request]) []string {
	var got []string
	for queue.Len() > 0 {
		req, _ := queue.Get()
		got = append(got, req.String())
		queue.Done(req)
	}
	return got
}

func TestReferencesKeepNothingOfUnreferencedObjects(t *testing.T) {
	refs, queue, _ := referencesFixture(t)
	list := make([]any, 0, 10001)
	for i := range 10000 {
		list = append(list, secretMeta(fmt.Sprintf("app-%05d", i), "7"))
	}
	list = append(list, secretMeta("segment", "8"))
	if err := refs.store(metav1.NamespaceAll).Replace(list, "9"); err != nil {
		t.Fatal(err)
	}
	if len(refs.byName) != 1 {
		t.Fatalf("kept %d objects, want only the referenced one", len(refs.byName))
	}
	if got := drain(queue); len(got) != 1 || got[0] != "team/events" {
		t.Fatalf("queued %v, want the referrer of the listed Secret once", got)
	}
	_ = refs.store("team").Update(secretMeta("app-00001", "10"))
	if len(refs.byName) != 1 || queue.Len() != 0 {
		t.Fatalf("an unreferenced Secret's change kept %d objects and queued %d", len(refs.byName), queue.Len())
	}
}

func TestReferencesWakeReferrersOnlyForANewVersion(t *testing.T) {
	refs, queue, _ := referencesFixture(t)
	key := types.NamespacedName{Namespace: "team", Name: "segment"}

	_ = refs.store("team").Add(secretMeta("segment", "5"))
	if got := drain(queue); len(got) != 1 {
		t.Fatalf("a referenced Secret appearing queued %v, want its referrer", got)
	}
	if _, ok := refs.lookup(key); ok {
		t.Fatal("lookup found keys that nobody read yet")
	}
	refs.remember(key, "5", []string{"shared-secret"})
	if keys, ok := refs.lookup(key); !ok || keys[0] != "shared-secret" {
		t.Fatalf("lookup after remember = %v, %v", keys, ok)
	}
	_ = refs.store("team").Update(secretMeta("segment", "5"))
	if queue.Len() != 0 {
		t.Fatal("a relist of the version already read queued a reconcile")
	}

	_ = refs.store("team").Update(secretMeta("segment", "6"))
	if got := drain(queue); len(got) != 1 {
		t.Fatalf("a new version queued %v, want its referrer", got)
	}
	if _, ok := refs.lookup(key); ok {
		t.Fatal("lookup returned what was read from an older version")
	}
	// A read that raced with the watch and got the older version does not hide the new one.
	refs.remember(key, "5", []string{"old"})
	if _, ok := refs.lookup(key); ok {
		t.Fatal("a stale read counted as current")
	}
	refs.remember(key, "6", []string{"shared-secret", "next"})
	if keys, ok := refs.lookup(key); !ok || len(keys) != 2 {
		t.Fatalf("lookup after reading the new version = %v, %v", keys, ok)
	}
}

func TestReferencesForgetDeletedObjects(t *testing.T) {
	refs, queue, referenced := referencesFixture(t)
	key := types.NamespacedName{Namespace: "team", Name: "segment"}
	team := refs.store("team")
	refs.remember(key, "5", []string{"shared-secret"})

	_ = team.Delete(secretMeta("segment", "5"))
	if _, ok := refs.lookup(key); ok {
		t.Fatal("a deleted Secret's keys are still remembered")
	}
	if got := drain(queue); len(got) != 1 {
		t.Fatalf("a deletion queued %v, want its referrer", got)
	}
	// A read that began before the deletion and ends after it does not bring the Secret back.
	refs.remember(key, "5", []string{"shared-secret"})
	if _, ok := refs.lookup(key); ok {
		t.Fatal("a read from before the deletion counted as current")
	}

	// Created again, then deleted while no watch ran: the next list of its namespace lacks it.
	// The list of another namespace says nothing about it.
	_ = team.Add(secretMeta("segment", "7"))
	if got := drain(queue); len(got) != 1 {
		t.Fatalf("a Secret created again queued %v, want its referrer", got)
	}
	refs.remember(key, "7", []string{"shared-secret"})
	if err := refs.store("elsewhere").Replace(nil, "9"); err != nil {
		t.Fatal(err)
	}
	if _, ok := refs.lookup(key); !ok || queue.Len() != 0 {
		t.Fatal("the list of another namespace dropped the Secret")
	}
	if err := team.Replace([]any{secretMeta("other", "8")}, "9"); err != nil {
		t.Fatal(err)
	}
	if _, ok := refs.lookup(key); ok {
		t.Fatal("after a list without it, the Secret's keys are still remembered")
	}
	if got := drain(queue); len(got) != 1 {
		t.Fatalf("a deletion seen by a relist queued %v, want its referrer", got)
	}

	// Once nothing references it, a resync of the watch drops what was kept.
	*referenced = false
	if err := team.Resync(); err != nil {
		t.Fatal(err)
	}
	if len(refs.byName) != 0 {
		t.Fatalf("%d objects kept after their references went away", len(refs.byName))
	}
}

func TestReferencesKeepAChangeWhileUnreferenced(t *testing.T) {
	refs, queue, referenced := referencesFixture(t)
	key := types.NamespacedName{Namespace: "team", Name: "segment"}
	refs.remember(key, "5", []string{"shared-secret"})

	// The SegmentWebhook lets go of the Secret, the Secret changes, a reconcile still in flight
	// remembers the old version: when the Secret is referenced again, that is not current.
	*referenced = false
	_ = refs.store("team").Update(secretMeta("segment", "6"))
	if queue.Len() != 0 {
		t.Fatal("a change of an unreferenced Secret queued a reconcile")
	}
	refs.remember(key, "5", []string{"old"})
	*referenced = true
	if _, ok := refs.lookup(key); ok {
		t.Fatal("a read older than the version the watch saw counted as current")
	}
}

func TestReferencesKeepTheNewsWhenReferrersCannotBeFound(t *testing.T) {
	refs, _ := startedReferences(t, func(context.Context, types.NamespacedName) ([]reconcile.Request, error) {
		return nil, errors.New("cache not started")
	})
	key := types.NamespacedName{Namespace: "team", Name: "segment"}

	_ = refs.store("team").Update(secretMeta("segment", "6"))
	refs.remember(key, "5", []string{"old"}) // a read from before the change
	if _, ok := refs.lookup(key); ok {
		t.Fatal("a change whose referrers could not be found was dropped: an older read counts as current")
	}
	refs.remember(key, "6", []string{"shared-secret"})
	if _, ok := refs.lookup(key); !ok {
		t.Fatal("the read of the version the watch saw does not count")
	}
}
