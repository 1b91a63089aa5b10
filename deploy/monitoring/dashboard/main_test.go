package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"herald/deploy/monitoring"
)

const committed = "../dashboards/herald.json"

// TestCommittedDashboardIsCurrent fails when herald.go was changed without
// regenerating the committed JSON, or the JSON was edited by hand.
func TestCommittedDashboardIsCurrent(t *testing.T) {
	want, err := dashboardJSON()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(committed)
	if err != nil {
		t.Fatalf("read committed dashboard: %v (run go generate ./deploy/monitoring/...)", err)
	}
	if !bytes.Equal(got, want) {
		diff := cmp.Diff(strings.Split(string(want), "\n"), strings.Split(string(got), "\n"))
		t.Errorf("%s is stale: run go generate ./deploy/monitoring/... and commit it (-generated +committed):\n%s", committed, diff)
	}
}

// The parts of Grafana's dashboard JSON the checks below read.
type (
	grafanaDashboard struct {
		Panels     []grafanaPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	grafanaPanel struct {
		ID      int    `json:"id"`
		Type    string `json:"type"`
		Title   string `json:"title"`
		GridPos struct {
			X, Y, W, H int
		} `json:"gridPos"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []grafanaPanel `json:"panels"` // a collapsed row's
	}
)

func loadCommitted(t *testing.T) grafanaDashboard {
	t.Helper()
	b, err := os.ReadFile(committed)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("decode %s: %v", committed, err)
	}
	return d
}

// panels flattens rows: the panels of the dashboard in layout order, rows
// excluded.
func (d grafanaDashboard) panels() []grafanaPanel {
	var out []grafanaPanel
	for _, p := range d.Panels {
		if p.Type == "row" {
			out = append(out, p.Panels...)
			continue
		}
		out = append(out, p)
	}
	return out
}

// checkQuery is what every panel query must satisfy: it reads only metrics
// Herald (or the Pub/Sub exporter) exports, matches only labels they carry,
// and filters on the tenant variable wherever the series has a tenant label,
// so that choosing a tenant narrows every panel that can be narrowed.
func checkQuery(expr string, known map[string][]string) error {
	if err := monitoring.Check(expr, known); err != nil {
		return err
	}
	sels, err := monitoring.Selectors(expr)
	if err != nil {
		return err
	}
	if len(sels) == 0 {
		return fmt.Errorf("reads no series")
	}
	for _, s := range sels {
		if slices.Contains(known[s.Metric], "tenant") && !strings.Contains(expr, `tenant=~"$tenant"`) {
			return fmt.Errorf("%s has a tenant label but the query ignores the tenant variable", s.Metric)
		}
		if slices.Contains(known[s.Metric], "tenant") && !slices.Contains(s.Labels, "tenant") {
			return fmt.Errorf("selector of %s does not match on tenant", s.Metric)
		}
	}
	return nil
}

func TestPanelQueriesUseOnlyHeraldMetrics(t *testing.T) {
	known := monitoring.Series(monitoring.Herald(), monitoring.PubSub())
	d := loadCommitted(t)
	panels := d.panels()
	if len(panels) == 0 {
		t.Fatal("dashboard has no panels")
	}
	for _, p := range panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		for _, q := range p.Targets {
			if err := checkQuery(q.Expr, known); err != nil {
				t.Errorf("panel %q: %v\n%s", p.Title, err, q.Expr)
			}
		}
	}
}

// TestCheckQueryCatchesMistakes shows the panel check is not vacuous.
func TestCheckQueryCatchesMistakes(t *testing.T) {
	known := monitoring.Series(monitoring.Herald(), monitoring.PubSub())
	for _, expr := range []string{
		`sum(rate(herald_sla_deliveries_total{result="in_time"}[5m]))`,                                  // tenant variable ignored
		`sum(rate(herald_sla_deliveries_total{result="in_time"}[5m])) + 0 * count({tenant=~"$tenant"})`, // no metric name
		`sum(rate(herald_delivered_total{tenant=~"$tenant"}[5m]))`,                                      // not a Herald metric
		`sum(rate(herald_dispatch_outcomes_total{tenant=~"$tenant"}[5m]))`,                              // no tenant label there
		`vector(1)`, // reads nothing
	} {
		if err := checkQuery(expr, known); err == nil {
			t.Errorf("checkQuery(%q) passed, want an error", expr)
		}
	}
}

// TestDashboardCoversTheSLAStory checks the dashboard still answers what ops
// ask during a send: each of these series is read by at least one panel.
func TestDashboardCoversTheSLAStory(t *testing.T) {
	read := map[string]bool{}
	for _, p := range loadCommitted(t).panels() {
		for _, q := range p.Targets {
			sels, err := monitoring.Selectors(q.Expr)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range sels {
				read[s.Metric] = true
			}
		}
	}
	for _, m := range []string{
		"herald_sla_deliveries_total",            // SLA attainment per tenant
		"herald_delivery_latency_seconds_bucket", // submit-to-delivered percentiles
		"herald_delivery_latency_seconds_count",  // delivered per tenant
		"herald_stage_lag_seconds",               // stage lag
		"herald_stage_in_flight",                 // in flight
		"herald_dispatch_outcomes_total",         // throughput per receiver, outcomes by state
		"herald_provider_errors_total",           // provider errors
		"herald_provider_breaker_state",          // breakers
		"herald_ratelimit_rate",                  // rate-limit headroom
		"herald_stage_messages_total",            // dead letters per stage
	} {
		if !read[m] {
			t.Errorf("no panel reads %s", m)
		}
	}
}

func TestTenantVariable(t *testing.T) {
	known := monitoring.Series(monitoring.Herald())
	labelValues := regexp.MustCompile(`^label_values\((\w+),\s*(\w+)\)$`)
	var found bool
	for _, v := range loadCommitted(t).Templating.List {
		if v.Name != "tenant" {
			continue
		}
		found = true
		q, _ := v.Query.(string)
		m := labelValues.FindStringSubmatch(q)
		if v.Type != "query" || m == nil {
			t.Fatalf("tenant variable is a %s variable with query %v, want label_values(metric, tenant)", v.Type, v.Query)
		}
		if m[2] != "tenant" || !slices.Contains(known[m[1]], "tenant") {
			t.Errorf("tenant variable lists %s of %s, which Herald does not export", m[2], m[1])
		}
	}
	if !found {
		t.Error("dashboard has no tenant variable")
	}
}

func TestLayout(t *testing.T) {
	d := loadCommitted(t)
	ids := map[int]string{}
	for i, p := range d.Panels {
		if prev, dup := ids[p.ID]; dup || p.ID == 0 {
			t.Errorf("panel %q has id %d (also %q)", p.Title, p.ID, prev)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q is off the 24-column grid: %+v", p.Title, g)
		}
		for _, q := range d.Panels[:i] {
			h := q.GridPos
			if g.X < h.X+h.W && h.X < g.X+g.W && g.Y < h.Y+h.H && h.Y < g.Y+g.H {
				t.Errorf("panels %q and %q overlap", q.Title, p.Title)
			}
		}
	}
}

func TestRunWritesTheDashboard(t *testing.T) {
	out := filepath.Join(t.TempDir(), "herald.json")
	if err := run([]string{"-out", out}, nil); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := dashboardJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("run -out wrote something other than the dashboard")
	}
	var stdout bytes.Buffer
	if err := run(nil, &stdout); err != nil || !bytes.Equal(stdout.Bytes(), want) {
		t.Errorf("run without -out: err %v, wrote %d bytes, want the dashboard (%d bytes)", err, stdout.Len(), len(want))
	}
	if err := run([]string{"extra"}, &stdout); err == nil {
		t.Error("run accepted a stray argument")
	}
}
