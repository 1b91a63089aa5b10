package monitoring

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestSelectors(t *testing.T) {
	tests := []struct {
		name string
		expr string
		want []Selector
	}{
		{
			name: "bare metric",
			expr: `herald_stage_in_flight`,
			want: []Selector{{Metric: "herald_stage_in_flight"}},
		},
		{
			name: "aggregation with grouping before and after, range with Grafana variable",
			expr: `sum by (tenant) (rate(herald_sla_deliveries_total{tenant=~"$tenant", result="in_time"}[$__rate_interval]))
			       / sum(rate(herald_sla_deliveries_total{tenant=~"$tenant"}[$__rate_interval])) without (channel)`,
			want: []Selector{
				{Metric: "herald_sla_deliveries_total", Labels: []string{"tenant", "result"}},
				{Metric: "herald_sla_deliveries_total", Labels: []string{"tenant"}},
			},
		},
		{
			name: "histogram quantile, le in grouping is not a metric",
			expr: `histogram_quantile(0.99, sum by (le, stage) (rate(herald_stage_wait_seconds_bucket[5m])))`,
			want: []Selector{{Metric: "herald_stage_wait_seconds_bucket"}},
		},
		{
			name: "recording rules, set operators, vector matching, offset, bool",
			expr: `(1 - herald:sla_in_time:ratio_rate1h) > bool (14.4 * 0.001)
			       and on (stage) group_left (provider) x_total offset 15m
			       unless ignoring(instance) y_total @ 1700000000 or vector(0)`,
			want: []Selector{{Metric: "herald:sla_in_time:ratio_rate1h"}, {Metric: "x_total"}, {Metric: "y_total"}},
		},
		{
			name: "label_replace strings and regex matchers",
			expr: `label_replace(max by (subscription_id) (sd_age{subscription_id=~"herald-.+-workers", subscription_id!~'x'}), "stage", "$1", "subscription_id", "herald-(.+)-workers") > 3600`,
			want: []Selector{{Metric: "sd_age", Labels: []string{"subscription_id", "subscription_id"}}},
		},
		{
			name: "subquery, comment, escaped quote",
			expr: "max_over_time(rate(a_total{x=\"q\\\"}\"}[5m])[1h:1m]) # b_total is a comment\n + c",
			want: []Selector{{Metric: "a_total", Labels: []string{"x"}}, {Metric: "c"}},
		},
		{
			name: "aggregation keywords are not metrics even without parentheses next",
			expr: `topk (5, sum without (instance) (herald_ratelimit_rate))`,
			want: []Selector{{Metric: "herald_ratelimit_rate"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Selectors(tt.expr)
			if err != nil {
				t.Fatalf("Selectors: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Selectors(%q) mismatch (-want +got):\n%s", tt.expr, diff)
			}
		})
	}
}

func TestSelectorsErrors(t *testing.T) {
	for _, expr := range []string{
		`{__name__="herald_stage_in_flight"}`, // no visible metric name
		`rate(x_total[5m]) * $factor`,         // variable outside a string or range
		`x{a="b"`,                             // unclosed matcher list
		`x{a b}`,                              // no operator
		`x{a=b}`,                              // value not quoted
		`x{a="b}`,                             // unclosed string
		`rate(x_total[5m)`,                    // unclosed range
	} {
		if got, err := Selectors(expr); err == nil {
			t.Errorf("Selectors(%q) = %v, want an error", expr, got)
		}
	}
}

func TestSeriesExpandsHistograms(t *testing.T) {
	s := Series(Herald())
	for _, name := range []string{"herald_delivery_latency_seconds_bucket", "herald_delivery_latency_seconds_count", "herald_sla_deliveries_total"} {
		if _, ok := s[name]; !ok {
			t.Errorf("Series lacks %s", name)
		}
	}
	if _, ok := s["herald_delivery_latency_seconds"]; ok {
		t.Error("Series has a histogram's bare name, which no series carries")
	}
	if diff := cmp.Diff([]string{"tenant", "channel", "job", "instance", "le"}, s["herald_delivery_latency_seconds_bucket"]); diff != "" {
		t.Errorf("bucket labels (-want +got):\n%s", diff)
	}
}

func TestCheck(t *testing.T) {
	known := Series(Herald(), PubSub())
	tests := []struct {
		expr    string
		wantErr bool
	}{
		{`sum by (tenant) (rate(herald_sla_deliveries_total{tenant=~"$tenant", result="in_time"}[5m]))`, false},
		{`histogram_quantile(0.99, sum by (le) (rate(herald_delivery_latency_seconds_bucket{le!="+Inf", job="dispatch"}[5m])))`, false},
		{`max(stackdriver_pubsub_subscription_pubsub_googleapis_com_subscription_num_undelivered_messages{subscription_id=~"herald-.+-dead"})`, false},
		{`rate(herald_sla_delivered_total[5m])`, true},                  // misspelt metric
		{`herald_delivery_latency_seconds{tenant="a"}`, true},           // histogram's bare name
		{`rate(herald_dispatch_outcomes_total{tenant="a"}[5m])`, true},  // label the metric lacks
		{`rate(herald_delivery_latency_seconds_sum{le="1"}[5m])`, true}, // le only on _bucket
		{`sum(rate(herald_stage_messages_total{outcome=}[5m]))`, true},  // unreadable
	}
	for _, tt := range tests {
		err := Check(tt.expr, known)
		if (err != nil) != tt.wantErr {
			t.Errorf("Check(%q) = %v, want error: %v", tt.expr, err, tt.wantErr)
		}
	}
}
