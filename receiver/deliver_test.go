package receiver

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

type countingTarget struct{ closed atomic.Int32 }

func (c *countingTarget) Deliver(_ context.Context, events []Event) []error {
	return make([]error, len(events))
}
func (c *countingTarget) Close() error { c.closed.Add(1); return nil }

// A retired pipeline closes its targets only once the last request using it has finished.
func TestRetiredPipelineClosesAfterLastUser(t *testing.T) {
	oldTarget, newTarget := &countingTarget{}, &countingTarget{}
	var current atomic.Pointer[pipeline]
	old := &pipeline{routes: []*route{{target: oldTarget}}}
	current.Store(old)

	inFlight := acquire(&current)
	current.Store(&pipeline{routes: []*route{{target: newTarget}}})
	old.retire()
	if oldTarget.closed.Load() != 0 {
		t.Fatal("targets closed under an in-flight request")
	}
	if acquire(&current) == old {
		t.Fatal("a new request got the retired pipeline")
	}
	inFlight.release()
	if oldTarget.closed.Load() != 1 {
		t.Fatalf("closed %d times after the last user left, want 1", oldTarget.closed.Load())
	}
	old.retire()
	if oldTarget.closed.Load() != 1 || newTarget.closed.Load() != 0 {
		t.Fatal("closed more than once, or the wrong pipeline")
	}
}

func TestClassifyStatus(t *testing.T) {
	for code, want := range map[int]string{200: "ok", 204: "ok", 301: "permanent", 400: "permanent", 401: "permanent",
		404: "permanent", 408: "retry", 422: "permanent", 429: "retry", 500: "retry", 501: "retry", 503: "retry"} {
		err := classifyStatus(code)
		got := "retry"
		switch {
		case err == nil:
			got = "ok"
		case IsPermanent(err):
			got = "permanent"
		}
		if got != want {
			t.Errorf("%d: %s, want %s", code, got, want)
		}
	}
}

// Dedupe memory is keyed by the target's identity and released when the target goes away.
func TestDedupeMemoryFollowsTargetIdentity(t *testing.T) {
	store := newDedupeStore()
	primary := config.Target{Name: "primary", HTTP: &config.HTTPTarget{URL: "http://a.example/"}}
	moved := config.Target{Name: "primary", HTTP: &config.HTTPTarget{URL: "http://b.example/"}}
	mem := store.forTarget(targetIdentity(primary), 10, time.Hour)
	mem.add("m-1")
	if !store.forTarget(targetIdentity(primary), 10, time.Hour).has("m-1") {
		t.Fatal("a reload with the same target forgot its memory")
	}
	if store.forTarget(targetIdentity(moved), 10, time.Hour).has("m-1") {
		t.Fatal("a target pointed somewhere new kept the old destination's memory")
	}
	if store.forTarget(targetIdentity(primary), 10, time.Nanosecond).has("m-1") {
		t.Fatal("an id older than the window still counts")
	}
	store.retain([]string{targetIdentity(moved)})
	if len(store.byIdentity) != 1 || store.forTarget(targetIdentity(primary), 10, time.Hour).has("m-1") {
		t.Fatal("the memory of a removed target was kept")
	}
}

