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
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

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
	// the input, so no pattern can backtrack catastrophically; the length bounds its compiled size.
	MaxPattern = 1000
	// MaxSchemas bounds the JSON objects (schemas, and keyword maps such as "properties") of all
	// documents together. The compiler's time grows with the square of a document's schemas:
	// 16,000 took seconds, 100,000 (a 1 MiB plan of empty schemas) minutes.
	MaxSchemas = 10000
	// MaxNumberLength bounds a number literal's characters, and MaxExponent its exponent: the
	// compiler keeps numbers as exact fractions (big.Rat), so 1e1000000 costs a million-digit
	// integer, 100 of them 65 MiB and seconds of CPU. float64 reaches 1.8e308.
	MaxNumberLength = 100
	MaxExponent     = 400
)

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
var documentKeys = []string{"$schema", "$comment", "description", "$defs",
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
	base := "plan:///" + url.PathEscape(d.Name)
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(refuseLoader{})
	c.UseRegexpEngine(boundedRegexp)
	// A tracking plan's "format": "date-time" is meant to be enforced.
	c.AssertFormat()
	if err := c.AddResource(base, doc); err != nil {
		return fail("", err)
	}
	compile := func(event string, tokens ...string) (*jsonschema.Schema, error) {
		s, err := c.Compile(base + "#" + fragment(jsonPointer(tokens)))
		if err != nil {
			return nil, fail(event, err)
		}
		return s, nil
	}
	if track, ok := root[SectionTrack]; ok {
		events, ok := track.(map[string]any)
		if !ok {
			return fail(SectionTrack, errors.New("must be an object mapping event names to schemas"))
		}
		names := make([]string, 0, len(events))
		for name := range events {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			event := SectionTrack + "/" + name
			if name == "" {
				return fail(event, errors.New("an event name must not be empty"))
			}
			if _, dup := p.track[name]; dup {
				return fail(event, errors.New("planned in more than one document"))
			}
			if p.track[name], err = compile(event, SectionTrack, name); err != nil {
				return err
			}
		}
	}
	for _, section := range []string{SectionIdentify, SectionGroup, SectionPage, SectionScreen, SectionContext} {
		if _, ok := root[section]; !ok {
			continue
		}
		if p.sections[section] != nil {
			return fail(section, errors.New("planned in more than one document"))
		}
		if p.sections[section], err = compile(section, section); err != nil {
			return err
		}
	}
	return nil
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
			return checkNumber(string(v))
		}
		return nil
	}
	return walk(doc, 0)
}

// checkNumber refuses a number literal (as written: the decoder keeps it as json.Number) longer
// than MaxNumberLength or with an exponent beyond ±MaxExponent, whatever keyword holds it.
func checkNumber(n string) error {
	if len(n) > MaxNumberLength {
		return fmt.Errorf("a number of %d characters, at most %d", len(n), MaxNumberLength)
	}
	i := strings.IndexAny(n, "eE")
	if i < 0 {
		return nil
	}
	exp, err := strconv.Atoi(n[i+1:]) // "+400" and "-400" parse
	if err != nil || exp > MaxExponent || exp < -MaxExponent {
		return fmt.Errorf("the number %s: an exponent beyond ±%d", n, MaxExponent)
	}
	return nil
}

// refuseLoader loads nothing: a plan may not read files or reach the network.
type refuseLoader struct{}

func (refuseLoader) Load(u string) (any, error) {
	return nil, fmt.Errorf("%s: a plan's $ref must stay within its own document", u)
}

// boundedRegexp is the library's default engine, Go's regexp (RE2, linear time), with a bound on
// the pattern's length.
func boundedRegexp(s string) (jsonschema.Regexp, error) {
	if len(s) > MaxPattern {
		return nil, fmt.Errorf("a pattern of %d bytes, at most %d", len(s), MaxPattern)
	}
	return regexp.Compile(s)
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
	// Violations, empty when the event follows its plan.
	Violations []Violation
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
		r.Violations = check(schema, member, raw, r.Violations)
	}
	if s := p.sections[SectionContext]; s != nil {
		r.Violations = check(s, "context", ev.Context, r.Violations)
	}
	return r
}

