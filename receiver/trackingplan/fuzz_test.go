package trackingplan

import (
	"runtime/metrics"
	"testing"
	"time"
)

// allocatedBytes is what the process has allocated on the heap so far (no stop-the-world, unlike
// runtime.ReadMemStats); the fuzzer runs one input at a time per worker process.
func allocatedBytes() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// FuzzCompile feeds arbitrary plan documents to Compile. Whatever the document, Compile must not
// panic, must finish within a second and allocate at most 4 MiB plus 1 KiB per byte of it
// (realistic plans take about 150 B per byte); whatever it accepts must check events without
// panicking. Hostile plans (deep $ref chains, huge enums, backtracking or oversized regexes, deep
// nesting) are seeds, and must stay refused or bounded.
func FuzzCompile(f *testing.F) {
	f.Add([]byte(ecommerce))
	for name, doc := range hostile() {
		if name != "too big" { // a 1 MiB seed slows the fuzzer down; TestCompileRefusesHostilePlans has it
			f.Add([]byte(doc))
		}
	}
	f.Add([]byte(`{"track":{"A":{"properties":{"x":{"pattern":"^(a+)+$"}}}}}`))
	f.Add([]byte(`{"$defs":{"a":{"$ref":"#/$defs/a"}},"context":{"$ref":"#/$defs/a"}}`))
	f.Add([]byte(`{"track":{"A":{"$dynamicRef":"#x"}}}`))
	events := []Event{
		{Type: "track", Name: "A", Properties: []byte(`{"x":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!","y":[1,2,{"z":null}]}`), Context: []byte(`{"ip":"1.2.3.4"}`)},
		{Type: "track", Name: "Order Completed", Properties: []byte(`{"order_id":"o","total":1e400,"currency":"USD"}`)},
		{Type: "identify", Traits: []byte(`{"email":"a@b.c"}`)},
		{Type: "group", Traits: []byte(`[]`)},
		{Type: "page", Properties: []byte(`"x"`)},
		{Type: "screen"},
		{Type: "alias", Context: []byte(`null`)},
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		allocated, start := allocatedBytes(), time.Now()
		p, err := Compile([]Document{{Name: "plan.json", Data: doc}})
		took, allocated := time.Since(start), allocatedBytes()-allocated
		if took > time.Second {
			t.Fatalf("Compile of %d bytes took %s", len(doc), took)
		}
		if limit := uint64(4<<20 + 1024*len(doc)); allocated > limit {
			t.Fatalf("Compile of %d bytes allocated %d bytes, over %d", len(doc), allocated, limit)
		}
		if err != nil {
			return
		}
		if p.Events > MaxTrackEvents || len(doc) > MaxBytes {
			t.Fatalf("accepted a plan over the limits: %d events, %d bytes", p.Events, len(doc))
		}
		for _, ev := range events {
			r := p.Check(ev)
			paths, _, _ := r.Omissions()
			for _, path := range paths {
				if path[0] == "" {
					t.Fatalf("omission %v names no member", path)
				}
			}
			_ = Summary(r.Violations, r.Total, 5)
			if len(r.Violations) > MaxViolations || r.Total < len(r.Violations) {
				t.Fatalf("%d violations listed of %d", len(r.Violations), r.Total)
			}
		}
	})
}
