package e2e

import (
	"context"
	"testing"
	"time"

	"herald/deploy/stack"
	"herald/devtools/otlpcatch"
)

// TestOneConnectedTracePerJob runs a job with every service exporting
// spans and checks that the job's spans form one trace, connected from the
// API request through planning and every stage to the provider call.
func TestOneConnectedTracePerJob(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	collector, err := otlpcatch.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer collector.Close()
	st := startStack(t, stack.Options{TraceEndpoint: collector.URL(), Flags: map[string][]string{"ingest": {"-batch-size=100"}}})
	tn := stack.DemoTenant{ID: "acme", Customers: 300, Items: 50, Seed: 61}
	job := loadAndRun(t, st, tn, "traced")
	// Every service names the job on its spans; wait for all of them.
	want := []string{"ingest", "recommend", "render", "dispatch"}
	var spans []otlpcatch.Span
	for {
		spans = collector.Spans()
		seen := map[string]bool{}
		for _, s := range spans {
			if s.Attributes["herald.job_id"] == job.ID {
				seen[s.Service] = true
			}
		}
		if len(seen) == len(want) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("spans naming the job came from %v; want %v", seen, want)
		case <-time.After(200 * time.Millisecond):
		}
	}
	time.Sleep(time.Second) // the last spans of each batch
	spans = collector.Spans()
	traces := map[string]bool{}
	for _, s := range spans {
		if s.Attributes["herald.job_id"] == job.ID {
			traces[s.TraceID] = true
		}
	}
	if len(traces) != 1 {
		t.Fatalf("the job's spans are in %d traces; want one", len(traces))
	}
	var trace string
	for id := range traces {
		trace = id
	}
	ids := map[string]otlpcatch.Span{}
	services := map[string]int{}
	names := map[string]int{}
	for _, s := range spans {
		if s.TraceID == trace {
			ids[s.SpanID] = s
			services[s.Service]++
			names[s.Service+": "+s.Name]++
		}
	}
	var roots []otlpcatch.Span
	for _, s := range ids {
		if s.ParentID == "" || s.ParentID == "0000000000000000" {
			roots = append(roots, s)
		} else if _, ok := ids[s.ParentID]; !ok {
			t.Fatalf("span %q of %s has a parent outside the trace: the trace is broken", s.Name, s.Service)
		}
	}
	t.Logf("job %s: one trace of %d spans: %v", job.ID, len(ids), names)
	if len(roots) != 1 || roots[0].Service != "ingest" {
		t.Fatalf("want one root, the API request in ingest; got %d roots: %+v", len(roots), roots)
	}
	for _, svc := range want {
		if services[svc] == 0 {
			t.Fatalf("no span of %s in the job's trace", svc)
		}
	}
	if names["dispatch: provider send"] == 0 {
		t.Fatal("no provider call in the job's trace")
	}
}