// Omissions lists the members to drop, as paths from the event's root, for OmitProperties: a
// property that fails its schema, or that the schema does not allow. Violations without one (a
// missing required property, say) cannot be repaired by omitting.
func Omissions(violations []Violation) (paths [][]string, rest []Violation) {
	for _, v := range violations {
		if v.omit == nil {
			rest = append(rest, v)
			continue
		}
		if !slices.ContainsFunc(paths, func(p []string) bool { return slices.Equal(p, v.omit) }) {
			paths = append(paths, v.omit)
		}
	}
	return paths, rest
}

var printer = message.NewPrinter(language.English)

// check validates raw (the member's JSON, nil when absent) and appends the violations found.
// An absent or null member is checked as an empty object, so "required" still applies.
func check(schema *jsonschema.Schema, member string, raw []byte, out []Violation) []Violation {
	var value any = map[string]any{}
	if len(raw) > 0 && string(raw) != "null" {
		v, err := unmarshal(raw)
		if err != nil {
			// The decoder has already validated the JSON; this cannot happen.
			return append(out, Violation{Pointer: "/" + member, Keyword: "type", Message: err.Error()})
		}
		value = v
	}
	err := schema.Validate(value)
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return out
	}
	return appendLeaves(out, member, verr)
}

var decoders = sync.Pool{New: func() any { return new(jsontext.Decoder) }}

// unmarshal builds the value the validator reads, as jsonschema.UnmarshalJSON does (maps, slices,
// strings, json.Number so numbers stay exact, bools, nil), with the tokenizer the receiver
// decodes with: twice as fast as encoding/json's reflection, which was a third of a check.
func unmarshal(raw []byte) (any, error) {
	dec := decoders.Get().(*jsontext.Decoder)
	defer decoders.Put(dec)
	// Duplicate names and invalid UTF-8 pass, as in the receiver's decoder (the last name wins).
	dec.Reset(bytes.NewBuffer(raw), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	defer dec.Reset(bytes.NewBuffer(nil))
	v, err := readValue(dec)
	if err == nil && dec.PeekKind() != 0 {
		err = errors.New("data after the JSON value")
	}
	return v, err
}

func readValue(dec *jsontext.Decoder) (any, error) {
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
			if obj[name.String()], err = readValue(dec); err != nil {
				return nil, err
			}
		}
		_, err = dec.ReadToken()
		return obj, err
	case '[':
		arr := []any{}
		for dec.PeekKind() != ']' {
			v, err := readValue(dec)
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
		return json.Number(tok.String()), nil
	case 't', 'f':
		return tok.Bool(), nil
	}
	return nil, nil // null
}

// appendLeaves flattens the error tree into its leaves, the violations a person can act on.
func appendLeaves(out []Violation, member string, e *jsonschema.ValidationError) []Violation {
	if len(e.Causes) > 0 {
		for _, c := range e.Causes {
			out = appendLeaves(out, member, c)
		}
		return out
	}
	loc := append([]string{member}, e.InstanceLocation...)
	v := Violation{Pointer: jsonPointer(loc), Keyword: keyword(e), Message: e.ErrorKind.LocalizedString(printer)}
	if extra, ok := e.ErrorKind.(*kind.AdditionalProperties); ok {
		// One violation per property, so each can be omitted on its own; sorted, since the library
		// lists them in map order and the same event must get the same answer and headers.
		for _, name := range slices.Sorted(slices.Values(extra.Properties)) {
			v := v
			v.Pointer = jsonPointer(append(slices.Clip(loc), name))
			v.Message = "not allowed by additionalProperties"
			if len(e.InstanceLocation) == 0 {
				v.omit = []string{member, name}
			}
			out = append(out, v)
		}
		return out
	}
	if v.Keyword == "unevaluatedProperties" || v.Keyword == "unevaluatedItems" {
		v.Message = "not allowed by " + v.Keyword // rather than the library's "false schema"
	}
	if len(e.InstanceLocation) > 0 {
		v.omit = []string{member, e.InstanceLocation[0]}
	}
	return append(out, v)
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
// line. It carries no messages, hence no event values, and stops after max violations.
func Summary(violations []Violation, max int) string {
	var b strings.Builder
	for i, v := range violations {
		if i == max {
			fmt.Fprintf(&b, ", and %d more", len(violations)-max)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(fragment(v.Pointer))
		b.WriteByte(' ')
		b.WriteString(v.Keyword)
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
