package planner_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"herald/devtools/testenv"
	"herald/ingest/internal/planner"
	"herald/shared/event"
	"herald/shared/messaging"
)

// TestAudienceHoldsOnlyCustomersWhoConsent plans a job of each channel for
// each kind of audience and checks who is in its batches: email needs
// subscribed, onsite consent.onsite (silence follows subscribed), ads
// consent.ads (silence is no).
func TestAudienceHoldsOnlyCustomersWhoConsent(t *testing.T) {
	db := testenv.DB(t)
	ctx := context.Background()
	const tenant = "acme"
	customers := []struct {
		id         string
		subscribed bool
		consent    string
		tier       string
	}{
		{"silent", true, `{}`, "gold"},
		{"all", true, `{"onsite": true, "ads": true}`, "gold"},
		{"email-only", true, `{"onsite": false, "ads": false}`, "gold"},
		{"unsubscribed", false, `{}`, "gold"},
		{"no-email", false, `{"onsite": true, "ads": true}`, "gold"},
		{"nothing", false, `{"onsite": false, "ads": false}`, "gold"},
		// Consents to everything, but is outside the segment and the list.
		{"silver", true, `{"onsite": true, "ads": true}`, "silver"},
	}
	for _, c := range customers {
		_, err := db.Exec(ctx, `INSERT INTO customers (tenant_id, id, email, subscribed, consent, attributes)
			VALUES ($1, $2, $3, $4, $5, jsonb_build_object('tier', $6::text))`, tenant, c.id, c.id+"@example.com", c.subscribed, c.consent, c.tier)
		if err != nil {
			t.Fatal(err)
		}
	}
	audiences := map[string]map[string]any{
		"all":     {"all_subscribed": true},
		"ids":     {"customer_ids": []string{"all", "email-only", "no-email", "nothing", "silent", "unsubscribed"}},
		"segment": {"segment_path": `$.tier == "gold"`},
	}
	consenting := map[event.Channel][]string{
		event.ChannelEmail:  {"all", "email-only", "silent"},
		event.ChannelOnsite: {"all", "no-email", "silent"},
		event.ChannelAd:     {"all", "no-email"},
	}
	want := map[string][]string{}
	jobs := map[string]uuid.UUID{}
	for channel, ids := range consenting {
		for kind, audience := range audiences {
			name := string(channel) + " to " + kind
			jobs[name] = addJob(t, db, tenant, channel, audience)
			// "silver" consents to every channel and is only in the "all"
			// audience.
			want[name] = ids
			if kind == "all" {
				want[name] = append(slices.Clone(ids), "silver")
				slices.Sort(want[name])
			}
		}
	}

	ps, err := messaging.Connect(ctx, testenv.Pubsub(t))
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	if err := messaging.EnsureTopology(ctx, ps, messaging.Recommend); err != nil {
		t.Fatal(err)
	}
	pub := messaging.NewPublisher(ps, messaging.Recommend, event.Identity, prometheus.NewRegistry())
	defer pub.Stop()
	p := planner.New(db, pub, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), testConfig)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx, context.Background()) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	deadline := time.Now().Add(time.Minute)
	for {
		var left int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE tenant_id = $1 AND planned_at IS NULL`, tenant).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d jobs not planned within a minute", left, len(jobs))
		}
		time.Sleep(20 * time.Millisecond)
	}

	got := map[string][]string{}
	for name, job := range jobs {
		var ids []string
		err := db.QueryRow(ctx, `SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM job_batches, unnest(customer_ids) id
			WHERE tenant_id = $1 AND job_id = $2`, tenant, job).Scan(&ids)
		if err != nil {
			t.Fatal(err)
		}
		got[name] = ids
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("planned audiences (-want +got):\n%s", diff)
	}
}

// addJob stores a job of channel for audience, with its outbox row, as job
// acceptance would.
func addJob(t testing.TB, db *pgxpool.Pool, tenant string, channel event.Channel, audience map[string]any) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	raw, err := json.Marshal(audience)
	if err != nil {
		t.Fatal(err)
	}
	job := uuid.New()
	now := time.Now()
	_, err = db.Exec(ctx, `INSERT INTO jobs (tenant_id, id, idempotency_key, request_sha256, channel, template_id,
		template_version, audience, products_per_message, submitted_at, deadline)
		VALUES ($1, $2, $3, '', $4, 't', 1, $5, 6, $6, $7)`, tenant, job, job.String(), channel, raw, now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO outbox (kind, tenant_id, job_id) VALUES ('plan_job', $1, $2)`, tenant, job); err != nil {
		t.Fatal(err)
	}
	return job
}
