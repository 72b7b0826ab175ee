package trackingplan

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

const boundedPlan = `{
  "$defs": {"n": {"type": "object", "additionalProperties": {"$ref": "#/$defs/n"}}},
  "track": {
    "Closed": {"type": "object", "properties": {"total": {"type": "number", "minimum": 0}, "n": {"$ref": "#/$defs/n"}},
      "required": ["total"], "additionalProperties": false},
    "Typed": {"type": "object", "additionalProperties": {"type": "string"}}
  }
}`

func wide(n int, value string) []byte {
	var b strings.Builder
	b.WriteString(`{"total":1`)
	for i := range n {
		fmt.Fprintf(&b, `,"_%s":%s`, strconv.FormatInt(int64(i), 36), value)
	}
	b.WriteString("}")
	return []byte(b.String())
}

// What an event can make a check cost is bounded: numbers big.Rat cannot hold cheaply, nesting,
// the member's size, and how many violations are listed; every member to omit is still found.
func TestCheckIsBounded(t *testing.T) {
	p := mustCompile(t, Document{Name: "plan.json", Data: []byte(boundedPlan)})
	check := func(name string, props []byte) Result {
		return p.Check(Event{Type: SectionTrack, Name: name, Properties: props})
	}
	for _, n := range []string{"1e10000000", "1e999999", "-1E-999999", "1e401", strings.Repeat("9", MaxNumberLength+1)} {
		r := check("Closed", []byte(`{"total":`+n+`}`))
		if r.Total != 1 || r.Violations[0].Pointer != "/properties/total" || r.Violations[0].Keyword != "number" {
			t.Errorf("%.20s: %+v, want one number violation", n, r)
		}
	}
	for _, n := range []string{"1e400", "1.5e-400", "12345678901234567890123"} {
		if r := check("Closed", []byte(`{"total":`+n+`}`)); r.Total != 0 {
			t.Errorf("%s, within the bounds: %+v", n, r.Violations)
		}
	}
	deep := `{"total":1,"n":` + strings.Repeat(`{"a":`, 5000) + "{}" + strings.Repeat("}", 5000) + "}"
	if r := check("Closed", []byte(deep)); r.Total != 1 || r.Violations[0].Keyword != "depth" {
		t.Errorf("5000 deep: %+v", r.Violations)
	}
	for _, big := range [][]byte{wide(MaxCheckedBytes/4, "1"), wide(MaxCheckedValues, "1")} {
		if r := check("Closed", big); r.Total != 1 || r.Violations[0].Keyword != "size" || r.Violations[0].Pointer != "/properties" {
			t.Errorf("%d bytes: %+v", len(big), r.Violations)
		}
	}
	r := check("Closed", wide(100_000, "1"))
	paths, rest, unrepairable := r.Omissions()
	if r.Total != 100_000 || len(r.Violations) != MaxViolations || len(paths) != 100_000 || len(rest) != 0 || unrepairable != 0 {
		t.Errorf("100k extra: total %d, listed %d, omit %d, rest %d", r.Total, len(r.Violations), len(paths), len(rest))
	}
	if got, want := Summary(r.Violations, r.Total, 2), "/properties/_0 additionalProperties, /properties/_1 additionalProperties, and 99998 more"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	r = check("Typed", wide(50_000, "1"))
	if r.Total != 50_001 || len(r.Violations) != MaxViolations {
		t.Errorf("50k wrong types: total %d, listed %d", r.Total, len(r.Violations))
	}
}

// BenchmarkCheckWorst measures the shapes that cost a check the most per byte of the member, at
// MaxCheckedBytes: CheckMemoryFactor must cover their B/op divided by the bytes.
func BenchmarkCheckWorst(b *testing.B) {
	p := mustCompile(b, Document{Name: "plan.json", Data: []byte(boundedPlan)})
	for _, tc := range []struct {
		name, event string
		props       []byte
	}{
		{"extra", "Closed", wide(100_000, "1")},
		{"wrong-type", "Typed", wide(100_000, "1")},
		{"array", "Closed", []byte(`{"total":1,"n":{"a":{"b":[` + strings.Repeat("0,", MaxCheckedValues-10) + `0]}}}`)},
		{"numbers", "Closed", []byte(`{"total":1e999999,"n":{"x":[` + strings.Repeat("1e999999,", 10000) + `1]}}`)},
		{"deep", "Closed", []byte(`{"total":1,"n":` + strings.Repeat(`{"a":`, 5000) + "{}" + strings.Repeat("}", 5000) + "}")},
	} {
		b.Run(tc.name, func(b *testing.B) {
			if len(tc.props) > MaxCheckedBytes {
				b.Fatalf("%d bytes", len(tc.props))
			}
			b.SetBytes(int64(len(tc.props)))
			b.ReportAllocs()
			for b.Loop() {
				p.Check(Event{Type: SectionTrack, Name: tc.event, Properties: tc.props})
			}
		})
	}
}

