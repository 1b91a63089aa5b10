package e2e

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"herald/deploy/stack"
)

// scrape reads a service's /metrics into series → value ("name{labels}").
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	series := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		series[line[:i]] = v
	}
	return series
}

// sum adds the series of metric name whose labels contain every given
// label="value" pair.
func sum(series map[string]float64, name string, labels ...string) (float64, bool) {
	var total float64
	found := false
	for k, v := range series {
		base, rest, _ := strings.Cut(k, "{")
		if base != name {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				ok = false
			}
		}
		if ok {
			total += v
			found = true
		}
	}
	return total, found
}

// TestEveryServiceReportsItsMetrics runs a job, scrapes every service, and
// checks that the metrics operators and alerts rely on exist and moved.
func TestEveryServiceReportsItsMetrics(t *testing.T) {
	st := startStack(t, stack.Options{Flags: map[string][]string{"dispatch": {"-mailbox-rates=other=5000"}}})
	tn := stack.DemoTenant{ID: "acme", Customers: 400, Items: 50, Seed: 67}
	job := loadAndRun(t, st, tn, "metrics")
	want, _ := expected(tn)
	time.Sleep(500 * time.Millisecond) // the last acks
	type check struct {
		name   string
		labels []string
		min    float64
	}
	checks := map[string][]check{
		"ingest": {
			{"herald_ingest_requests_total", []string{`route="POST /v1/jobs"`, `code="202"`}, 1},
			{"herald_ingest_request_duration_seconds_count", nil, 1},
			{"herald_planner_batches_published_total", nil, 1},
			{"herald_planner_recipients_published_total", nil, float64(job.Planned)},
			{"herald_planner_jobs_planned_total", nil, 1},
			{"herald_planner_batches_redriven_total", nil, 0},
			{"herald_published_messages_total", []string{`topic="herald-recommend"`}, 1},
		},
		"recommend": {
			{"herald_stage_messages_total", []string{`stage="recommend"`, `outcome="acked"`}, 1},
			{"herald_stage_messages_total", []string{`outcome="dead_lettered"`}, 0},
			{"herald_stage_wait_seconds_count", nil, 1},
			{"herald_stage_handle_seconds_count", nil, 1},
			{"herald_stage_lag_seconds", nil, 0},
			{"herald_stage_in_flight", nil, 0},
			{"herald_recommend_recipients_total", nil, float64(job.Planned)},
			{"herald_published_messages_total", []string{`topic="herald-render"`}, 1},
		},
		"render": {
			{"herald_stage_messages_total", []string{`stage="render"`, `outcome="acked"`}, 1},
			{"herald_published_bytes_total", []string{`topic="herald-dispatch"`}, 1},
		},
		"dispatch": {
			{"herald_stage_messages_total", []string{`stage="dispatch"`, `outcome="acked"`}, 1},
			{"herald_dispatch_outcomes_total", []string{`state="sent"`}, float64(len(want))},
			{"herald_dispatch_outcomes_total", []string{`state="suppressed"`}, 1},
			{"herald_delivery_latency_seconds_count", []string{`tenant="acme"`, `channel="email"`}, float64(len(want))},
			{"herald_sla_deliveries_total", []string{`result="in_time"`}, float64(len(want))},
			{"herald_dispatch_send_duration_seconds_count", nil, 1},
			{"herald_provider_breaker_state", nil, 0},
			{"herald_ratelimit_rate", []string{`bucket="mailbox:`}, 1},
		},
	}
	for svc, cs := range checks {
		series := scrape(t, st.Addr(svc))
		if _, ok := series["go_goroutines"]; !ok {
			t.Errorf("%s: no Go runtime metrics", svc)
		}
		for _, c := range cs {
			v, ok := sum(series, c.name, c.labels...)
			switch {
			case !ok:
				t.Errorf("%s: no %s%v", svc, c.name, c.labels)
			case v < c.min:
				t.Errorf("%s: %s%v = %g, want at least %g", svc, c.name, c.labels, v, c.min)
			}
		}
	}
}
