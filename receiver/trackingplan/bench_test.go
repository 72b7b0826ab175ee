package trackingplan

import (
	"os"
	"testing"
)

// BenchmarkCheck validates one Order Completed event (properties and context, as the load
// generator of make bench-receiver sends it) against the 50-event plan of make bench-receiver.
func BenchmarkCheck(b *testing.B) {
	data, err := os.ReadFile("../../hack/bench/trackingplan-50.json")
	if err != nil {
		b.Fatal(err)
	}
	p := mustCompile(b, Document{Name: "trackingplan-50.json", Data: data})
	if p.Events != 50 {
		b.Fatalf("%d events planned, want 50", p.Events)
	}
	ev := Event{Type: "track", Name: "Order Completed",
		Properties: []byte(`{"currency":"EUR","orderId":"o-7","products":[{"name":"Crème brûlée","price":7.5,"quantity":2,"sku":"cb-1"},{"name":"Café","price":2.5,"quantity":1,"sku":"cf-2"}],"revenue":17.5,"total":42.5}`),
		Context: []byte(`{"ip":"203.0.113.9","library":{"name":"analytics.js","version":"next-1.53.0"},"locale":"fr-FR",` +
			`"page":{"path":"/checkout","referrer":"https://www.example.com/cart","title":"Paiement – Boutique","url":"https://www.example.com/checkout"},` +
			`"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"}`)}
	if r := p.Check(ev); len(r.Violations) > 0 || r.Unplanned {
		b.Fatalf("the event breaks the plan: %+v", r)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.Check(ev)
	}
}

// BenchmarkCompileHostilePlan compiles (refuses) the 4.4 KB plan of 100 properties with a
// minimum of 1e1000000: it must cost about what parsing 4.4 KB costs.
func BenchmarkCompileHostilePlan(b *testing.B) {
	doc := []Document{{Name: "plan.json", Data: hostileNumbers()}}
	b.ReportAllocs()
	for b.Loop() {
		Compile(doc) //nolint:errcheck // the error is the point
	}
}
