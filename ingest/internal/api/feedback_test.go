package api_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"herald/devtools/testenv"
	"herald/ingest/internal/api"
	"herald/ingest/internal/feedback"
	"herald/ingest/internal/feedback/feedbacktest"
	"herald/ingest/internal/store"
	"herald/shared/event"
)

// feedbackFixture is an API with both feedback endpoints on, over a
// ledger that holds one job of acme with a delivery per state given
// (customer "c-<state>", address "<state>@Example.com"), as dispatch
// would have left it.
type feedbackFixture struct {
	*fixture
	sns      *feedbacktest.SNS
	sendgrid *feedbacktest.SendGrid
	job      string
}

func newFeedbackFixture(t *testing.T, softLimit int, states ...string) *feedbackFixture {
	t.Helper()
	db := testenv.DB(t)
	fake := feedbacktest.NewSNS(t)
	sns, err := feedback.NewSNS(feedback.SNSConfig{Topics: []string{feedbacktest.Topic}, Client: fake.Client})
	if err != nil {
		t.Fatal(err)
	}
	account := feedbacktest.NewSendGrid(t)
	sg, err := feedback.NewSendGrid(account.PublicKey, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := api.New(store.New(db), slog.New(slog.DiscardHandler), prometheus.NewRegistry(), api.Config{Limits: api.DefaultLimits,
		Feedback: api.FeedbackConfig{SNS: sns, SendGrid: sg, SoftBounceLimit: softLimit}})
	srv := httptest.NewServer(withTenants(t, db, a.Handler()))
	t.Cleanup(srv.Close)
	return &feedbackFixture{fixture: &fixture{t: t, db: db, srv: srv, api: a, client: checkedClient(t)}, sns: fake, sendgrid: account,
		job: ledgerJob(t, db, "acme", states...)}
}

// ledgerJob stores a job of tenant with one delivery per state, and the
// counters dispatch would have written for them, and returns its id.
func ledgerJob(t *testing.T, db *pgxpool.Pool, tenant string, states ...string) string {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	job := event.NewJobID()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`SELECT herald_ensure_deliveries_partition($1)`, now)
	exec(`INSERT INTO jobs (tenant_id, id, idempotency_key, request_sha256, channel, template_id, template_version,
		audience, products_per_message, submitted_at, deadline)
		VALUES ($1, $2, $3, '', 'email', 't', 1, '{}', 6, $4, $5)`, tenant, job.UUID(), job.String(), now, now.Add(time.Hour))
	for i, st := range states {
		exec(`INSERT INTO deliveries (tenant_id, job_id, channel, customer_id, job_submitted_at, batch_seq, state, email)
			VALUES ($1, $2, 'email', $3, $4, $5, $6, $7)`, tenant, job.UUID(), "c-"+st, now, i, st, st+"@Example.com")
		if st == "sent" || st == "ambiguous" {
			exec(fmt.Sprintf(`INSERT INTO job_progress (tenant_id, job_id, shard, %[1]s) VALUES ($1, $2, $3, 1)
				ON CONFLICT (tenant_id, job_id, shard) DO UPDATE SET %[1]s = job_progress.%[1]s + 1`, st), tenant, job.UUID(), i%8)
		}
	}
	return job.String()
}

func (f *feedbackFixture) key(customer string) event.DeliveryKey {
	return event.DeliveryKey{Tenant: "acme", Job: f.job, Channel: event.ChannelEmail, Customer: customer}
}

// ledger is what feedback may change: the deliveries' states and
// feedback, the reports recorded, suppressions and soft-bounce runs.
func (f *feedbackFixture) ledger() map[string]string {
	f.t.Helper()
	out := map[string]string{}
	for name, q := range map[string]string{
		"deliveries":      `SELECT coalesce(string_agg(customer_id || '=' || state || '/' || feedback, ',' ORDER BY customer_id), '') FROM deliveries`,
		"feedback_events": `SELECT coalesce(string_agg(provider || ':' || event_id || ':' || kind, ',' ORDER BY provider, event_id), '') FROM feedback_events`,
		"suppressions":    `SELECT coalesce(string_agg(email || ':' || reason, ',' ORDER BY email), '') FROM suppressions`,
		"soft_bounces":    `SELECT coalesce(string_agg(email || ':' || run, ',' ORDER BY email), '') FROM soft_bounces`,
		"job_totals":      `SELECT coalesce(string_agg(sent || '/' || ambiguous, ','), '') FROM job_totals`,
	} {
		var v string
		if err := f.db.QueryRow(context.Background(), q).Scan(&v); err != nil {
			f.t.Fatal(err)
		}
		out[name] = v
	}
	return out
}

