// Package trackingplan compiles a tracking plan (JSON Schemas, draft 2020-12, per Segment event)
// and checks events against it. The operator compiles a plan while reconciling and the receiver
// compiles the same files on every load, so both agree on what a valid plan is.
//
// A plan is one or more JSON documents, merged. Each may hold:
//
//	{
//	  "$defs":    { ...shared schemas, for "$ref": "#/$defs/..." },
//	  "track":    { "<event name>": <schema of properties>, ... },
//	  "identify": <schema of traits>,
//	  "group":    <schema of traits>,
//	  "page":     <schema of properties>,
//	  "screen":   <schema of properties>,
//	  "context":  <schema of context, for every event>
//	}
//
// A "$ref" resolves within its own document; nothing is ever loaded from a file or the network.
// Hostile plans are bounded: see the Max* limits.
package trackingplan

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Limits on a plan. They bound what compiling it, and checking every event against it, can
// cost, whatever the plan's author wrote.
const (
	// MaxBytes bounds all documents together (a ConfigMap holds at most 1 MiB).
	MaxBytes = 1 << 20
	// MaxTrackEvents bounds the planned track events, and so the metric's event label values.
	MaxTrackEvents = 2000
	// MaxDepth bounds the nesting of JSON values in a document.
	MaxDepth = 64
	// MaxRefs bounds "$ref" and "$dynamicRef" per document, so a reference chain followed for
	// each event stays short.
	MaxRefs = 1000
	// MaxEnum bounds the values of one "enum", which each event is compared with one by one.
	MaxEnum = 1000
	// MaxPattern bounds a regular expression's length. Go's regexp (RE2) runs in time linear in
	// the input, so no pattern can backtrack catastrophically.
	MaxPattern = 1000
	// MaxSchemas bounds the JSON objects (schemas, and keyword maps such as "properties") of all
	// documents together, and MaxMembers the members of one object: the compiler's time grows
	// with the square of an object's members (9,000 empty properties of one event took 0.7 s,
	// 40,000 took 13 s), and linearly with the events, which are compiled together.
	MaxSchemas = 100_000
	MaxMembers = 5000
	// MaxPatternSize bounds a regular expression's size once its repetitions are unrolled (about
	// its compiled instructions, see patternSize): 48 bytes of ((0000000)0){1000} compile to
	// 10,000 and allocate 5 MB. It applies to "pattern" and "patternProperties" in plans, and to
	// event values checked against "format": "regex".
	MaxPatternSize = 5000
	// MaxPlanPatternSize bounds the sizes of all the patterns a plan compiles together, so that
	// a plan of many patterns holds about 10 MiB of compiled programs at most (40 bytes an
	// instruction). The library compiles each pattern twice (once to check the plan against
	// the metaschema), so this is twice the size of what the plan keeps.
	MaxPlanPatternSize = 500_000
	// MaxNumberLength and MaxExponent bound a number, in a plan or an event: the validator reads
	// numbers as big.Rat, whose cost grows with the digits and the exponent (1e999999 takes 80 ms
	// and 4 MB; past 1e1000000 it fails, and the validator panics). JavaScript numbers, all
	// Segment sends, have at most 24 characters and exponents within ±324.
	MaxNumberLength = 100
	MaxExponent     = 400
)

// Limits on what an event's check costs, whatever the event holds. Past them the event breaks
// its plan (keywords "size", "depth", "number"): checked values are a tree of maps built from
// the bytes, and the validator's cost grows with the square of the depth.
const (
	// MaxCheckedBytes bounds a checked member (properties, traits, context): larger ones are a
	// violation, unchecked. Segment caps a whole event at 32 KB.
	MaxCheckedBytes = 1 << 20
	// MaxCheckedValues bounds the JSON values (members, elements, and the objects and arrays
	// holding them) of a checked member: the tree built to check it costs per value.
	MaxCheckedValues = 1 << 17
	// MaxCheckedDepth bounds the nesting of values within a checked member.
	MaxCheckedDepth = MaxDepth
	// MaxViolations bounds the violations a Result lists; Total counts them all.
	MaxViolations = 20
	// CheckMemoryFactor is what checking a member may allocate at once, per byte of it, at most
	// (BenchmarkCheckWorst: up to 77 B/op per byte, for 100 k tiny members of the wrong type).
	CheckMemoryFactor = 96
)

