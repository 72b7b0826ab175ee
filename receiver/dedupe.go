package receiver

import (
	"hash/maphash"
	"sync"
	"time"
)

// dedupeMemory remembers the messageIds a target accepted, and when, so a Segment retry is not
// sent again to a target that has the event. Entries older than the window count as absent.
type dedupeMemory struct {
	ids    *acceptedIDs
	window time.Duration
}

func (m *dedupeMemory) has(id string) bool {
	at, ok := m.ids.get(id)
	return ok && time.Since(time.Unix(0, at)) < m.window
}

func (m *dedupeMemory) add(id string) { m.ids.put(id, time.Now().UnixNano()) }

// acceptedIDs holds up to size ids, the oldest going first, as 128-bit digests in a map and a
// ring that hold no pointers. The garbage collector then has nothing to scan in it: a linked LRU
// of 100 000 string keys (the default size, soon reached under load) cost every collection a
// walk over all of them, about a tenth of the receiver's CPU per request. Two independent
// random seeds make a false match (an event wrongly skipped) as unlikely as a random 128-bit
// collision.
type acceptedIDs struct {
	mu    sync.Mutex
	seeds [2]maphash.Seed
	size  int
	at    map[idDigest]slotTime
	ring  []idDigest // insertion order; grows to size, then ring[next] is the oldest
	next  int
}

type idDigest [2]uint64

// slotTime is when an id was accepted (Unix nanoseconds) and its place in the ring. An id added
// again takes a new place; its old place is then stale and does not evict it.
type slotTime struct {
	at   int64
	slot int
}

func newAcceptedIDs(size int) *acceptedIDs {
	return &acceptedIDs{
		seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		size:  size,
		at:    map[idDigest]slotTime{}, // grows with use: most targets never see size ids
	}
}

func (a *acceptedIDs) digest(id string) idDigest {
	return idDigest{maphash.String(a.seeds[0], id), maphash.String(a.seeds[1], id)}
}

func (a *acceptedIDs) get(id string) (at int64, ok bool) {
	d := a.digest(id)
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.at[d]
	return e.at, ok
}

func (a *acceptedIDs) put(id string, at int64) {
	d := a.digest(id)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.insert(d, at)
}

// insert adds d at the newest place, evicting the oldest id when the ring is full.
func (a *acceptedIDs) insert(d idDigest, at int64) {
	if len(a.ring) < a.size {
		a.ring = append(a.ring, d)
		a.at[d] = slotTime{at: at, slot: len(a.ring) - 1}
		return
	}
	if old := a.ring[a.next]; a.at[old].slot == a.next {
		delete(a.at, old)
	}
	a.ring[a.next] = d
	a.at[d] = slotTime{at: at, slot: a.next}
	a.next = (a.next + 1) % len(a.ring)
}

// resize keeps the newest ids that fit in size, replaying them oldest first into a new ring.
func (a *acceptedIDs) resize(size int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if size == a.size {
		return
	}
	ring, next, entries := a.ring, a.next, a.at
	a.size, a.at, a.ring, a.next = size, map[idDigest]slotTime{}, nil, 0
	for i := range ring {
		slot := (next + i) % len(ring)
		if e, ok := entries[ring[slot]]; ok && e.slot == slot {
			a.insert(ring[slot], e.at)
		}
	}
}

// dedupeStore keeps each target's memory across reloads, keyed by target identity (name and
// destination), so a reload does not make Segment's retries re-send to targets that already have
// the events.
type dedupeStore struct {
	mu         sync.Mutex
	byIdentity map[string]*acceptedIDs
}

func newDedupeStore() *dedupeStore {
	return &dedupeStore{byIdentity: map[string]*acceptedIDs{}}
}

func (d *dedupeStore) forTarget(identity string, size int, window time.Duration) *dedupeMemory {
	d.mu.Lock()
	defer d.mu.Unlock()
	ids := d.byIdentity[identity]
	if ids == nil {
		ids = newAcceptedIDs(size) // size is validated to be positive
		d.byIdentity[identity] = ids
	} else {
		ids.resize(size)
	}
	return &dedupeMemory{ids: ids, window: window}
}

// retain forgets the memories of targets that are no longer configured.
func (d *dedupeStore) retain(identities []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	keep := map[string]bool{}
	for _, id := range identities {
		keep[id] = true
	}
	for id := range d.byIdentity {
		if !keep[id] {
			delete(d.byIdentity, id)
		}
	}
}
