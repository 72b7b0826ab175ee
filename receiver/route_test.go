package receiver

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

func TestFilter(t *testing.T) {
	track := &Event{Type: "track", Name: "Order Completed"}
	otherTrack := &Event{Type: "track", Name: "Page Scrolled"}
	identify := &Event{Type: "identify"}
	tests := []struct {
		name   string
		filter config.Filter
		want   []bool // track, otherTrack, identify
	}{
		{"empty selects all", config.Filter{}, []bool{true, true, true}},
		{"by type", config.Filter{EventTypes: []string{"identify"}}, []bool{false, false, true}},
		{"track names let other types pass", config.Filter{TrackEvents: []string{"Order Completed"}}, []bool{true, false, true}},
		{"both", config.Filter{EventTypes: []string{"track"}, TrackEvents: []string{"Order Completed"}}, []bool{true, false, false}},
	}
	for _, tt := range tests {
		f := tt.filter
		got := []bool{f.Matches(track.Type, track.Name), f.Matches(otherTrack.Type, otherTrack.Name), f.Matches(identify.Type, identify.Name)}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestDropField(t *testing.T) {
	tests := []struct {
		name, in, path, want string
		changed              bool
	}{
		{"top level", `{"a":1,"b":2,"c":3}`, "b", `{"a":1,"c":3}`, true},
		{"first", `{"a":1,"b":2}`, "a", `{"b":2}`, true},
		{"last", `{"a":1,"b":2}`, "b", `{"a":1}`, true},
		{"only", `{"a":1}`, "a", `{}`, true},
		{"nested keeps bytes", `{"type":"track", "context":{"ip":"1.2.3.4", "locale":"fr-FR"},"n":1.50}`, "context.ip", `{"type":"track","context":{"locale":"fr-FR"},"n":1.50}`, true},
		{"deep", `{"a":{"b":{"c":1,"d":2}}}`, "a.b.c", `{"a":{"b":{"d":2}}}`, true},
		{"missing", `{"a":1}`, "z", `{"a":1}`, false},
		{"missing nested", `{"context":{"x":1}}`, "context.ip", `{"context":{"x":1}}`, false},
		{"through a non-object", `{"context":"1.2.3.4"}`, "context.ip", `{"context":"1.2.3.4"}`, false},
		{"escaped key", `{"\u0069p":"x","k":"\"\\<>"}`, "ip", `{"k":"\"\\<>"}`, true},
		{"duplicate keys all go", `{"ip":1,"a":2,"ip":3}`, "ip", `{"a":2}`, true},
		{"whole object value", `{"context":{"ip":"x"},"z":[1,{"ip":2}]}`, "context", `{"z":[1,{"ip":2}]}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, changed, err := dropField([]byte(tt.in), strings.Split(tt.path, "."))
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tt.want || changed != tt.changed {
				t.Fatalf("got %s (changed %v), want %s (changed %v)", out, changed, tt.want, tt.changed)
			}
			if !json.Valid(out) {
				t.Fatalf("output is not valid JSON: %s", out)
			}
		})
	}
}

func TestFieldDropperLeavesInputAlone(t *testing.T) {
	raw := `{"type":"identify","context":{"ip":"1.2.3.4"},"traits":{"email":"x@example.com"}}`
	ev := Event{Raw: []byte(raw)}
	out, err := newFieldDropper([]string{"context.ip", "traits.email"}).apply(ev)
	if err != nil {
		t.Fatal(err)
	}
	if string(out.Raw) != `{"type":"identify","context":{},"traits":{}}` || string(ev.Raw) != raw {
		t.Fatalf("got %s, input now %s", out.Raw, ev.Raw)
	}
}