// The memory holds the newest dedupeSize ids: the oldest goes first, an id added again counts
// from its new place, and a reload that resizes keeps the newest that fit.
func TestAcceptedIDsKeepsTheNewest(t *testing.T) {
	ids := newAcceptedIDs(3)
	held := func(want ...string) {
		t.Helper()
		var got []string
		for i := range 8 {
			if _, ok := ids.get(fmt.Sprint("m-", i)); ok {
				got = append(got, fmt.Sprint("m-", i))
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("holds %v, want %v", got, want)
		}
	}
	for i := range 3 {
		ids.put(fmt.Sprint("m-", i), int64(i))
	}
	held("m-0", "m-1", "m-2")
	ids.put("m-3", 3)
	held("m-1", "m-2", "m-3")
	ids.put("m-2", 4) // added again: now the newest (m-1, the oldest, goes); its old place is stale
	if at, _ := ids.get("m-2"); at != 4 {
		t.Fatalf("m-2 accepted at %d, want 4", at)
	}
	held("m-2", "m-3")
	ids.put("m-4", 5) // takes m-2's stale place, which must not evict m-2
	held("m-2", "m-3", "m-4")
	ids.put("m-5", 6)
	held("m-2", "m-4", "m-5")

	ids.resize(2)
	held("m-4", "m-5")
	ids.resize(4)
	held("m-4", "m-5")
	for _, id := range []string{"m-6", "m-7", "m-0"} {
		ids.put(id, 7)
	}
	held("m-0", "m-5", "m-6", "m-7")
	if len(ids.at) != 4 {
		t.Fatalf("%d entries for 4 places", len(ids.at))
	}
}

// A refusal by one of several required targets is never lost: the refused event is
// dead-lettered while the other targets are still delivering (run with -race: the refusals of
// targets delivered concurrently are collected under one lock).
func TestRefusalAmongSeveralRequiredTargets(t *testing.T) {
	picky, second, third, dlq := newSink(t), newSink(t), newSink(t), newSink(t)
	refuse := func(body string) int {
		if strings.Contains(body, `"r-2"`) {
			return http.StatusUnprocessableEntity
		}
		return http.StatusOK
	}
	picky.decide.Store(&refuse)
	secretVol := newVolume(t, map[string]string{"hmac": testSecret})
	cfg := testConfig(secretVol, httpTargetTo("picky", picky), httpTargetTo("second", second), httpTargetTo("third", third))
	cfg.DeadLetter = &config.Target{HTTP: &config.HTTPTarget{URL: dlq.URL + "/dlq"}}
	h := startHarness(t, secretVol, cfg)

	// The other targets answer only once the first has refused, so that refusal is recorded
	// first, while the request's goroutine is still at work.
	releaseSecond, releaseThird := second.hold(), third.hold()
	defer releaseSecond()
	defer releaseThird()
	answer := make(chan response, 1)
	go func() { answer <- h.post(batch(track("r-1"), track("r-2"))) }()
	eventually(t, 30*time.Second, "the first target's refusal", func() bool {
		return h.metric("segment_receiver_target_failures_total", "target", "picky", "kind", "permanent") == 1
	})
	releaseSecond()
	releaseThird()
	resp := <-answer
	if resp.code != http.StatusOK || !strings.Contains(resp.body, `"deadLettered":1`) {
		t.Fatalf("got %d %s, want 200 with the refused event dead-lettered", resp.code, resp.body)
	}
	letters := envelopes(t, dlq)
	if len(letters) != 1 || letters[0].Target != "picky" || letters[0].MessageID != "r-2" {
		t.Fatalf("dead letters %+v, want r-2 refused by picky", letters)
	}
	for _, s := range []*sink{second, third} {
		if got := s.acceptedEvents(t); got["r-1"] != 1 || got["r-2"] != 1 {
			t.Fatalf("a required target got %v", got)
		}
	}
}

// paddedTrack is a track event of about size bytes.
func paddedTrack(id string, size int) string {
	return fmt.Sprintf(`{"type":"track","event":"Order Completed","userId":"u-1","messageId":%q,"properties":{"pad":%q}}`,
		id, strings.Repeat("x", size))
}

// An optional target's delivery that outlives the answer keeps its copy of the events counted in
// maxBufferedBytes until it ends, and is skipped when the budget cannot hold it.
func TestOptionalDeliveryHoldsItsMemory(t *testing.T) {
	required, optional := newSink(t), newSink(t)
	release := optional.hold()
	defer release()
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	optionalTarget := httpTargetTo("optional", optional)
	optionalTarget.Optional = true
	cfg := testConfig(secrets, httpTargetTo("required", required), optionalTarget)
	cfg.Limits.MaxBufferedBytes = cfg.Limits.MaxBodyBytes // 64 KiB
	h := startHarness(t, secrets, cfg)

	// About 24 KiB of events: the optional delivery's copy holds about 28 KiB once answered.
	first := batch(paddedTrack("a-1", 6000), paddedTrack("a-2", 6000), paddedTrack("a-3", 6000), paddedTrack("a-4", 6000))
	if resp := h.post(first); resp.code != http.StatusOK {
		t.Fatalf("first request: got %d %s", resp.code, resp.body)
	}
	waitArrival(t, optional)

	// A body of 50 KiB fits the budget only without the optional delivery still running.
	large := paddedTrack("b-1", 50<<10)
	if resp := h.post(large); resp.code != http.StatusTooManyRequests {
		t.Fatalf("large request while the optional delivery holds its memory: got %d %s, want 429", resp.code, resp.body)
	}

	// Another request like the first fits, but its optional delivery no longer does: skipped.
	second := batch(paddedTrack("c-1", 6000), paddedTrack("c-2", 6000), paddedTrack("c-3", 6000), paddedTrack("c-4", 6000))
	if resp := h.post(second); resp.code != http.StatusOK {
		t.Fatalf("second request: got %d %s", resp.code, resp.body)
	}
	if got := required.acceptedEvents(t); got["c-1"] != 1 || got["c-4"] != 1 {
		t.Fatalf("the required target got %v", got)
	}
	if got := h.metric("segment_receiver_optional_skipped_events_total", "target", "optional"); got != 4 {
		t.Fatalf("%v optional events counted as skipped, want 4", got)
	}

	release()
	eventually(t, 30*time.Second, "the optional delivery to give its memory back", func() bool {
		return h.post(large).code == http.StatusOK
	})
	if got := optional.acceptedEvents(t); len(got) != 4 || got["a-1"] != 1 || got["c-1"] != 0 {
		t.Fatalf("the optional target got %v, want the first request's events only", got)
	}
}

// What a request reserves follows what its targets hold: per event per required target, plus
// the bytes rewritten for a target. A target that drops nothing sends the body's own bytes, an
// HTTP array included, and keeps no second slice of originals.
func TestHeldMemoryFollowsTargets(t *testing.T) {
	s := newSink(t)
	secrets := newVolume(t, map[string]string{"hmac": testSecret})
	batched := httpTargetTo("batched", s)
	batched.HTTP.Batch = &config.HTTPBatch{}
	dropping := httpTargetTo("dropping", s)
	dropping.DropFields = []string{"context.ip"}
	optional := httpTargetTo("optional", s)
	optional.Optional = true
	optional.DropFields = []string{"context.ip"}
	h := startHarness(t, secrets, testConfig(secrets, batched, dropping, optional))
	p := acquire(&h.server.current)
	defer p.release()

	body := []byte(batch(identify("h-1"), identify("h-2"), track("h-3"))) // only identify has context.ip
	events, err := decodeEvents(body, config.ValidationStrict, 100)
	if err != nil {
		t.Fatal(err)
	}
	deliveries, refused := p.prepare(events, tally{})
	if len(deliveries) != 3 || len(refused) != 0 {
		t.Fatalf("%d deliveries, %d refused", len(deliveries), len(refused))
	}
	plain, dropped := deliveries[0], deliveries[1]
	for i, ev := range plain.batch {
		if &ev.Raw[0] != &events[i].Raw[0] || &plain.originals[i] != &plain.batch[i] {
			t.Fatalf("event %d was copied for a target that drops nothing", i)
		}
	}
	if plain.copied != 0 {
		t.Fatalf("%d bytes copied for a target that drops nothing", plain.copied)
	}
	pieces, size := jsonArray(plain.batch)
	if string(bytes.Join(pieces, nil)) != string(body) || &pieces[1][0] != &events[0].Raw[0] || size != int64(len(body)) {
		t.Fatal("the HTTP array is not the events' own bytes between brackets and commas")
	}
	if want := int64(len(dropped.batch[0].Raw) + len(dropped.batch[1].Raw)); dropped.copied != want ||
		len(dropped.batch[2].Raw) != len(events[2].Raw) || string(dropped.originals[0].Raw) != identify("h-1") {
		t.Fatalf("dropping target: %d bytes copied, want %d (the two identify events)", dropped.copied, want)
	}
	// The optional target's delivery reserves its own memory; the events made for it are the
	// request's until then. What the tracking plan rewrote counts as it is.
	const rewritten = 100
	want := 3*eventMemory + rewritten + 2*3*memoryPerDelivered + dropped.copied + deliveries[2].copied
	if deliveries[2].copied != dropped.copied {
		t.Fatalf("the optional target copied %d bytes, want %d like the other dropping target", deliveries[2].copied, dropped.copied)
	}
	if got := heldMemory(p, body, len(events), rewritten, deliveries, nil); got != want {
		t.Fatalf("heldMemory = %d, want %d", got, want)
	}

	// Detached for the background, the optional delivery copies only what is still the body's.
	background := deliveries[2]
	if got, want := background.bodyBytes(), int64(len(events[2].Raw)); got != want {
		t.Fatalf("bodyBytes = %d, want %d (the track event, which has no context.ip)", got, want)
	}
	detached := background.detach(background.bodyBytes())
	for i, ev := range detached {
		if string(ev.Raw) != string(background.batch[i].Raw) {
			t.Fatalf("detached event %d changed", i)
		}
	}
	if &detached[0].Raw[0] != &background.batch[0].Raw[0] || &detached[1].Raw[0] != &background.batch[1].Raw[0] {
		t.Fatal("the events made for the optional target were copied again")
	}
	if &detached[2].Raw[0] == &events[2].Raw[0] {
		t.Fatal("an event still in the body was not copied")
	}
}
