package ledger_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/dispatch/internal/ledger"
	"herald/shared/event"
)

// consentCustomers are acme's customers, each with what they said about
// each channel.
var consentCustomers = []struct {
	id, email  string
	subscribed bool
	consent    string
}{
	{"silent", "silent@example.com", true, `{}`},
	{"all", "all@example.com", true, `{"onsite": true, "ads": true}`},
	{"email-only", "email-only@example.com", true, `{"onsite": false, "ads": false}`},
	{"unsubscribed", "unsubscribed@example.com", false, `{}`},
	{"no-email", "no-email@example.com", false, `{"onsite": true, "ads": true}`},
	// On the suppression list (setup) and without any consent: the list's
	// reason is the one recorded.
	{"gone", "gone@example.com", false, `{"onsite": false}`},
}

func addConsentCustomers(t *testing.T, db *pgxpool.Pool) {
	t.Helper()
	for _, c := range consentCustomers {
		_, err := db.Exec(context.Background(), `INSERT INTO customers (tenant_id, id, email, subscribed, consent) VALUES ('acme', $1, $2, $3, $4)`,
			c.id, c.email, c.subscribed, c.consent)
		if err != nil {
			t.Fatal(err)
		}
	}
}

// noConsent is the state and reason of a recipient the claim holds back
// for want of consent.
func noConsent(channel event.Channel) claimed {
	return claimed{ledger.Suppressed, "no consent for " + string(channel)}
}

type claimed struct{ State, Reason string }

var (
	sending = claimed{ledger.Sending, ""}
	listed  = claimed{ledger.Suppressed, "hard bounce"}
)

// TestClaimChecksConsentForTheChannel claims every customer for a job of
// each channel: email needs subscribed, onsite consent.onsite (silence
// follows subscribed), ads consent.ads (silence is no). A recipient
// without a customers row is not held back for consent.
func TestClaimChecksConsentForTheChannel(t *testing.T) {
	tests := []struct {
		channel event.Channel
		want    map[string]claimed
	}{
		{event.ChannelEmail, map[string]claimed{
			"silent": sending, "all": sending, "email-only": sending,
			"unsubscribed": noConsent(event.ChannelEmail), "no-email": noConsent(event.ChannelEmail),
			"gone": listed, "unknown": sending,
		}},
		{event.ChannelOnsite, map[string]claimed{
			"silent": sending, "all": sending, "email-only": noConsent(event.ChannelOnsite),
			"unsubscribed": noConsent(event.ChannelOnsite), "no-email": sending,
			"gone": listed, "unknown": sending,
		}},
		{event.ChannelAd, map[string]claimed{
			"silent": noConsent(event.ChannelAd), "all": sending, "email-only": noConsent(event.ChannelAd),
			"unsubscribed": noConsent(event.ChannelAd), "no-email": sending,
			"gone": listed, "unknown": sending,
		}},
	}
	for _, tt := range tests {
		t.Run(string(tt.channel), func(t *testing.T) {
			db, b := setup(t)
			ctx := context.Background()
			addConsentCustomers(t, db)
			if _, err := db.Exec(ctx, `UPDATE jobs SET channel = $1 WHERE id = $2`, tt.channel, b.Job); err != nil {
				t.Fatal(err)
			}
			b.Channel = tt.channel
			items := []ledger.Item{{CustomerID: "unknown", Email: "unknown@example.com", MessageID: "m-unknown"}}
			for _, c := range consentCustomers {
				items = append(items, ledger.Item{CustomerID: c.id, Email: c.email, MessageID: "m-" + c.id})
			}
			h, err := ledger.New(db).Lock(ctx, b)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Release(ctx)
			if _, err := h.Claim(ctx, items, "test"); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, ledgerRows(t, db, b.Job)); diff != "" {
				t.Fatalf("ledger after the claim (-want +got):\n%s", diff)
			}
			held := 0
			for _, c := range tt.want {
				if c.State == ledger.Suppressed {
					held++
				}
			}
			if p := progress(t, db, b.Job); p["suppressed"] != int64(held) {
				t.Fatalf("progress %v, want %d suppressed", p, held)
			}
		})
	}
}

// TestRetryRechecksConsent: a recipient deferred before they withdrew
// their consent for the channel is not sent when the batch comes back.
func TestRetryRechecksConsent(t *testing.T) {
	for _, channel := range []event.Channel{event.ChannelEmail, event.ChannelOnsite, event.ChannelAd} {
		t.Run(string(channel), func(t *testing.T) {
			db, b := setup(t)
			ctx := context.Background()
			addConsentCustomers(t, db)
			if _, err := db.Exec(ctx, `UPDATE jobs SET channel = $1 WHERE id = $2`, channel, b.Job); err != nil {
				t.Fatal(err)
			}
			b.Channel = channel
			h, err := ledger.New(db).Lock(ctx, b)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Release(ctx)
			claims, err := h.Claim(ctx, []ledger.Item{{CustomerID: "all", Email: "all@example.com", MessageID: "m1"}}, "test")
			if err != nil || len(claims) != 1 || claims[0].State != ledger.Sending {
				t.Fatalf("claim of a customer who consents to everything: %v, %v", claims, err)
			}
			if err := h.Record(ctx, []ledger.Outcome{{CustomerID: "all", State: ledger.Deferred, Reason: "waiting for the send rate"}}); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(ctx, `UPDATE customers SET subscribed = false, consent = '{"onsite": false, "ads": false}' WHERE id = 'all'`); err != nil {
				t.Fatal(err)
			}
			states, err := h.Retry(ctx, []string{"all"}, "test")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(map[string]ledger.Retried{"all": {State: ledger.Suppressed}}, states); diff != "" {
				t.Fatalf("retry after consent was withdrawn (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(map[string]claimed{"all": noConsent(channel)}, ledgerRows(t, db, b.Job)); diff != "" {
				t.Fatalf("ledger after the retry (-want +got):\n%s", diff)
			}
			if p := progress(t, db, b.Job); p["suppressed"] != 1 {
				t.Fatalf("progress %v, want one suppressed", p)
			}
		})
	}
}

// ledgerRows is each of job's ledger rows' state and reason, by customer.
func ledgerRows(t *testing.T, db *pgxpool.Pool, job event.JobID) map[string]claimed {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT customer_id, state, reason FROM deliveries WHERE job_id = $1`, job)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]claimed{}
	for rows.Next() {
		var id string
		var c claimed
		if err := rows.Scan(&id, &c.State, &c.Reason); err != nil {
			t.Fatal(err)
		}
		got[id] = c
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}