func (f *feedbackFixture) unchangedLedger(before map[string]string) {
	f.t.Helper()
	if diff := cmp.Diff(before, f.ledger()); diff != "" {
		f.t.Fatalf("the ledger changed (-before +after):\n%s", diff)
	}
}

// sesEvent is an SES event record of type typ about key's email; extra
// is the event's own object, e.g. `"bounce":{…}`.
func sesEvent(t *testing.T, key event.DeliveryKey, typ, extra string) string {
	t.Helper()
	tenant, delivery, err := key.Tags()
	if err != nil {
		t.Fatal(err)
	}
	return sesEventTags(typ, extra, tenant, delivery)
}

func sesEventTags(typ, extra, tenant, delivery string) string {
	return `{"eventType":"` + typ + `",` + extra + `,"mail":{"timestamp":"2026-11-27T08:14:01.550Z","source":"deals@acme.example",
		"messageId":"0100018f2a6c1d2e-5b7d9f31-6a0e-4c1b-9d2f-7e3a8b5c4d10-000000","destination":["sent@example.com"],
		"tags":{"ses:configuration-set":["herald"],"` + event.TagTenant + `":["` + tenant + `"],"` + event.TagDelivery + `":["` + delivery + `"]}}}`
}

const (
	permanentBounce = `"bounce":{"bounceType":"Permanent","bounceSubType":"General","bouncedRecipients":[{"emailAddress":"sent@example.com","status":"5.1.1"}]}`
	transientBounce = `"bounce":{"bounceType":"Transient","bounceSubType":"MailboxFull","bouncedRecipients":[{"emailAddress":"sent@example.com","status":"4.2.2"}]}`
	sesDelivered    = `"delivery":{"recipients":["ambiguous@example.com"],"smtpResponse":"250 2.0.0 OK"}`
	sesComplaint    = `"complaint":{"complainedRecipients":[{"emailAddress":"sent@example.com"}],"complaintFeedbackType":"abuse"}`
)

func (f *feedbackFixture) postSNS(body []byte) response {
	f.t.Helper()
	return f.do("POST", "/v1/webhooks/ses", "", "text/plain; charset=UTF-8", string(body), "x-amz-sns-message-type", "Notification")
}

func counts(r response) map[string]float64 {
	out := map[string]float64{}
	for k, v := range r.body {
		out[k], _ = v.(float64)
	}
	return out
}

func want(applied, duplicate, unknown, ignored float64) map[string]float64 {
	return map[string]float64{"applied": applied, "duplicate": duplicate, "unknown": unknown, "ignored": ignored}
}