// keyDefs holds a document's shared schemas.
const keyDefs = "$defs"

// Sections of a plan document, besides "$defs".
const (
	SectionTrack    = "track"
	SectionIdentify = "identify"
	SectionGroup    = "group"
	SectionPage     = "page"
	SectionScreen   = "screen"
	SectionContext  = "context"
)

// sectionObject is the event member each section's schema applies to.
var sectionObject = map[string]string{
	SectionTrack:    "properties",
	SectionIdentify: "traits",
	SectionGroup:    "traits",
	SectionPage:     "properties",
	SectionScreen:   "properties",
}

// documentKeys are the members a plan document may have; anything else is a typo.
var documentKeys = []string{"$schema", "$comment", "description", keyDefs,
	SectionTrack, SectionIdentify, SectionGroup, SectionPage, SectionScreen, SectionContext}

// draft2020 is the only "$schema" a document may name.
const draft2020 = "https://json-schema.org/draft/2020-12/schema"

// Document is one named plan document: a ConfigMap key or a file.
type Document struct {
	Name string
	Data []byte
}

// Plan is a compiled tracking plan. It is immutable and safe for concurrent use.
type Plan struct {
	track    map[string]*jsonschema.Schema // by event name
	sections map[string]*jsonschema.Schema // identify, group, page, screen, context
	patterns *patternBudget                // the regexp engine of the plan's schemas
	// Events is the number of planned track events.
	Events int
	// Hash identifies the plan's content: the documents' bytes in the order of their names, so
	// the operator (ConfigMap keys) and the receiver (files named after them) agree.
	Hash string
}

// Error says which document, and which event's schema, did not compile, with the compiler's
// message.
type Error struct {
	Document string
	Event    string // "track/<name>", "identify", ..., or "" for the document as a whole
	Err      error
}