// largestPlan is a plan at MaxTrackEvents events, each an object of props string properties.
func largestPlan(props int) []byte {
	var b strings.Builder
	b.WriteString(`{"track":{`)
	for i := range MaxTrackEvents {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"Event %d":{"type":"object","properties":{`, i)
		for j := range props {
			if j > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `"p%d":{"type":"string"}`, j)
		}
		b.WriteString("}}")
	}
	b.WriteString(`},"identify":{"type":"object"}}`)
	return []byte(b.String())
}

// Compiling a plan costs time and memory in proportion to it: one of MaxTrackEvents events
// allocates at most 512 bytes per byte (compiled one by one, each compile cloned the library's
// bookkeeping of every location compiled before: 449 KB took 8 s and 1.7 GiB).
func TestCompileIsLinear(t *testing.T) {
	doc := largestPlan(8)
	var p *Plan
	var err error
	start := time.Now()
	before := allocatedBytes()
	p, err = Compile([]Document{{Name: "plan.json", Data: doc}})
	allocated := allocatedBytes() - before
	t.Logf("%d events, %d bytes: %s, %d MiB allocated", MaxTrackEvents, len(doc), time.Since(start).Round(time.Millisecond), allocated>>20)
	if err != nil {
		t.Fatal(err)
	}
	if p.Events != MaxTrackEvents {
		t.Fatalf("%d events compiled", p.Events)
	}
	if limit := uint64(512 * len(doc)); allocated > limit {
		t.Errorf("Compile of %d bytes allocated %d MiB, want at most %d MiB", len(doc), allocated>>20, limit>>20)
	}
	r := p.Check(Event{Type: SectionTrack, Name: "Event 1999", Properties: []byte(`{"p7":1}`)})
	if r.Total != 1 || r.Violations[0].Pointer != "/properties/p7" || r.Violations[0].Keyword != "type" {
		t.Errorf("the last event's check: %+v", r.Violations)
	}
}

// Patterns are bounded by their size once repetitions are unrolled, each and all of a plan's
// together; event values checked as regexes are bounded each, parsed rather than compiled, and
// cost the plan nothing.
func TestPatternSizesAreBounded(t *testing.T) {
	patterns := func(n int) []byte {
		props := make([]string, n)
		for i := range props {
			props[i] = fmt.Sprintf(`"p%d":{"pattern":"(%03d){960}"}`, i, i) // 4,800 each
		}
		return []byte(`{"track":{"A":{"properties":{` + strings.Join(props, ",") + `}}}}`)
	}
	fit := MaxPlanPatternSize / (2 * 4800) // each compiled twice
	if _, err := Compile([]Document{{Name: "plan.json", Data: patterns(fit)}}); err != nil {
		t.Errorf("%d patterns of 4,800: %v", fit, err)
	}
	_, err := Compile([]Document{{Name: "plan.json", Data: patterns(fit + 1)}})
	if err == nil || !strings.Contains(err.Error(), "together") {
		t.Errorf("%d patterns of 4,800: %v, want refused", fit+1, err)
	}
	p := mustCompile(t, Document{Name: "plan.json", Data: []byte(`{"track":{"A":{"properties":{"r":{"type":"array","items":{"format":"regex"}}}}}}`)})
	values := `["((0000000)0){1000}","^a+$"` + strings.Repeat(`,"(000){960}"`, 100) + `]`
	for range 2 { // the same answer each time: no budget is spent
		allocated := allocatedBytes()
		r := p.Check(Event{Type: SectionTrack, Name: "A", Properties: []byte(`{"r":` + values + `}`)})
		if r.Total != 1 || r.Violations[0].Pointer != "/properties/r/0" || r.Violations[0].Keyword != "format" {
			t.Fatalf("violations %+v, want one format violation at /properties/r/0", r.Violations)
		}
		if allocated = allocatedBytes() - allocated; allocated > 4<<20 {
			t.Errorf("102 values checked as regexes allocated %d KiB, want them parsed, not compiled", allocated>>10)
		}
	}
}