// TestSESFeedbackReachesTheLedger: send → SES event through SNS →
// suppression, on real PostgreSQL, and every bad input the issue names
// answered with its error and changing nothing.
func TestSESFeedbackReachesTheLedger(t *testing.T) {
	f := newFeedbackFixture(t, 3, "sent", "ambiguous", "suppressed")

	confirm := f.postSNS(feedbacktest.Body(f.sns.SubscriptionConfirmation("sub-1", "tok-1")))
	if confirm.status != 200 || len(f.sns.Confirmed()) != 1 {
		t.Fatalf("subscription confirmation: %d %v, confirmed %v", confirm.status, confirm.body, f.sns.Confirmed())
	}

	bounce := feedbacktest.Body(f.sns.Notification("n-1", sesEvent(t, f.key("c-sent"), "Bounce", permanentBounce)))
	r := f.postSNS(bounce)
	if diff := cmp.Diff(want(1, 0, 0, 0), counts(r)); r.status != 200 || diff != "" {
		t.Fatalf("a hard bounce: %d (-want +got):\n%s", r.status, diff)
	}
	after := f.ledger()
	if after["suppressions"] != "sent@example.com:bounce" || !strings.Contains(after["deliveries"], "c-sent=sent/bounced") {
		t.Fatalf("after a hard bounce: %v", after)
	}

	t.Run("the same notification again changes nothing", func(t *testing.T) {
		f.t = t
		before := f.ledger()
		if r := f.postSNS(bounce); r.status != 200 || !cmp.Equal(want(0, 1, 0, 0), counts(r)) {
			t.Fatalf("%d %v", r.status, r.body)
		}
		f.unchangedLedger(before)
	})
	t.Run("a delivery settles an ambiguous send", func(t *testing.T) {
		f.t = t
		r := f.postSNS(feedbacktest.Body(f.sns.Notification("n-2", sesEvent(t, f.key("c-ambiguous"), "Delivery", sesDelivered))))
		if r.status != 200 || !cmp.Equal(want(1, 0, 0, 0), counts(r)) {
			t.Fatalf("%d %v", r.status, r.body)
		}
		if l := f.ledger(); !strings.Contains(l["deliveries"], "c-ambiguous=sent/delivered") || l["job_totals"] != "2/0" {
			t.Errorf("after a delivery of an ambiguous send: %v", l)
		}
	})

	other := f.key("c-sent")
	other.Tenant = "globex"
	otherTenant, otherDelivery, _ := other.Tags()
	unknownJob := f.key("c-sent")
	unknownJob.Job = event.NewJobID().String()
	forged := f.sns.Notification("n-9", sesEvent(t, f.key("c-sent"), "Bounce", permanentBounce))
	forged.Message = sesEvent(t, f.key("c-ambiguous"), "Complaint", sesComplaint)
	unsigned := f.sns.Notification("n-9", sesEvent(t, f.key("c-ambiguous"), "Complaint", sesComplaint))
	unsigned.Signature, unsigned.SignatureVersion = "", ""
	// A certificate of the forger's own, served from a host that is not
	// SNS, would verify the forger's signature: the host rule refuses it.
	forger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := feedbacktest.SignWith(f.sns.Notification("n-9", sesEvent(t, f.key("c-ambiguous"), "Complaint", sesComplaint)), 2,
		forger, "https://"+feedbacktest.OtherHost+"/SimpleNotificationService-0000000000000000000000.pem")
	foreignTopic := f.sns.Notification("n-9", sesEvent(t, f.key("c-ambiguous"), "Complaint", sesComplaint))
	foreignTopic.TopicArn = "arn:aws:sns:us-east-1:210987654321:someone-elses-topic"
	foreignTopic = f.sns.Sign(foreignTopic, 2)
	stale := f.sns.Notification("n-9", sesEvent(t, f.key("c-ambiguous"), "Complaint", sesComplaint))
	stale.Timestamp = time.Now().Add(-72 * time.Hour).UTC().Format(time.RFC3339Nano)
	stale = f.sns.Sign(stale, 2)

	tests := []struct {
		name   string
		body   []byte
		status int
		code   string
		counts map[string]float64
	}{
		{"another tenant's message: its tenant tag on acme's delivery", feedbacktest.Body(f.sns.Notification("n-3",
			sesEventTags("Complaint", sesComplaint, otherTenant, otherDelivery))), 200, "", want(0, 0, 1, 0)},
		{"an unknown ledger key", feedbacktest.Body(f.sns.Notification("n-4", sesEvent(t, unknownJob, "Complaint", sesComplaint))), 200, "", want(0, 0, 1, 0)},
		{"a tenant tag that is not a tenant id", feedbacktest.Body(f.sns.Notification("n-5",
			sesEventTags("Complaint", sesComplaint, "YWNtZSBjb3Jw", otherDelivery))), 200, "", want(0, 0, 1, 0)},
		{"tags that are not Herald's", feedbacktest.Body(f.sns.Notification("n-6",
			sesEventTags("Complaint", sesComplaint, "!!", "??"))), 200, "", want(0, 0, 1, 0)},
		{"a delivery never handed to a provider", feedbacktest.Body(f.sns.Notification("n-7",
			sesEvent(t, f.key("c-suppressed"), "Complaint", sesComplaint))), 200, "", want(0, 0, 1, 0)},
		{"an event type Herald does not act on", feedbacktest.Body(f.sns.Notification("n-8",
			sesEvent(t, f.key("c-ambiguous"), "Open", `"open":{"ipAddress":"198.51.100.7"}`))), 200, "", want(0, 0, 0, 1)},
		{"a forged notification", feedbacktest.Body(forged), 401, "invalid_signature", nil},
		{"an unsigned notification", feedbacktest.Body(unsigned), 401, "invalid_signature", nil},
		{"a certificate URL on another host", feedbacktest.Body(elsewhere), 401, "invalid_signature", nil},
		{"a replayed notification three days old", feedbacktest.Body(stale), 401, "invalid_signature", nil},
		{"a topic that is not configured", feedbacktest.Body(foreignTopic), 403, "topic_not_allowed", nil},
		{"not an SNS message", []byte(`<Notification/>`), 400, "invalid_feedback", nil},
		{"a signed notification whose SES event is malformed", feedbacktest.Body(f.sns.Notification("n-10", `{"eventType":"Bounce"}`)), 400, "invalid_feedback", nil},
		{"a body over the limit", []byte(strings.Repeat(" ", 1<<20+1)), 413, "too_large", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.t = t
			before := f.ledger()
			r := f.postSNS(tt.body)
			if code, msg := errorOf(r); r.status != tt.status || code != tt.code {
				t.Fatalf("%d %q %q, want %d %q", r.status, code, msg, tt.status, tt.code)
			}
			if tt.counts != nil {
				if diff := cmp.Diff(tt.counts, counts(r)); diff != "" {
					t.Errorf("counts (-want +got):\n%s", diff)
				}
			}
			f.unchangedLedger(before)
		})
	}
	for _, req := range f.sns.Requests() {
		if strings.HasPrefix(req, feedbacktest.OtherHost) {
			t.Errorf("fetched %s", req)
		}
	}

	// A hard bounce's suppression holds for the next send: dispatch's claim
	// checks suppressions, which is tested with dispatch; here the row is
	// what it reads.
	var n int
	if err := f.db.QueryRow(context.Background(), `SELECT count(*) FROM suppressions WHERE tenant_id = 'acme' AND email = 'sent@example.com'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("suppressions of the bounced address: %d (%v)", n, err)
	}
}

func (f *feedbackFixture) postSendGrid(events []map[string]any, at time.Time) response {
	f.t.Helper()
	body, err := json.Marshal(events)
	if err != nil {
		f.t.Fatal(err)
	}
	sig, ts := f.sendgrid.Sign(body, at)
	return f.do("POST", "/v1/webhooks/sendgrid", "", "application/json", string(body),
		feedback.SendGridSignatureHeader, sig, feedback.SendGridTimestampHeader, ts)
}

func sendGridEvent(t *testing.T, key event.DeliveryKey, kind, id string, extra ...string) map[string]any {
	t.Helper()
	tenant, delivery, err := key.Tags()
	if err != nil {
		t.Fatal(err)
	}
	e := map[string]any{"email": "sent@example.com", "timestamp": time.Now().Unix(), "event": kind, "sg_event_id": id,
		"sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0", event.TagTenant: tenant, event.TagDelivery: delivery}
	for i := 0; i+1 < len(extra); i += 2 {
		e[extra[i]] = extra[i+1]
	}
	return e
}

func TestSendGridFeedbackReachesTheLedger(t *testing.T) {
	f := newFeedbackFixture(t, 2, "sent", "ambiguous")
	now := time.Now()

	// Two soft bounces in a row suppress, at this fixture's limit of 2.
	r := f.postSendGrid([]map[string]any{
		sendGridEvent(t, f.key("c-sent"), "deferred", "sg-1"),
		sendGridEvent(t, f.key("c-sent"), "processed", "sg-2"),
		sendGridEvent(t, f.key("c-sent"), "bounce", "sg-3", "type", "blocked"),
	}, now)
	if diff := cmp.Diff(want(2, 0, 0, 1), counts(r)); r.status != 200 || diff != "" {
		t.Fatalf("%d (-want +got):\n%s", r.status, diff)
	}
	if l := f.ledger(); l["suppressions"] != "sent@example.com:bounce" {
		t.Fatalf("after two soft bounces at a limit of 2: %v", l)
	}
	r = f.postSendGrid([]map[string]any{sendGridEvent(t, f.key("c-ambiguous"), "spamreport", "sg-4")}, now)
	if r.status != 200 || !cmp.Equal(want(1, 0, 0, 0), counts(r)) {
		t.Fatalf("a spam report: %d %v", r.status, r.body)
	}
	if l := f.ledger(); !strings.Contains(l["suppressions"], "ambiguous@example.com:complaint") || !strings.Contains(l["deliveries"], "c-ambiguous=sent/complained") {
		t.Fatalf("after a spam report: %v", l)
	}

	other := f.key("c-sent")
	other.Tenant = "globex"
	signed := func(body string, at time.Time) (string, string) { return f.sendgrid.Sign([]byte(body), at) }
	good := `[{"event":"bounce","type":"bounce","sg_event_id":"sg-9","herald_tenant":"YWNtZQ","herald_delivery":"x"}]`
	sig, ts := signed(good, now)
	oldSig, oldTS := signed(good, now.Add(-time.Hour))
	otherAccount := feedbacktest.NewSendGrid(t)
	forgedSig, forgedTS := otherAccount.Sign([]byte(good), now)
	badJSONSig, badJSONTS := signed(`{"event":"bounce"}`, now)
	tests := []struct {
		name         string
		body         string
		headers      []string
		status       int
		code         string
		appliedBatch []map[string]any
	}{
		{"another tenant's message", "", nil, 200, "", []map[string]any{sendGridEvent(t, other, "bounce", "sg-5", "type", "bounce")}},
		{"an event repeated", "", nil, 200, "", []map[string]any{sendGridEvent(t, f.key("c-ambiguous"), "spamreport", "sg-4")}},
		{"unsigned", good, nil, 401, "invalid_signature", nil},
		{"signed by another key", good, []string{feedback.SendGridSignatureHeader, forgedSig, feedback.SendGridTimestampHeader, forgedTS}, 401, "invalid_signature", nil},
		{"replayed an hour later", good, []string{feedback.SendGridSignatureHeader, oldSig, feedback.SendGridTimestampHeader, oldTS}, 401, "invalid_signature", nil},
		{"a changed body", strings.Replace(good, "sg-9", "sg-8", 1), []string{feedback.SendGridSignatureHeader, sig, feedback.SendGridTimestampHeader, ts}, 401, "invalid_signature", nil},
		{"signed, but not an array of events", `{"event":"bounce"}`, []string{feedback.SendGridSignatureHeader, badJSONSig, feedback.SendGridTimestampHeader, badJSONTS}, 400, "invalid_feedback", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.t = t
			before := f.ledger()
			var r response
			if tt.appliedBatch != nil {
				r = f.postSendGrid(tt.appliedBatch, now)
			} else {
				r = f.do("POST", "/v1/webhooks/sendgrid", "", "application/json", tt.body, tt.headers...)
			}
			if code, msg := errorOf(r); r.status != tt.status || code != tt.code {
				t.Fatalf("%d %q %q, want %d %q", r.status, code, msg, tt.status, tt.code)
			}
			if tt.status == 200 && (r.body["applied"] != float64(0) || r.body["unknown"].(float64)+r.body["duplicate"].(float64) != 1) {
				t.Errorf("counts %v", r.body)
			}
			f.unchangedLedger(before)
		})
	}
}

func TestFeedbackEndpointsAreOffUnlessConfigured(t *testing.T) {
	f := newFixture(t, api.DefaultLimits)
	for _, path := range []string{"/v1/webhooks/ses", "/v1/webhooks/sendgrid"} {
		if r := f.do("POST", path, "", "application/json", "[]"); r.status != 404 {
			t.Errorf("%s unconfigured: %d %v", path, r.status, r.body)
		}
	}
}