func (e *Error) Error() string {
	if e.Event == "" {
		return fmt.Sprintf("tracking plan %s: %v", e.Document, e.Err)
	}
	return fmt.Sprintf("tracking plan %s: %s: %v", e.Document, e.Event, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Compile parses and compiles documents into one plan. A track event planned in two documents,
// or any schema that does not compile, refuses the whole plan.
func Compile(docs []Document) (*Plan, error) {
	total := 0
	for _, d := range docs {
		total += len(d.Data)
	}
	if total > MaxBytes {
		return nil, fmt.Errorf("tracking plan: %d bytes, at most %d", total, MaxBytes)
	}
	docs = slices.Clone(docs)
	slices.SortFunc(docs, func(a, b Document) int { return strings.Compare(a.Name, b.Name) })
	p := &Plan{track: map[string]*jsonschema.Schema{}, sections: map[string]*jsonschema.Schema{}}
	p.patterns = &patternBudget{left: MaxPlanPatternSize}
	p.patterns.compiling.Store(true)
	defer p.patterns.compiling.Store(false)
	h := sha256.New()
	schemas := 0 // over all documents
	for _, d := range docs {
		fmt.Fprintf(h, "%d:", len(d.Data))
		h.Write(d.Data)
		if err := p.compileDocument(d, &schemas); err != nil {
			return nil, err
		}
	}
	p.Events = len(p.track)
	if p.Events > MaxTrackEvents {
		return nil, fmt.Errorf("tracking plan: %d track events, at most %d", p.Events, MaxTrackEvents)
	}
	p.Hash = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return p, nil
}

func (p *Plan) compileDocument(d Document, schemas *int) error {
	fail := func(event string, err error) error { return &Error{Document: d.Name, Event: event, Err: err} }
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(d.Data))
	if err != nil {
		return fail("", fmt.Errorf("not JSON: %w", err))
	}
	root, ok := doc.(map[string]any)
	if !ok {
		return fail("", errors.New("must be a JSON object"))
	}
	for key, value := range root {
		if !slices.Contains(documentKeys, key) {
			return fail("", fmt.Errorf("unknown member %q; a plan document holds %s", key, strings.Join(documentKeys, ", ")))
		}
		if key == "$schema" && value != draft2020 && value != draft2020+"#" {
			return fail("", fmt.Errorf("$schema must be %s (draft 2020-12)", draft2020))
		}
	}
	if err := checkBounds(doc, schemas); err != nil {
		return fail("", err)
	}
	for _, section := range planSections {
		if _, ok := root[section]; ok && p.sections[section] != nil {
			return fail(section, errors.New("planned in more than one document"))
		}
	}
	base := "plan:///" + url.PathEscape(d.Name)
	var names []string
	if track, ok := root[SectionTrack]; ok {
		events, ok := track.(map[string]any)
		if !ok {
			return fail(SectionTrack, errors.New("must be an object mapping event names to schemas"))
		}
		names = slices.Sorted(maps.Keys(events))
		for _, name := range names {
			event := SectionTrack + "/" + name
			if name == "" {
				return fail(event, errors.New("an event name must not be empty"))
			}
			if _, dup := p.track[name]; dup {
				return fail(event, errors.New("planned in more than one document"))
			}
		}
		// The library clones its bookkeeping of a document (every location compiled so far) for
		// each location it has not seen as a subschema, so compiling the events one by one, at
		// track/<name>, costs time and memory quadratic in the plan (449 KB of 2,000 events: 8 s
		// and 1.7 GiB). Events that are subschemas of the document are seen at once: the same
		// document, its track events also under $defs (at a name the plan does not use), so
		// that $ref pointers and anchors resolve as before; $defs are not compiled unless used
		// (the root's own keywords, which would compile all of them in one queue the library
		// searches linearly, are not the place). Should that copy fail to compile, the events
		// are compiled one by one, as written, for the authoritative answer and an error that
		// names the event.
		// A document that names the place (say in a $ref, which would then resolve) takes the
		// slow way.
		defs, _ := root[keyDefs].(map[string]any)
		named := bytes.Contains(d.Data, []byte("track-events"))
		if len(names) > 1 && !named && (defs != nil || root[keyDefs] == nil) {
			aliased, aliasedDefs := maps.Clone(root), maps.Clone(defs)
			if aliasedDefs == nil {
				aliasedDefs = map[string]any{}
			}
			aliasedDefs[eventsDef] = map[string]any{keyDefs: events}
			aliased[keyDefs] = aliasedDefs
			left := p.patterns.left
			if track, sections, ok := compileSchemas(base, aliased, names, p.patterns); ok {
				maps.Copy(p.track, track)
				maps.Copy(p.sections, sections)
				return nil
			}
			p.patterns.left = left // compiled again below
		}
	}
	track, sections, err := compileSchemasOneByOne(base, doc, names, fail, p.patterns)
	if err != nil {
		return err
	}
	maps.Copy(p.track, track)
	maps.Copy(p.sections, sections)
	return nil
}

// planSections are the sections a plan document may hold besides track, checked in this order.
var planSections = []string{SectionIdentify, SectionGroup, SectionPage, SectionScreen, SectionContext}

// newPlanCompiler is a compiler holding the document doc at base, and nothing else.
func newPlanCompiler(base string, doc any, patterns *patternBudget) (*jsonschema.Compiler, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(refuseLoader{})
	c.UseRegexpEngine(patterns.compile)
	// A tracking plan's "format": "date-time" is meant to be enforced.
	c.AssertFormat()
	return c, c.AddResource(base, doc)
}

// eventsDef is where compileSchemas finds the track events in $defs.
const eventsDef = "segment-webhook-operator:track-events"

// compileSchemas compiles the track events names, found at $defs/<eventsDef>/$defs/<name> of the
// document root, and its sections; ok is false on any error.
func compileSchemas(base string, root map[string]any, names []string, patterns *patternBudget) (track, sections map[string]*jsonschema.Schema, ok bool) {
	c, err := newPlanCompiler(base, root, patterns)
	if err != nil {
		return nil, nil, false
	}
	track, sections = map[string]*jsonschema.Schema{}, map[string]*jsonschema.Schema{}
	for _, name := range names {
		if track[name], err = c.Compile(base + "#" + fragment(jsonPointer([]string{keyDefs, eventsDef, keyDefs, name}))); err != nil {
			return nil, nil, false
		}
	}
	for _, section := range planSections {
		if _, ok := root[section]; ok {
			if sections[section], err = c.Compile(base + "#" + fragment(jsonPointer([]string{section}))); err != nil {
				return nil, nil, false
			}
		}
	}
	return track, sections, true
}

// compileSchemasOneByOne compiles the track events names and the sections of doc, each at its
// own location; an error names the first event or section that does not compile.
func compileSchemasOneByOne(base string, doc any, names []string, fail func(event string, err error) error, patterns *patternBudget) (track, sections map[string]*jsonschema.Schema, err error) {
	c, err := newPlanCompiler(base, doc, patterns)
	if err != nil {
		return nil, nil, fail("", err)
	}
	compile := func(event string, tokens ...string) (*jsonschema.Schema, error) {
		s, err := c.Compile(base + "#" + fragment(jsonPointer(tokens)))
		if err != nil {
			return nil, fail(event, err)
		}
		return s, nil
	}
	track, sections = map[string]*jsonschema.Schema{}, map[string]*jsonschema.Schema{}
	for _, name := range names {
		if track[name], err = compile(SectionTrack+"/"+name, SectionTrack, name); err != nil {
			return nil, nil, err
		}
	}
	root := doc.(map[string]any)
	for _, section := range planSections {
		if _, ok := root[section]; !ok {
			continue
		}
		if sections[section], err = compile(section, section); err != nil {
			return nil, nil, err
		}
	}
	return track, sections, nil
}

// checkBounds walks a document once, before the compiler sees it, and refuses what would make
// compiling or checking unbounded. schemas counts the objects of every document so far.
func checkBounds(doc any, schemas *int) error {
	refs := 0
	var walk func(v any, depth int) error
	walk = func(v any, depth int) error {
		if depth > MaxDepth {
			return fmt.Errorf("nested deeper than %d levels", MaxDepth)
		}
		switch v := v.(type) {
		case map[string]any:
			if *schemas++; *schemas > MaxSchemas {
				return fmt.Errorf("more than %d schemas (JSON objects) in the plan", MaxSchemas)
			}
			if len(v) > MaxMembers {
				return fmt.Errorf("an object of %d members, more than %d in one of its schemas", len(v), MaxMembers)
			}
			for key, child := range v {
				switch key {
				case "$ref", "$dynamicRef":
					if refs++; refs > MaxRefs {
						return fmt.Errorf("more than %d $ref", MaxRefs)
					}
				case "enum":
					if values, ok := child.([]any); ok && len(values) > MaxEnum {
						return fmt.Errorf("an enum of %d values, at most %d", len(values), MaxEnum)
					}
				}
				if err := walk(child, depth+1); err != nil {
					return err
				}
			}
		case []any:
			for _, child := range v {
				if err := walk(child, depth+1); err != nil {
					return err
				}
			}
		case json.Number:
			if problem := numberProblem(string(v)); problem != "" {
				return errors.New(problem)
			}
		}
		return nil
	}
	return walk(doc, 0)
}

// numberProblem says why a JSON number is too costly to compare ("" when it is not).
func numberProblem(n string) string {
	if len(n) > MaxNumberLength {
		return fmt.Sprintf("a number of %d characters, at most %d", len(n), MaxNumberLength)
	}
	if i := strings.IndexAny(n, "eE"); i >= 0 {
		exp, err := strconv.Atoi(strings.TrimPrefix(n[i+1:], "+"))
		if err != nil || exp > MaxExponent || exp < -MaxExponent {
			return fmt.Sprintf("a number with exponent %s, beyond ±%d", n[i+1:], MaxExponent)
		}
	}
	return ""
}

// refuseLoader loads nothing: a plan may not read files or reach the network.
type refuseLoader struct{}

func (refuseLoader) Load(u string) (any, error) {
	return nil, fmt.Errorf("%s: a plan's $ref must stay within its own document", u)
}

// patternBudget is a plan's regexp engine: the library's default, Go's regexp (RE2, linear time),
// with bounds on each pattern (MaxPattern, MaxPatternSize) and, while the plan compiles, on all
// of them together (MaxPlanPatternSize). Once compiled, the plan calls it only to check event
// values under "format": "regex", which need only be valid: those are parsed, not compiled
// (compiling a value of MaxPatternSize allocates 700 KB).
type patternBudget struct {
	left      int // while compiling only
	compiling atomic.Bool
}

func (b *patternBudget) compile(s string) (jsonschema.Regexp, error) {
	if len(s) > MaxPattern {
		return nil, fmt.Errorf("a pattern of %d bytes, at most %d", len(s), MaxPattern)
	}
	re, err := syntax.Parse(s, syntax.Perl)
	if err != nil {
		return nil, err
	}
	n := patternSize(re)
	if n > MaxPatternSize {
		return nil, fmt.Errorf("a pattern of size %d once its repetitions are unrolled, at most %d", n, MaxPatternSize)
	}
	if !b.compiling.Load() {
		return &parsedRegexp{pattern: s}, nil
	}
	if n > b.left {
		return nil, fmt.Errorf("the plan's patterns are larger than %d together, once their repetitions are unrolled", MaxPlanPatternSize)
	}
	b.left -= n
	return regexp.Compile(s)
}

// parsedRegexp is a pattern known to be valid and within the bounds, compiled only if it is ever
// matched (a format check only asks whether it is valid).
type parsedRegexp struct {
	pattern string
	once    sync.Once
	re      *regexp.Regexp
}

func (r *parsedRegexp) String() string { return r.pattern }

func (r *parsedRegexp) MatchString(s string) bool {
	r.once.Do(func() { r.re = regexp.MustCompile(r.pattern) })
	return r.re.MatchString(s)
}

// patternSize estimates the instructions re compiles to, repetitions unrolled, without unrolling
// them (parsing keeps x{1000} as one node); it saturates past MaxPatternSize.
func patternSize(re *syntax.Regexp) int {
	n := 1
	switch re.Op {
	case syntax.OpLiteral:
		n = max(1, len(re.Rune))
	case syntax.OpConcat, syntax.OpAlternate:
		n = len(re.Sub)
		for _, sub := range re.Sub {
			n += patternSize(sub)
		}
	case syntax.OpCapture:
		n = 2 + patternSize(re.Sub[0])
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest:
		n = 1 + patternSize(re.Sub[0])
	case syntax.OpRepeat:
		// x{n,m} unrolls to m copies of x, m-n of them optional (one more instruction each);
		// x{n,} to n copies and a star.
		copies, optional := re.Max, re.Max-re.Min
		if re.Max < 0 {
			copies, optional = re.Min+1, 1
		}
		n = patternSize(re.Sub[0])*max(copies, 1) + optional
	}
	return min(n, MaxPatternSize+1)
}

// Violation is one way an event breaks its plan.
type Violation struct {
	// Pointer locates the offending value in the event (RFC 6901), such as "/properties/price".
	Pointer string `json:"pointer"`
	// Keyword is the schema keyword that failed, such as "type" or "required".
	Keyword string `json:"keyword"`
	// Message is the compiler's explanation. It may quote the event's values: keep it out of
	// info logs.
	Message string `json:"message"`
	// omit is the top-level member of the checked object to drop for OmitProperties, if any.
	omit []string
}

// Result is what the plan says about one event.
type Result struct {
	// Unplanned is a track event whose name the plan does not know.
	Unplanned bool
	// Violations, empty when the event follows its plan: the first MaxViolations.
	Violations []Violation
	// Total counts the violations, listed or not.
	Total int
	// omit holds every member to drop for OmitProperties, listed or not; omitSet dedupes it.
	omit    [][2]string
	omitSet map[[2]string]struct{}
	// unrepairable counts the violations omitting cannot repair, listed or not.
	unrepairable int
}

// add records a violation: listed while there is room, counted always.
func (r *Result) add(v Violation) {
	r.Total++
	if v.omit == nil {
		r.unrepairable++
	} else {
		r.addOmit(v.omit[0], v.omit[1])
	}
	if len(r.Violations) < MaxViolations {
		r.Violations = append(r.Violations, v)
	}
}

func (r *Result) addOmit(member, name string) {
	key := [2]string{member, name}
	if r.omitSet == nil {
		r.omitSet = map[[2]string]struct{}{}
	} else if hasKey(r.omitSet, key) {
		return
	}
	r.omitSet[key] = struct{}{}
	r.omit = append(r.omit, key)
}

func hasKey(m map[[2]string]struct{}, k [2]string) bool {
	_, ok := m[k]
	return ok
}

// Event holds the raw members of an event the plan looks at (nil when absent).
type Event struct {
	Type, Name                  string
	Properties, Traits, Context []byte
}

// Check validates an event's members against their schemas.
func (p *Plan) Check(ev Event) Result {
	var r Result
	var schema *jsonschema.Schema
	member, known := sectionObject[ev.Type]
	switch {
	case ev.Type == SectionTrack:
		if schema = p.track[ev.Name]; schema == nil {
			r.Unplanned = true
		}
	case known:
		schema = p.sections[ev.Type]
	}
	if schema != nil {
		raw := ev.Properties
		if member == "traits" {
			raw = ev.Traits
		}
		check(schema, member, raw, &r)
	}
	if s := p.sections[SectionContext]; s != nil {
		check(s, "context", ev.Context, &r)
	}
	return r
}

// Omissions lists the members to drop, as paths from the event's root, for OmitProperties: a
// property that fails its schema, or that the schema does not allow, each once, listed or not.
// Violations without one (a missing required property, say) cannot be repaired by omitting:
// rest lists those of r.Violations, unrepairable counts them all.
func (r *Result) Omissions() (paths [][2]string, rest []Violation, unrepairable int) {
	for _, v := range r.Violations {
		if v.omit == nil {
			rest = append(rest, v)
		}
	}
	return r.omit, rest, r.unrepairable
}

var printer = message.NewPrinter(language.English)

// check validates raw (the member's JSON, nil when absent) and adds the violations found to r.
// An absent or null member is checked as an empty object, so "required" still applies. A member
// over MaxCheckedBytes is not checked; values past the bounds (see unmarshal) are violations of
// their own, checked as null, and the schema's violations at the same place are not repeated.
func check(schema *jsonschema.Schema, member string, raw []byte, r *Result) {
	var value any = map[string]any{}
	var hostile []Violation
	if len(raw) > MaxCheckedBytes {
		r.add(Violation{Pointer: "/" + member, Keyword: "size",
			Message: fmt.Sprintf("%d bytes, more than the %d a tracking plan checks", len(raw), MaxCheckedBytes)})
		return
	}
	if len(raw) > 0 && string(raw) != "null" {
		v, found, err := unmarshal(raw, member)
		if err == errTooManyValues {
			r.add(Violation{Pointer: "/" + member, Keyword: "size", Message: err.Error()})
			return
		}
		if err != nil {
			// The decoder has already validated the JSON; this cannot happen.
			r.add(Violation{Pointer: "/" + member, Keyword: "type", Message: err.Error()})
			return
		}
		value, hostile = v, found
	}
	for _, v := range hostile {
		r.add(v)
	}
	err := schema.Validate(value)
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return
	}
	var skip map[string]bool
	if len(hostile) > 0 {
		skip = make(map[string]bool, len(hostile))
		for _, v := range hostile {
			skip[v.Pointer] = true
		}
	}
	addLeaves(r, member, verr, skip)
}

