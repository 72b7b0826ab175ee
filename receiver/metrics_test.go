package receiver

import (
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
	m.event("custom.thing")
	m.event("made-up")
	m.event("identify")
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
