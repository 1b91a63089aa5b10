// Package monitoring describes what Herald's dashboards and alert rules may
// query: the metrics Herald's services export, the Pub/Sub metrics the
// Stackdriver exporter brings in on Google Cloud, and a small reader that
// lists the series an expression selects. The dashboard generator's tests and
// the rule tests use it so that a renamed metric or a misspelt label breaks a
// test here rather than leaving a panel or an alert silently empty.
//
// The dashboard and rules themselves live beside this file:
//
//	dashboard/           generator of dashboards/herald.json (go generate)
//	dashboards/          the generated Grafana dashboard, committed
//	rules/               Prometheus recording and alerting rules, and their promtool unit tests
package monitoring

// Type is a Prometheus metric type, which decides the series names a metric
// has: a histogram is queried through its _bucket, _sum and _count series.
type Type int

const (
	Counter Type = iota
	Gauge
	Histogram
)

// Metric is one metric family and the labels its series carry. Labels lists
// only the labels Herald sets; Prometheus adds job and instance at scrape time,
// which every metric may be matched on too.
type Metric struct {
	Name   string
	Type   Type
	Labels []string
}

// Herald lists the metrics Herald's services export. It is the contract
// between the services and the dashboards and rules in this folder: a query
// here may use only these (and the Pub/Sub metrics below).
func Herald() []Metric {
	stage := []string{"stage"}
	return []Metric{
		// The SLA: submit to provider-accepted, and each delivery judged
		// against its job's deadline.
		{"herald_delivery_latency_seconds", Histogram, []string{"tenant", "channel"}},
		{"herald_sla_deliveries_total", Counter, []string{"tenant", "channel", "result"}},

		// Dispatch.
		{"herald_dispatch_outcomes_total", Counter, []string{"state", "receiver"}},
		{"herald_provider_errors_total", Counter, []string{"provider", "kind"}},
		{"herald_provider_breaker_state", Gauge, []string{"provider"}},
		{"herald_ratelimit_rate", Gauge, []string{"bucket"}},
		{"herald_ratelimit_throttles_total", Counter, []string{"bucket"}},
		{"herald_ratelimit_wait_seconds_total", Counter, []string{"bucket"}},

		// Every Pub/Sub-fed stage (recommend, render, dispatch).
		{"herald_stage_messages_total", Counter, []string{"stage", "outcome"}},
		{"herald_stage_lag_seconds", Gauge, stage},
		{"herald_stage_wait_seconds", Histogram, stage},
		{"herald_stage_handle_seconds", Histogram, stage},
		{"herald_stage_in_flight", Gauge, stage},
		// A Pub/Sub that lost a stage's topology, seen and mended by a
		// publisher or a receive loop ("by").
		{"herald_pubsub_topology_rebuilds_total", Counter, []string{"stage", "by", "outcome"}},

		// Ingest and planning.
		{"herald_ingest_requests_total", Counter, []string{"route", "code"}},
		{"herald_ingest_request_duration_seconds", Histogram, []string{"route"}},
		{"herald_planner_recipients_published_total", Counter, nil},
		{"herald_planner_batches_published_total", Counter, nil},
		{"herald_planner_batches_redriven_total", Counter, nil},
		{"herald_planner_jobs_planned_total", Counter, nil},

		// Publishing and the other stages' own counters.
		{"herald_published_messages_total", Counter, []string{"topic"}},
		{"herald_published_bytes_total", Counter, []string{"topic"}},
		{"herald_render_messages_total", Counter, []string{"outcome"}},
		{"herald_recommend_recipients_total", Counter, []string{"source"}},
		{"herald_edge_requests_total", Counter, []string{"outcome"}},
	}
}

// PubSub lists the Cloud Pub/Sub metrics that reach Prometheus through the
// Stackdriver exporter where Herald runs on Google Cloud. Herald's worker
// subscriptions are named herald-<stage>-workers and its dead-letter
// subscriptions herald-<stage>-dead.
func PubSub() []Metric {
	sub := []string{"subscription_id", "project_id", "unit"}
	return []Metric{
		{"stackdriver_pubsub_subscription_pubsub_googleapis_com_subscription_oldest_unacked_message_age", Gauge, sub},
		{"stackdriver_pubsub_subscription_pubsub_googleapis_com_subscription_num_undelivered_messages", Gauge, sub},
	}
}

// Series maps every series name the metrics can be queried by to the labels
// it may be matched on: a histogram contributes its _bucket (with le), _sum
// and _count series and never its bare name.
func Series(metrics ...[]Metric) map[string][]string {
	out := map[string][]string{}
	for _, list := range metrics {
		for _, m := range list {
			// Prometheus attaches job and instance to every scraped series.
			labels := append(append([]string{}, m.Labels...), "job", "instance")
			if m.Type != Histogram {
				out[m.Name] = labels
				continue
			}
			out[m.Name+"_bucket"] = append(append([]string{}, labels...), "le")
			out[m.Name+"_sum"] = labels
			out[m.Name+"_count"] = labels
		}
	}
	return out
}