var decoders = sync.Pool{New: func() any { return new(jsontext.Decoder) }}

// unmarshal builds the value the validator reads, as jsonschema.UnmarshalJSON does (maps, slices,
// strings, json.Number so numbers stay exact, bools, nil), with the tokenizer the receiver
// decodes with: twice as fast as encoding/json's reflection, which was a third of a check.
// Numbers past MaxNumberLength or MaxExponent, and values nested deeper than MaxCheckedDepth,
// are read as null and returned as violations (hostile), so no check pays for them.
func unmarshal(raw []byte, member string) (any, []Violation, error) {
	dec := decoders.Get().(*jsontext.Decoder)
	defer decoders.Put(dec)
	// Duplicate names and invalid UTF-8 pass, as in the receiver's decoder (the last name wins).
	dec.Reset(bytes.NewBuffer(raw), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	defer dec.Reset(bytes.NewBuffer(nil))
	u := unmarshaler{dec: dec, path: []step{{name: member}}}
	v, err := u.value()
	if err == nil && dec.PeekKind() != 0 {
		err = errors.New("data after the JSON value")
	}
	return v, u.hostile, err
}

type unmarshaler struct {
	dec     *jsontext.Decoder
	path    []step // from the member to the value being read
	values  int
	hostile []Violation
}

// step is a member's name, or an array's index (name "", formatted only for a violation).
type step struct {
	name  string
	index int
}

var errTooManyValues = fmt.Errorf("more than %d values, not checked", MaxCheckedValues)

// refuse records the value being read as a violation; the first MaxViolations only, since a
// Result lists no more (each still reads as null).
func (u *unmarshaler) refuse(keyword, msg string) {
	if len(u.hostile) == MaxViolations {
		return
	}
	tokens := make([]string, len(u.path))
	for i, s := range u.path {
		if tokens[i] = s.name; i > 0 && s.name == "" {
			tokens[i] = strconv.Itoa(s.index)
		}
	}
	v := Violation{Pointer: jsonPointer(tokens), Keyword: keyword, Message: msg}
	if len(tokens) > 1 {
		v.omit = tokens[:2:2]
	}
	u.hostile = append(u.hostile, v)
}

func (u *unmarshaler) value() (any, error) {
	dec := u.dec
	if u.values++; u.values > MaxCheckedValues {
		return nil, errTooManyValues
	}
	if depth := len(u.path) - 1; depth >= MaxCheckedDepth && (dec.PeekKind() == '{' || dec.PeekKind() == '[') {
		u.refuse("depth", fmt.Sprintf("nested deeper than %d levels, not checked", MaxCheckedDepth))
		return nil, dec.SkipValue()
	}
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case '{':
		obj := map[string]any{}
		for dec.PeekKind() != '}' {
			name, err := dec.ReadToken()
			if err != nil {
				return nil, err
			}
			key := name.String()
			u.path = append(u.path, step{name: key})
			obj[key], err = u.value()
			u.path = u.path[:len(u.path)-1]
			if err != nil {
				return nil, err
			}
		}
		_, err = dec.ReadToken()
		return obj, err
	case '[':
		arr := []any{}
		for dec.PeekKind() != ']' {
			u.path = append(u.path, step{index: len(arr)})
			v, err := u.value()
			u.path = u.path[:len(u.path)-1]
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		_, err = dec.ReadToken()
		return arr, err
	case '"':
		return tok.String(), nil
	case '0':
		n := tok.String()
		if problem := numberProblem(n); problem != "" {
			u.refuse("number", problem+", not checked")
			return nil, nil
		}
		return json.Number(n), nil
	case 't', 'f':
		return tok.Bool(), nil
	}
	return nil, nil // null
}

// addLeaves flattens the error tree into its leaves, the violations a person can act on, but
// those at a pointer in skip (already reported).
func addLeaves(r *Result, member string, e *jsonschema.ValidationError, skip map[string]bool) {
	if len(e.Causes) > 0 {
		for _, c := range e.Causes {
			addLeaves(r, member, c, skip)
		}
		return
	}
	if len(r.Violations) == MaxViolations && skip == nil && !isAdditional(e) { // counted only
		r.Total++
		if len(e.InstanceLocation) > 0 {
			r.addOmit(member, e.InstanceLocation[0])
		} else {
			r.unrepairable++
		}
		return
	}
	loc := append([]string{member}, e.InstanceLocation...)
	v := Violation{Pointer: jsonPointer(loc), Keyword: keyword(e)}
	if extra, ok := e.ErrorKind.(*kind.AdditionalProperties); ok {
		// One violation per property, so each can be omitted on its own; sorted, since the library
		// lists them in map order and the same event must get the same answer and headers.
		for _, name := range slices.Sorted(slices.Values(extra.Properties)) {
			if len(r.Violations) == MaxViolations && skip == nil { // counted only: no pointer to build
				r.Total++
				if len(e.InstanceLocation) == 0 {
					r.addOmit(member, name)
				} else {
					r.unrepairable++
				}
				continue
			}
			v := v
			v.Pointer = jsonPointer(append(slices.Clip(loc), name))
			if skip[v.Pointer] {
				continue
			}
			v.Message = "not allowed by additionalProperties"
			if len(e.InstanceLocation) == 0 {
				v.omit = []string{member, name}
			}
			r.add(v)
		}
		return
	}
	if skip[v.Pointer] {
		return
	}
	if len(r.Violations) < MaxViolations { // a message only for those listed: they cost
		v.Message = e.ErrorKind.LocalizedString(printer)
	}
	if v.Keyword == "unevaluatedProperties" || v.Keyword == "unevaluatedItems" {
		v.Message = "not allowed by " + v.Keyword // rather than the library's "false schema"
	}
	if len(e.InstanceLocation) > 0 {
		v.omit = []string{member, e.InstanceLocation[0]}
	}
	r.add(v)
}

func isAdditional(e *jsonschema.ValidationError) bool {
	_, ok := e.ErrorKind.(*kind.AdditionalProperties)
	return ok
}

// keyword names the schema keyword that failed. A false schema is named by where it stands
// when that is unevaluatedProperties or unevaluatedItems, the usual ways to close a schema.
func keyword(e *jsonschema.ValidationError) string {
	if path := e.ErrorKind.KeywordPath(); len(path) > 0 {
		return path[0]
	}
	switch e.ErrorKind.(type) {
	case *kind.RefCycle:
		return "$ref"
	case *kind.FalseSchema:
		for _, k := range []string{"unevaluatedProperties", "unevaluatedItems"} {
			if strings.HasSuffix(e.SchemaURL, "/"+k) {
				return k
			}
		}
		return "false"
	}
	return "schema"
}

// jsonPointer joins reference tokens into a JSON pointer, escaping "~" and "/" (RFC 6901).
func jsonPointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1"))
	}
	return b.String()
}

// Summary renders violations for a header or attribute: "pointer keyword" pairs, comma
// separated, pointers in URI fragment form (RFC 6901, section 6) so no value can break a header
// line. It carries no messages, hence no event values, and stops after limit violations; total
// counts those not listed too (at least len(violations)).
func Summary(violations []Violation, total, limit int) string {
	total = max(total, len(violations))
	var b strings.Builder
	for i, v := range violations {
		if i == limit {
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(fragment(v.Pointer))
		b.WriteByte(' ')
		b.WriteString(v.Keyword)
	}
	if shown := min(len(violations), limit); total > shown {
		fmt.Fprintf(&b, ", and %d more", total-shown)
	}
	return b.String()
}

// fragment percent-encodes a JSON pointer as a URI fragment, token by token (RFC 6901, section 6).
func fragment(ptr string) string {
	tokens := strings.Split(ptr, "/")[1:]
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(t))
	}
	return b.String()
}
