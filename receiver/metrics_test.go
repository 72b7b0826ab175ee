package receiver

import (
	"maps"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// Both metrics that hold an event type bound it by the same rule: unknown types (Lenient mode)
// are "other".
func TestEventTypeLabelsAreBoundedByOneRule(t *testing.T) {
	m := newMetrics(prometheus.NewRegistry())
	m.event("custom.thing").Inc()
	m.event("made-up").Inc()
	m.event("identify").Inc()
	if got := counterValue(t, m.events.WithLabelValues(otherType)); got != 2 {
		t.Errorf("events_total{type=other} = %v, want 2", got)
	}
	if got := counterValue(t, m.events.WithLabelValues("identify")); got != 1 {
		t.Errorf("events_total{type=identify} = %v, want 1", got)
	}
	for _, c := range []struct {
		ev        Event
		unplanned bool
		want      string
	}{
		{Event{Type: "custom.thing"}, false, otherType},
		{Event{Type: "identify"}, false, "identify"},
		{Event{Type: "track", Name: "Order Completed"}, false, "Order Completed"},
		{Event{Type: "track", Name: "Anything"}, true, "unplanned"},
	} {
		if got := planEventLabel(&c.ev, c.unplanned); got != c.want {
			t.Errorf("planEventLabel(%s %q, unplanned %v) = %q, want %q", c.ev.Type, c.ev.Name, c.unplanned, got, c.want)
		}
	}
}

// Every dead-letter reason is a series from the start (0, not absent), and counts its own letters.
func TestDeadLetteredByReason(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	m.deadLetter(ReasonRefused)
	m.deadLetter(ReasonRefused)
	m.deadLetter(ReasonTrackingPlan)
	want := map[string]float64{ReasonInvalid: 0, ReasonRefused: 2, ReasonTrackingPlan: 1, ReasonMalformed: 0}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() == "segment_receiver_dead_lettered_events_total" {
			for _, s := range f.GetMetric() {
				got[s.GetLabel()[0].GetValue()] = s.GetCounter().GetValue()
			}
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("dead_lettered_events_total = %v, want %v", got, want)
	}
}
