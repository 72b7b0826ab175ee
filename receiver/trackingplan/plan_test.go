package trackingplan

import (
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// ecommerce is the README's plan: two track events sharing a product schema, identify traits,
// group traits, page and screen properties, and a common context.
const ecommerce = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "$defs": {
    "product": {
      "type": "object",
      "properties": {
        "product_id": {"type": "string", "minLength": 1},
        "price": {"type": "number", "minimum": 0},
        "quantity": {"type": "integer", "minimum": 1}
      },
      "required": ["product_id", "price"]
    }
  },
  "track": {
    "Order Completed": {
      "type": "object",
      "properties": {
        "order_id": {"type": "string"},
        "total": {"type": "number", "minimum": 0},
        "currency": {"enum": ["USD", "EUR", "GBP"]},
        "products": {"type": "array", "items": {"$ref": "#/$defs/product"}}
      },
      "required": ["order_id", "total", "currency"],
      "additionalProperties": false
    },
    "Product Viewed": {
      "allOf": [{"$ref": "#/$defs/product"}],
      "properties": {"category": {"type": "string"}},
      "unevaluatedProperties": false
    }
  },
  "identify": {
    "type": "object",
    "properties": {"email": {"type": "string", "format": "email"}, "plan": {"enum": ["free", "pro"]}}
  },
  "group": {"type": "object", "properties": {"employees": {"type": "integer"}}, "required": ["name"]},
  "page": {"type": "object", "properties": {"path": {"type": "string", "pattern": "^/"}}},
  "screen": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
  "context": {"type": "object", "properties": {"ip": {"type": "string", "format": "ipv4"}}}
}`

func mustCompile(t testing.TB, docs ...Document) *Plan {
	t.Helper()
	p, err := Compile(docs)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type found struct{ pointer, keyword string }

func violations(r Result) []found {
	var out []found
	for _, v := range r.Violations {
		out = append(out, found{v.Pointer, v.Keyword})
	}
	return out
}

// TestCheckVectors covers each event type against the e-commerce plan.
func TestCheckVectors(t *testing.T) {
	p := mustCompile(t, Document{Name: "plan.json", Data: []byte(ecommerce)})
	if p.Events != 2 || !strings.HasPrefix(p.Hash, "sha256:") {
		t.Fatalf("events %d hash %q", p.Events, p.Hash)
	}
	for _, tc := range []struct {
		name      string
		ev        Event
		unplanned bool
		want      []found
	}{
		{"track valid", Event{Type: "track", Name: "Order Completed",
			Properties: []byte(`{"order_id":"o1","total":10.5,"currency":"EUR","products":[{"product_id":"p1","price":10.5,"quantity":1}]}`)}, false, nil},
		{"track wrong type", Event{Type: "track", Name: "Order Completed",
			Properties: []byte(`{"order_id":"o1","total":"10.5","currency":"EUR"}`)}, false, []found{{"/properties/total", "type"}}},
		{"track missing required", Event{Type: "track", Name: "Order Completed",
			Properties: []byte(`{"order_id":"o1","currency":"EUR"}`)}, false, []found{{"/properties", "required"}}},
		{"track properties absent", Event{Type: "track", Name: "Order Completed"}, false, []found{{"/properties", "required"}}},
		{"track unplanned property", Event{Type: "track", Name: "Order Completed",
			Properties: []byte(`{"order_id":"o1","total":1,"currency":"USD","coupon":"X","note":1}`)}, false,
			[]found{{"/properties/coupon", "additionalProperties"}, {"/properties/note", "additionalProperties"}}},
		{"track nested via $ref", Event{Type: "track", Name: "Order Completed",
			Properties: []byte(`{"order_id":"o1","total":1,"currency":"USD","products":[{"product_id":"p","price":-1}]}`)}, false,
			[]found{{"/properties/products/0/price", "minimum"}}},
		{"track enum", Event{Type: "track", Name: "Order Completed",
			Properties: []byte(`{"order_id":"o1","total":1,"currency":"JPY"}`)}, false, []found{{"/properties/currency", "enum"}}},
		{"track unevaluatedProperties", Event{Type: "track", Name: "Product Viewed",
			Properties: []byte(`{"product_id":"p","price":1,"category":"shoes","color":"red"}`)}, false,
			[]found{{"/properties/color", "unevaluatedProperties"}}},
		{"track unplanned", Event{Type: "track", Name: "Cart Viewed", Properties: []byte(`{"x":1}`)}, true, nil},
		{"identify valid", Event{Type: "identify", Traits: []byte(`{"email":"a@example.com","plan":"pro"}`)}, false, nil},
		{"identify format", Event{Type: "identify", Traits: []byte(`{"email":"not an email"}`)}, false, []found{{"/traits/email", "format"}}},
		{"group required", Event{Type: "group", Traits: []byte(`{"employees":3}`)}, false, []found{{"/traits", "required"}}},
		{"page pattern", Event{Type: "page", Properties: []byte(`{"path":"home"}`)}, false, []found{{"/properties/path", "pattern"}}},
		{"screen valid", Event{Type: "screen", Properties: []byte(`{"name":"Home"}`)}, false, nil},
		{"screen null properties", Event{Type: "screen", Properties: []byte(`null`)}, false, []found{{"/properties", "required"}}},
		{"context on alias", Event{Type: "alias", Context: []byte(`{"ip":"300.1.1.1"}`)}, false, []found{{"/context/ip", "format"}}},
		{"context and properties", Event{Type: "page", Properties: []byte(`{"path":1}`), Context: []byte(`{"ip":"x"}`)}, false,
			[]found{{"/properties/path", "type"}, {"/context/ip", "format"}}},
		{"property names escaped", Event{Type: "track", Name: "Order Completed",
			Properties: []byte(`{"order_id":"o1","total":1,"currency":"USD","a/b~c":1}`)}, false,
			[]found{{"/properties/a~1b~0c", "additionalProperties"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := p.Check(tc.ev)
			if r.Unplanned != tc.unplanned {
				t.Errorf("unplanned = %v, want %v", r.Unplanned, tc.unplanned)
			}
			if got := violations(r); !slices.Equal(got, tc.want) {
				t.Errorf("violations = %v, want %v", got, tc.want)
			}
			for _, v := range r.Violations {
				if v.Message == "" {
					t.Errorf("violation %v has no message", v)
				}
			}
		})
	}
}

func TestOmissions(t *testing.T) {
	p := mustCompile(t, Document{Name: "plan.json", Data: []byte(ecommerce)})
	r := p.Check(Event{Type: "track", Name: "Order Completed",
		Properties: []byte(`{"total":"1","currency":"USD","coupon":"X","products":[{"price":"1"}]}`)})
	paths, rest, _ := r.Omissions()
	want := [][2]string{{"properties", "coupon"}, {"properties", "total"}, {"properties", "products"}}
	slices.SortFunc(paths, func(a, b [2]string) int { return strings.Compare(a[0]+"."+a[1], b[0]+"."+b[1]) })
	slices.SortFunc(want, func(a, b [2]string) int { return strings.Compare(a[0]+"."+a[1], b[0]+"."+b[1]) })
	if fmt.Sprint(paths) != fmt.Sprint(want) {
		t.Errorf("omit %v, want %v", paths, want)
	}
	// "order_id" and "total" are required: omitting cannot repair that.
	if len(rest) != 1 || rest[0].Keyword != "required" {
		t.Errorf("left %v, want the required violation", rest)
	}
}

func TestSummaryEncodesPointers(t *testing.T) {
	got := Summary([]Violation{
		{Pointer: "/properties/Order Id", Keyword: "type"},
		{Pointer: "/properties/a\r\nb", Keyword: "additionalProperties"},
		{Pointer: "/context/ip", Keyword: "format"},
	}, 3, 2)
	want := "/properties/Order%20Id type, /properties/a%0D%0Ab additionalProperties, and 1 more"
	if got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
}

// Event names and property names may hold "~" and "/": one escaping (RFC 6901) finds the event's
// schema when compiling and names the offending member in violations, and Summary percent-encodes
// it on top.
func TestPointersEscapeNames(t *testing.T) {
	p := mustCompile(t, Document{Name: "plan.json", Data: []byte(
		`{"track":{"a/b~c":{"properties":{"x/y~z":{"type":"number"}}}}}`)})
	r := p.Check(Event{Type: SectionTrack, Name: "a/b~c", Properties: []byte(`{"x/y~z":"one"}`)})
	if want := []found{{"/properties/x~1y~0z", "type"}}; r.Unplanned || !reflect.DeepEqual(violations(r), want) {
		t.Fatalf("unplanned %v, violations %v, want %v", r.Unplanned, violations(r), want)
	}
	if got, want := Summary(r.Violations, r.Total, 10), "/properties/x~1y~0z type"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	if got, want := Summary([]Violation{{Pointer: jsonPointer([]string{"properties", "a b/c"}), Keyword: "type"}}, 1, 10), "/properties/a%20b~1c type"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
}

func TestCompileRefusesWithEventAndMessage(t *testing.T) {
	for _, tc := range []struct {
		name, doc, event, message string
	}{
		{"not JSON", `{`, "", "not JSON"},
		{"unknown member", `{"tracks":{}}`, "", `unknown member "tracks"`},
		{"other draft", `{"$schema":"http://json-schema.org/draft-07/schema#"}`, "", "draft 2020-12"},
		{"bad type", `{"track":{"Order Completed":{"type":"integr"}}}`, "track/Order Completed", "metaschema"},
		{"bad regex", `{"page":{"properties":{"path":{"pattern":"(a"}}}}`, "page", "not valid regex"},
		{"ref outside", `{"track":{"A":{"$ref":"other.json#/x"}}}`, "track/A", "within its own document"},
		{"file ref", `{"track":{"A":{"$ref":"file:///etc/passwd"}}}`, "track/A", "within its own document"},
		{"missing def", `{"identify":{"$ref":"#/$defs/nope"}}`, "identify", "nope"},
		{"track not object", `{"track":[]}`, "track", "mapping event names"},
		{"empty name", `{"track":{"":{}}}`, "track/", "must not be empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile([]Document{{Name: "plan.json", Data: []byte(tc.doc)}})
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("error %v is not a *Error", err)
			}
			if perr.Document != "plan.json" || perr.Event != tc.event || !strings.Contains(err.Error(), tc.message) {
				t.Errorf("got document %q event %q error %q; want event %q and %q", perr.Document, perr.Event, err, tc.event, tc.message)
			}
		})
	}
}

func TestCompileMergesDocuments(t *testing.T) {
	checkout := Document{Name: "checkout.json", Data: []byte(`{"track":{"Order Completed":{"required":["order_id"]}}}`)}
	catalog := Document{Name: "catalog.json", Data: []byte(`{"track":{"Product Viewed":{}},"context":{"type":"object"}}`)}
	p := mustCompile(t, checkout, catalog)
	planned := func(name string) bool { return !p.Check(Event{Type: SectionTrack, Name: name}).Unplanned }
	if p.Events != 2 || !planned("Order Completed") || !planned("Product Viewed") || planned("Order Refunded") {
		t.Fatalf("merged plan has %d events", p.Events)
	}
	// Order does not matter to the hash.
	if q := mustCompile(t, catalog, checkout); q.Hash != p.Hash {
		t.Errorf("hash depends on document order")
	}
	// The receiver names documents after its files, "trackingplan.<key>": the hash is the same.
	renamed := mustCompile(t, Document{Name: "trackingplan.catalog.json", Data: catalog.Data}, Document{Name: "trackingplan.checkout.json", Data: checkout.Data})
	if renamed.Hash != p.Hash {
		t.Errorf("hash depends on the documents' names")
	}
	changed := mustCompile(t, Document{Name: "checkout.json", Data: []byte(`{"track":{"Order Completed":{}}}`)}, catalog)
	if changed.Hash == p.Hash {
		t.Errorf("hash did not change with the content")
	}
	dup := Document{Name: "more.json", Data: []byte(`{"track":{"Product Viewed":{}}}`)}
	if _, err := Compile([]Document{checkout, catalog, dup}); err == nil || !strings.Contains(err.Error(), "more than one document") {
		t.Errorf("duplicate event: %v", err)
	}
	dupContext := Document{Name: "more.json", Data: []byte(`{"context":{}}`)}
	if _, err := Compile([]Document{catalog, dupContext}); err == nil || !strings.Contains(err.Error(), "more than one document") {
		t.Errorf("duplicate context: %v", err)
	}
}

// hostile builds the plans a careless or malicious author could write.
func hostile() map[string]string {
	var chain strings.Builder
	chain.WriteString(`{"$defs":{`)
	for i := range MaxRefs + 1 {
		fmt.Fprintf(&chain, `"d%d":{"$ref":"#/$defs/d%d"},`, i, i+1)
	}
	fmt.Fprintf(&chain, `"d%d":{"type":"string"}},"track":{"A":{"$ref":"#/$defs/d0"}}}`, MaxRefs+1)

	enum := make([]string, MaxEnum+1)
	for i := range enum {
		enum[i] = fmt.Sprint(i)
	}
	return map[string]string{
		"ref chain":   chain.String(),
		"huge enum":   `{"track":{"A":{"properties":{"x":{"enum":[` + strings.Join(enum, ",") + `]}}}}}`,
		"deep":        `{"track":{"A":` + strings.Repeat(`{"not":`, MaxDepth) + `{}` + strings.Repeat(`}`, MaxDepth) + `}}`,
		"long regex":  `{"track":{"A":{"pattern":"` + strings.Repeat("a", MaxPattern+1) + `"}}}`,
		"huge repeat": `{"track":{"A":{"pattern":"((a{1000}){1000}){1000}"}}}`,
		"repeat size": `{"track":{"A":{"pattern":"((0000000)0){1000}"}}}`, // FuzzCompile: 48 bytes, 5 MB
		"nested size": `{"track":{"A":{"patternProperties":{"(a{70}){70}":{}}}}}`,
		"too big":     `{"$comment":"` + strings.Repeat("x", MaxBytes) + `"}`,
		"huge number": `{"track":{"A":{"properties":{"x":{"minimum":1e999999}}}}}`,
		"long number": `{"track":{"A":{"properties":{"x":{"enum":[` + strings.Repeat("9", MaxNumberLength+1) + `]}}}}}`,
	}
}

func TestCompileRefusesHostilePlans(t *testing.T) {
	for name, doc := range hostile() {
		t.Run(name, func(t *testing.T) {
			if _, err := Compile([]Document{{Name: "plan.json", Data: []byte(doc)}}); err == nil {
				t.Errorf("compiled")
			}
		})
	}
}

// Backtracking patterns compile (RE2 has no backtracking) and check a long input in linear time.
func TestBacktrackingPatternIsLinear(t *testing.T) {
	p := mustCompile(t, Document{Name: "plan.json", Data: []byte(`{"track":{"A":{"properties":{"x":{"pattern":"^(a+)+$"}}}}}`)})
	r := p.Check(Event{Type: "track", Name: "A", Properties: []byte(`{"x":"` + strings.Repeat("a", 30000) + `!"}`)})
	if got := violations(r); !slices.Equal(got, []found{{"/properties/x", "pattern"}}) {
		t.Errorf("violations %v", got)
	}
}

// A $ref cycle is the library's to detect: it is reported as a violation, not a hang.
func TestRefCycleIsAViolation(t *testing.T) {
	p := mustCompile(t, Document{Name: "plan.json", Data: []byte(`{"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"$ref":"#/$defs/a"}},"track":{"A":{"$ref":"#/$defs/a"}}}`)})
	if r := p.Check(Event{Type: "track", Name: "A", Properties: []byte(`{}`)}); len(r.Violations) == 0 {
		t.Errorf("a $ref cycle passed")
	}
}

// unmarshal must build exactly what the library's own UnmarshalJSON builds.
func TestUnmarshalMatchesTheLibrary(t *testing.T) {
	for _, doc := range []string{
		`{}`, `[]`, `null`, `true`, `"x"`, `0`, `-1.5e+300`, `12345678901234567890123`,
		`{"a":[1,2.50,{"b":null,"c":false}],"d":"\u00e9\n\"","e":{}}`,
		`{"ip":"203.0.113.9","page":{"title":"Paiement – Boutique"},"n":[[],[[]]]}`,
	} {
		got, hostile, err := unmarshal([]byte(doc), "properties")
		if err != nil || hostile != nil {
			t.Fatalf("%s: %v %v", doc, err, hostile)
		}
		want, err := jsonschema.UnmarshalJSON(strings.NewReader(doc))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %#v, want %#v", doc, got, want)
		}
	}
	for _, bad := range []string{`{`, `{"a":1}}`, `[1,]`, `{"a" 1}`} {
		if _, _, err := unmarshal([]byte(bad), "properties"); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// hostileNumbers is a 4.4 KB plan whose 100 properties each have a minimum of 1e1000000: the
// compiler keeps every bound as an exact big.Rat, so each costs a million-digit integer.
func hostileNumbers() []byte {
	var b strings.Builder
	b.WriteString(`{"track":{"A":{"properties":{`)
	for i := range 100 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"p%02d":{"minimum":1e1000000}`, i)
	}
	b.WriteString(`}}}}`)
	return []byte(b.String())
}

// Numbers whose exact value would be huge are refused before the compiler sees them, wherever
// they stand, and cheaply: compiling the 100×1e1000000 plan took 2.7 s of CPU and 65 MiB of heap.
func TestCompileRefusesAbsurdNumbers(t *testing.T) {
	plans := map[string][]byte{
		"100 minimums of 1e1000000": hostileNumbers(),
		"a tiny exponent":           []byte(`{"track":{"A":{"properties":{"x":{"multipleOf":1e-1000000}}}}}`),
		"an exponent in an enum":    []byte(`{"track":{"A":{"properties":{"x":{"enum":[1, 2E+999999]}}}}}`),
		"a const":                   []byte(`{"identify":{"properties":{"x":{"const":-5e500}}}}`),
		"ten thousand digits":       []byte(`{"track":{"A":{"properties":{"x":{"maximum":` + strings.Repeat("9", 10000) + `}}}}}`),
		"a long fraction":           []byte(`{"$defs":{"n":{"default":0.` + strings.Repeat("1", 500) + `}}}`),
	}
	for name, doc := range plans {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := Compile([]Document{{Name: "plan.json", Data: doc}})
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), "number") {
				t.Fatalf("error %v, want a refused number", err)
			}
			if allocated := after.TotalAlloc - before.TotalAlloc; allocated > 4<<20 {
				t.Errorf("refusing it allocated %d bytes", allocated)
			}
		})
	}
}

// Ordinary numbers still compile: exponents and fractions within bounds.
func TestCompileAcceptsOrdinaryNumbers(t *testing.T) {
	mustCompile(t, Document{Name: "plan.json", Data: []byte(`{"track":{"A":{"properties":{` +
		`"a":{"minimum":-1.7976931348623157e308},"b":{"maximum":9007199254740993},"c":{"multipleOf":0.01},` +
		`"d":{"exclusiveMinimum":1E-300},"e":{"enum":[0, -0.5, 12345678901234567890]}}}}}`)})
}

// A plan of more schemas than the bounds is refused before compiling: each costs the compiler
// memory, the members of one object time growing with their square, and the operator compiles
// every team's plan.
func TestCompileRefusesTooManySchemas(t *testing.T) {
	members := func(b *strings.Builder, n int) {
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(b, `"%x":{}`, i)
		}
	}
	var one, all strings.Builder
	one.WriteString(`{"track":{"A":{"properties":{`)
	members(&one, MaxMembers+1)
	one.WriteString(`}}}}`)
	all.WriteString(`{"$defs":{`)
	for i := range 100 {
		if i > 0 {
			all.WriteByte(',')
		}
		fmt.Fprintf(&all, `"d%d":{"$defs":{`, i)
		members(&all, MaxSchemas/100)
		all.WriteString(`}}`)
	}
	all.WriteString(`}}`)
	for name, plan := range map[string]string{"one object": one.String(), "in all": all.String()} {
		_, err := Compile([]Document{{Name: "plan.json", Data: []byte(plan)}})
		if err == nil || !strings.Contains(err.Error(), "schemas") {
			t.Errorf("%s (%d bytes): error %v, want too many schemas", name, len(plan), err)
		}
	}
}

// A plan cannot reach the place Compile puts its events in $defs for compiling them at once: a
// $ref to it does not resolve, as in a plan compiled event by event.
func TestCompileKeepsItsEventsDefPrivate(t *testing.T) {
	for _, ref := range []string{"#/$defs/segment-webhook-operator:track-events/$defs/B", "#/$defs/segment-webhook-operator%3Atrack-events/$defs/B"} {
		doc := `{"track":{"A":{"$ref":"` + ref + `"},"B":{"type":"string"}}}`
		if _, err := Compile([]Document{{Name: "plan.json", Data: []byte(doc)}}); err == nil {
			t.Errorf("%s resolved", ref)
		}
	}
	// Anchors, and pointers into track, resolve as written.
	doc := `{"$defs":{"s":{"$anchor":"str","type":"string"}},"track":{"A":{"properties":{"x":{"$ref":"#str"}}},"B":{"$ref":"#/track/A"},"C":{"properties":{"y":{"$anchor":"num","type":"number"}}},"D":{"$ref":"#/track/C"},"E":{"properties":{"z":{"$ref":"#num"}}}}}`
	p := mustCompile(t, Document{Name: "plan.json", Data: []byte(doc)})
	for name, props := range map[string]string{"A": `{"x":1}`, "B": `{"x":1}`, "D": `{"y":"1"}`, "E": `{"z":"1"}`} {
		if r := p.Check(Event{Type: SectionTrack, Name: name, Properties: []byte(props)}); r.Total != 1 || r.Violations[0].Keyword != "type" {
			t.Errorf("%s %s: %+v, want a type violation", name, props, r.Violations)
		}
	}
}
