package api_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"herald/ingest/internal/api"
	"herald/shared/unsubscribe"
)

const webhookSecret = "test-webhook-secret-0123456789"

// snapshot counts the rows of every table a request could change, so a
// test can assert that a rejected request changed nothing.
func (f *fixture) snapshot() map[string]int {
	f.t.Helper()
	out := map[string]int{}
	for _, table := range []string{"tenants", "customers", "catalog_items", "recommendations", "events", "suppressions",
		"templates", "jobs", "outbox", "job_batches", "catalog_triggers"} {
		out[table] = f.count(table)
	}
	var states string
	if err := f.db.QueryRow(context.Background(), `SELECT coalesce(string_agg(state, ',' ORDER BY id), '') FROM jobs`).Scan(&states); err != nil {
		f.t.Fatal(err)
	}
	out["job states: "+states] = 1
	return out
}

func (f *fixture) unchanged(before map[string]int) {
	f.t.Helper()
	if diff := cmp.Diff(before, f.snapshot()); diff != "" {
		f.t.Fatalf("the database changed (-before +after):\n%s", diff)
	}
}

func job(extra string) string {
	return `{"channel":"email","template":{"id":"bf"},"audience":{"all_subscribed":true}` + extra + `}`
}

// Every rejection the issue lists for ingest (the edge's own rejections
// are tested in e2e/api_auth_test.go) answers with its status and a JSON
// error and changes nothing. Each rule of a job request is tested beside
// parseJob; the campaign case here stands for all of them.
func TestRejectionsChangeNothing(t *testing.T) {
	f := newFixture(t, api.DefaultLimits)
	f.template("acme")
	f.do("POST", "/v1/customers", "acme", ndjson, `{"id":"c1","email":"a@example.com"}`+"\n")
	ownJob := f.do("POST", "/v1/jobs", "acme", "application/json", job(""), "Idempotency-Key", "own")
	f.template("globex")
	theirJob := f.do("POST", "/v1/jobs", "globex", "application/json", job(""), "Idempotency-Key", "theirs")
	if ownJob.status != 202 || theirJob.status != 202 {
		t.Fatalf("setup: %d %d", ownJob.status, theirJob.status)
	}
	theirs := theirJob.body["id"].(string)
	key := func(k string) []string { return []string{"Idempotency-Key", k} }
	tests := []struct {
		name, method, path, tenant, contentType, body string
		header                                        []string
		wantStatus                                    int
		wantCode, wantInMsg                           string
	}{
		{"tenant reads another tenant's job", "GET", "/v1/jobs/" + theirs, "acme", "", "", nil, 404, "not_found", "job"},
		{"tenant cancels another tenant's job", "POST", "/v1/jobs/" + theirs + "/cancel", "acme", "", "", nil, 404, "not_found", "job"},
		{"tenant pauses another tenant's job", "POST", "/v1/jobs/" + theirs + "/pause", "acme", "", "", nil, 404, "not_found", "job"},
		{"tenant uses another tenant's template", "POST", "/v1/jobs", "initech", "application/json", job(""), key("k-tmpl"), 404, "not_found", "bf"},
		{"tenant reads another tenant's template", "GET", "/v1/templates/bf/versions/1", "initech", "", "", nil, 404, "not_found", "template"},
		{"duplicate key in a JSON body", "POST", "/v1/jobs", "acme", "application/json",
			`{"channel":"email","channel":"sms","template":{"id":"bf"},"audience":{"all_subscribed":true}}`, key("k-dup"), 400, "invalid_json", `duplicate key "channel"`},
		{"duplicate key in a nested object", "PUT", "/v1/profile", "acme", "application/json",
			`{"name":"A","website_url":"https://a.example","postal_address":"1 St","name":"B"}`, nil, 400, "invalid_json", "duplicate key"},
		{"duplicate key in an NDJSON line", "POST", "/v1/customers", "acme", ndjson,
			`{"id":"c7","email":"x@example.com","email":"y@example.com"}` + "\n", nil, 400, "invalid_lines", "line 1: duplicate key \"email\""},
		{"duplicate key in another case", "POST", "/v1/jobs", "acme", "application/json",
			`{"channel":"email","CHANNEL":"ad","template":{"id":"bf"},"audience":{"all_subscribed":true}}`, key("k-case"), 400, "invalid_json", `duplicate key "CHANNEL"`},
		{"duplicate key in another case, nested", "POST", "/v1/jobs", "acme", "application/json",
			`{"channel":"email","template":{"id":"bf","ID":"other"},"audience":{"all_subscribed":true}}`, key("k-case2"), 400, "invalid_json", `duplicate key "ID"`},
		{"duplicate key in another case in an NDJSON line", "POST", "/v1/customers", "acme", ndjson,
			`{"id":"c7","email":"x@example.com","Email":"y@example.com"}` + "\n", nil, 400, "invalid_lines", `line 1: duplicate key "Email"`},
		{"stray brace after a JSON body", "PUT", "/v1/profile", "acme", "application/json",
			`{"name":"A","website_url":"https://a.example","postal_address":"1 St"}}`, nil, 400, "invalid_json", "after the JSON value"},
		{"stray brackets after a job", "POST", "/v1/jobs", "acme", "application/json", job("") + "]]", key("k-trail"), 400, "invalid_json", "after the JSON value"},
		{"second value after a job", "POST", "/v1/jobs", "acme", "application/json", job("") + ` {"channel":"ad"}`, key("k-trail2"), 400, "invalid_json", "after the JSON value"},
		{"stray brace after an NDJSON line", "POST", "/v1/customers", "acme", ndjson,
			`{"id":"c7","email":"x@example.com"}}` + "\n", nil, 400, "invalid_lines", "line 1: more than one JSON value"},
		{"unknown field", "POST", "/v1/jobs", "acme", "application/json", job(`,"priority":"high"`), key("k-unk"), 400, "invalid_json", "priority"},
		{"wrong content type", "POST", "/v1/jobs", "acme", "text/plain", job(""), key("k-ct"), 415, "unsupported_media_type", "application/json"},
		{"wrong content type for NDJSON", "POST", "/v1/events", "acme", "application/json", "{}", nil, 415, "unsupported_media_type", "ndjson"},
		{"malformed NDJSON line", "POST", "/v1/catalog/items", "acme", ndjson,
			`{"id":"i1","title":"T","url":"https://s.example/i1","price_cents":100}` + "\n" + `{"id":` + "\n", nil, 400, "invalid_lines", "line 2"},
		{"invalid email", "POST", "/v1/suppressions", "acme", ndjson, `{"email":"no-at-sign"}` + "\n", nil, 422, "invalid_lines", "line 1: email"},
		{"CR/LF in a subject", "POST", "/v1/templates/t2/versions", "acme", "application/json",
			`{"from_email":"d@acme.example","subject":"Hi\r\nBcc: victim@example.com","html":"<p>x</p>"}`, nil, 422, "invalid_request", "subject"},
		{"CR/LF in the from name", "POST", "/v1/templates/t2/versions", "acme", "application/json",
			`{"from_name":"Acme\nX-Evil: 1","from_email":"d@acme.example","subject":"Hi","html":"<p>x</p>"}`, nil, 422, "invalid_request", "from_name"},
		{"CR/LF in the campaign (a header value)", "POST", "/v1/jobs", "acme", "application/json", job(`,"campaign":"bf\r\nX-Evil: 1"`), key("k-crlf"), 422, "invalid_request", "campaign"},
		{"template calling a function outside the allow-list", "POST", "/v1/templates/t2/versions", "acme", "application/json",
			`{"from_email":"d@acme.example","subject":"Hi","html":"<p>{{call .Customer.FirstName}}</p>"}`, nil, 422, "invalid_template", `"call" is not allowed`},
		{"template calling an unknown function", "POST", "/v1/templates/t2/versions", "acme", "application/json",
			`{"from_email":"d@acme.example","subject":"{{env \"HOME\"}}","html":"<p>x</p>"}`, nil, 422, "invalid_template", `"env" is not allowed`},
		{"template with an unbounded loop", "POST", "/v1/templates/t2/versions", "acme", "application/json",
			`{"from_email":"d@acme.example","subject":"Hi","html":"{{range 1000000000}}x{{end}}"}`, nil, 422, "invalid_template", "range"},
		{"same key, other body", "POST", "/v1/jobs", "acme", "application/json", job(`,"products":3`), key("own"), 422, "idempotency_key_reused", "Idempotency-Key"},
		{"erase another tenant's customer", "DELETE", "/v1/customers/c1", "globex", "", "", nil, 404, "not_found", "customer"},
		{"catalog trigger of an unknown kind", "PUT", "/v1/catalog-triggers/restock", "acme", "application/json",
			`{"template":{"id":"bf"}}`, nil, 404, "not_found", "back_in_stock"},
		{"catalog trigger naming no template", "PUT", "/v1/catalog-triggers/back_in_stock", "acme", "application/json",
			`{"template":{"id":"nope"}}`, nil, 422, "unknown_template", "nope"},
		{"catalog trigger naming another tenant's template", "PUT", "/v1/catalog-triggers/back_in_stock", "initech", "application/json",
			`{"template":{"id":"bf"}}`, nil, 422, "unknown_template", "bf"},
		{"catalog trigger looking back too far", "PUT", "/v1/catalog-triggers/back_in_stock", "acme", "application/json",
			`{"template":{"id":"bf"},"lookback":"10000h"}`, nil, 422, "invalid_request", "lookback"},
		{"minimum drop on a back-in-stock trigger", "PUT", "/v1/catalog-triggers/back_in_stock", "acme", "application/json",
			`{"template":{"id":"bf"},"min_drop_percent":10}`, nil, 422, "invalid_request", "min_drop_percent"},
		{"catalog trigger on the ad channel", "PUT", "/v1/catalog-triggers/price_drop", "acme", "application/json",
			`{"channel":"ad","template":{"id":"bf"}}`, nil, 422, "invalid_request", "channel"},
		{"catalog trigger with an unknown field", "PUT", "/v1/catalog-triggers/price_drop", "acme", "application/json",
			`{"template":{"id":"bf"},"products":3}`, nil, 400, "invalid_json", "products"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.t = t
			before := f.snapshot()
			r := f.do(tc.method, tc.path, tc.tenant, tc.contentType, tc.body, tc.header...)
			code, msg := errorOf(r)
			if r.status != tc.wantStatus || code != tc.wantCode || !strings.Contains(msg, tc.wantInMsg) {
				t.Fatalf("got %d %q %q; want %d %q with %q in the message", r.status, code, msg, tc.wantStatus, tc.wantCode, tc.wantInMsg)
			}
			f.unchanged(before)
		})
	}
}

func TestTooLargeChangesNothing(t *testing.T) {
	limits := api.DefaultLimits
	limits.MaxBulkBytes, limits.MaxJSONBytes = 4096, 1024
	f := newFixture(t, limits)
	before := f.snapshot()
	for _, tc := range []struct{ path, ct, body string }{
		{"/v1/customers", ndjson, strings.Repeat(`{"id":"c1","email":"ada@example.com"}`+"\n", 200)},
		{"/v1/templates/t/versions", "application/json", `{"from_email":"a@b.example","subject":"x","html":"` + strings.Repeat("x", 2000) + `"}`},
	} {
		r := f.do("POST", tc.path, "acme", tc.ct, tc.body)
		if code, _ := errorOf(r); r.status != 413 || code != "too_large" {
			t.Fatalf("%s: %d %v", tc.path, r.status, r.body)
		}
	}
	f.unchanged(before)
}

// pathParam fills a route's parameters with ids of another tenant.
var pathParam = regexp.MustCompile(`\{[a-z]+\}`)

// TestEveryRouteHidesOtherTenants walks every partner route with the ids
// of another tenant's objects: each answers 404 and changes nothing.
func TestEveryRouteHidesOtherTenants(t *testing.T) {
	f := newFixture(t, api.DefaultLimits)
	f.template("globex")
	f.do("POST", "/v1/customers", "globex", ndjson, `{"id":"c1","email":"g@example.com"}`+"\n"+`{"id":"c2","email":"h@example.com"}`+"\n")
	f.do("POST", "/v1/catalog/items", "globex", ndjson, `{"id":"i1","title":"T","url":"https://s.example/i1","price_cents":1}`+"\n")
	f.do("POST", "/v1/suppressions", "globex", ndjson, `{"email":"s@example.com"}`+"\n")
	f.do("PUT", "/v1/catalog-triggers/price_drop", "globex", "application/json", `{"template":{"id":"bf"}}`)
	r := f.do("POST", "/v1/jobs", "globex", "application/json", job(""), "Idempotency-Key", "k")
	jobID := r.body["id"].(string)
	ids := map[string]string{"/v1/jobs/{id}": jobID, "/v1/templates/{id}": "bf", "/v1/customers/{id}": "c1",
		"/v1/catalog/items/{id}": "i1", "{email}": "s@example.com", "{version}": "1", "{customer}": "c2",
		"{kind}": "price_drop"}
	// Routes that name no object of a tenant: lists and uploads are scoped
	// to the caller by construction, and the tests above cover them. A
	// template id is a name in the caller's own namespace: adding a version
	// of "bf" makes the caller's own template.
	unscoped := []string{"POST /v1/templates/{id}/versions", "GET /v1/openapi.json", "GET /v1/profile", "PUT /v1/profile", "POST /v1/customers",
		"POST /v1/catalog/items", "POST /v1/recommendations", "POST /v1/events", "POST /v1/suppressions",
		"POST /v1/jobs", "GET /v1/jobs", "GET /v1/catalog-triggers", "PUT /v1/catalog-triggers/{kind}", "GET /u/{token}", "POST /u/{token}", "POST /v1/webhooks/esp",
		"POST /v1/webhooks/ses", "POST /v1/webhooks/sendgrid",
		// The caller's own settings, and the operators' routes, which no
		// partner token opens (tenants_test.go).
		"GET /v1/tenant", "GET /v1/ops/tenants", "GET /v1/ops/tenants/{id}", "PUT /v1/ops/tenants/{id}",
		"POST /v1/ops/tenants/{id}/suspend", "POST /v1/ops/tenants/{id}/resume"}
	walked := 0
	for _, route := range f.api.Routes() {
		if slices.Contains(unscoped, route) {
			continue
		}
		method, path, _ := strings.Cut(route, " ")
		id := ""
		for prefix, v := range ids {
			if strings.HasPrefix(path, strings.TrimSuffix(prefix, "{id}")) && strings.HasSuffix(prefix, "{id}") {
				id = v
			}
		}
		filled := pathParam.ReplaceAllStringFunc(path, func(p string) string {
			if p == "{id}" && id != "" {
				return id
			}
			if v, ok := ids[p]; ok {
				return url.PathEscape(v)
			}
			t.Fatalf("route %s: no id for %s", route, p)
			return ""
		})
		body, ct := "", ""
		if method == "POST" {
			body, ct = "{}", "application/json"
		}
		t.Run(route, func(t *testing.T) {
			f.t = t
			before := f.snapshot()
			r := f.do(method, filled, "acme", ct, body)
			if code, _ := errorOf(r); r.status != 404 || code != "not_found" {
				t.Fatalf("%s %s as another tenant: %d %v", method, filled, r.status, r.body)
			}
			f.unchanged(before)
			// The owner gets something else than 404 on the same path.
			if own := f.do(method, filled, "globex", ct, body); own.status == 404 {
				t.Fatalf("%s %s as the owner: 404 %v", method, filled, own.body)
			}
			walked++
		})
	}
	if walked < 9 {
		t.Fatalf("walked %d routes naming objects; the route list lost some", walked)
	}
}

func TestIdempotencyReplaysTheFirstAnswerAndRefusesInFlight(t *testing.T) {
	f := newFixture(t, api.DefaultLimits)
	f.template("acme")
	raw := func(key string) (int, string, http.Header) {
		req, _ := http.NewRequest("POST", f.srv.URL+"/v1/jobs", strings.NewReader(job("")))
		req.Header.Set(api.TenantHeader, "acme")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := f.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	s1, b1, _ := raw("k")
	time.Sleep(1100 * time.Millisecond) // a fresh answer would differ in time-derived fields
	s2, b2, h2 := raw("k")
	if s1 != 202 || s2 != 202 || b1 != b2 || h2.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("same key and body: %d then %d (replayed %q); bodies equal: %v\n%s\n%s", s1, s2, h2.Get("Idempotent-Replayed"), b1 == b2, b1, b2)
	}
	// Hold the key as a request in flight would.
	ctx := context.Background()
	tx, err := f.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('job-key/' || 'acme' || '/' || 'busy', 0))`); err != nil {
		t.Fatal(err)
	}
	before := f.snapshot()
	r := f.do("POST", "/v1/jobs", "acme", "application/json", job(""), "Idempotency-Key", "busy")
	if code, _ := errorOf(r); r.status != 409 || code != "idempotency_key_in_flight" || r.header.Get("Retry-After") == "" {
		t.Fatalf("key in flight: %d %v", r.status, r.body)
	}
	f.unchanged(before)
	_ = tx.Rollback(ctx)
	if r := f.do("POST", "/v1/jobs", "acme", "application/json", job(""), "Idempotency-Key", "busy"); r.status != 202 {
		t.Fatalf("after the first request ended: %d %v", r.status, r.body)
	}
}

func TestJobListPagesWithACursor(t *testing.T) {
	f := newFixture(t, api.DefaultLimits)
	f.template("acme")
	f.template("globex")
	var want []string
	for i := range 5 {
		r := f.do("POST", "/v1/jobs", "acme", "application/json", job(""), "Idempotency-Key", fmt.Sprint("k", i))
		want = append([]string{r.body["id"].(string)}, want...) // newest first
	}
	f.do("POST", "/v1/jobs", "globex", "application/json", job(""), "Idempotency-Key", "k0")
	var got []string
	path := "/v1/jobs?limit=2"
	for pages := 0; path != ""; pages++ {
		if pages > 5 {
			t.Fatal("cursor does not end")
		}
		r := f.do("GET", path, "acme", "", "")
		if r.status != 200 {
			t.Fatalf("%s: %d %v", path, r.status, r.body)
		}
		for _, j := range r.body["jobs"].([]any) {
			got = append(got, j.(map[string]any)["id"].(string))
		}
		path = ""
		if c, ok := r.body["next_cursor"].(string); ok {
			path = "/v1/jobs?limit=2&cursor=" + url.QueryEscape(c)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("jobs listed (-want +got):\n%s", diff)
	}
	if r := f.do("GET", "/v1/jobs?cursor=nonsense", "acme", "", ""); r.status != 422 {
		t.Fatalf("bad cursor: %d", r.status)
	}
}

func TestPauseResumeCancel(t *testing.T) {
	f := newFixture(t, api.DefaultLimits)
	f.template("acme")
	id := f.do("POST", "/v1/jobs", "acme", "application/json", job(""), "Idempotency-Key", "k").body["id"].(string)
	ctx := context.Background()
	state := func() (string, int) {
		var s string
		var outbox int
		if err := f.db.QueryRow(ctx, `SELECT state, (SELECT count(*) FROM outbox WHERE job_id = $1) FROM jobs WHERE id = $1`, id).Scan(&s, &outbox); err != nil {
			t.Fatal(err)
		}
		return s, outbox
	}
	// A batch published before the pause, which dispatch would then hold.
	if _, err := f.db.Exec(ctx, `INSERT INTO job_batches (tenant_id, job_id, seq, customer_ids, published_at, publishes) VALUES ('acme', $1, 0, '{c1}', now(), 1)`, id); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		action     string
		wantStatus int
		wantShown  string
		wantState  string
		wantOutbox int
	}{
		{"pause", 200, "paused", "paused", 1},
		{"pause", 200, "paused", "paused", 1}, // repeating is a no-op
		{"resume", 200, "planning", "active", 1},
		{"cancel", 200, "cancelled", "cancelled", 0},
		{"cancel", 200, "cancelled", "cancelled", 0},
		{"resume", 409, "", "cancelled", 0},
		{"pause", 409, "", "cancelled", 0},
	}
	for _, s := range steps {
		r := f.do("POST", "/v1/jobs/"+id+"/"+s.action, "acme", "", "")
		if r.status != s.wantStatus || (s.wantShown != "" && r.body["state"] != s.wantShown) {
			t.Fatalf("%s: %d %v", s.action, r.status, r.body)
		}
		if got, outbox := state(); got != s.wantState || outbox != s.wantOutbox {
			t.Fatalf("after %s: state %s with %d outbox rows; want %s with %d", s.action, got, outbox, s.wantState, s.wantOutbox)
		}
		if s.action == "resume" && s.wantStatus == 200 {
			var unpublished int
			if err := f.db.QueryRow(ctx, `SELECT count(*) FROM job_batches WHERE job_id = $1 AND published_at IS NULL`, id).Scan(&unpublished); err != nil {
				t.Fatal(err)
			}
			if unpublished != 1 {
				t.Fatalf("resume left %d batches to publish again, want 1", unpublished)
			}
		}
	}
}

func TestScheduledJobIsPlannedAtSendAt(t *testing.T) {
	f := newFixture(t, api.DefaultLimits)
	f.template("acme")
	sendAt := time.Now().Add(3 * time.Hour).UTC().Truncate(time.Second)
	r := f.do("POST", "/v1/jobs", "acme", "application/json", job(`,"send_at":"`+sendAt.Format(time.RFC3339)+`"`), "Idempotency-Key", "k")
	if r.status != 202 || r.body["state"] != "scheduled" {
		t.Fatalf("scheduled job: %d %v", r.status, r.body)
	}
	deadline, _ := time.Parse(time.RFC3339, r.body["deadline"].(string))
	if got := deadline.Sub(sendAt); got != 4*time.Hour {
		t.Fatalf("default deadline is %s after send_at, want 4h", got)
	}
	var leaseUntil time.Time
	if err := f.db.QueryRow(context.Background(), `SELECT lease_until FROM outbox`).Scan(&leaseUntil); err != nil {
		t.Fatal(err)
	}
	if !leaseUntil.Equal(sendAt) {
		t.Fatalf("planning task due at %s, want %s", leaseUntil, sendAt)
	}
}

func TestSegmentSelectsByAttributes(t *testing.T) {
	f := newFixture(t, api.DefaultLimits)
	f.template("acme")
	f.do("POST", "/v1/customers", "acme", ndjson, strings.Join([]string{
		`{"id":"c1","email":"a@example.com","attributes":{"tier":"gold","ltv":250,"tags":["vip","shoes"]}}`,
		`{"id":"c2","email":"b@example.com","attributes":{"tier":"silver","ltv":900}}`,
		`{"id":"c3","email":"c@example.com","attributes":{"tier":"gold","ltv":50}}`,
		`{"id":"c4","email":"d@example.com","attributes":{"tier":"gold","ltv":300},"subscribed":false}`,
		`{"id":"c5","email":"e@example.com","attributes":{"tier":"it's \"quoted\""}}`,
	}, "\n")+"\n")
	tests := []struct {
		segment string
		want    []string
	}{
		{`{"attribute":"tier","op":"eq","value":"gold"}`, []string{"c1", "c3"}},
		{`{"all":[{"attribute":"tier","op":"eq","value":"gold"},{"attribute":"ltv","op":"ge","value":100}]}`, []string{"c1"}},
		{`{"any":[{"attribute":"ltv","op":"gt","value":500},{"attribute":"tags","op":"eq","value":"vip"}]}`, []string{"c1", "c2"}},
		{`{"attribute":"tier","op":"in","values":["silver","it's \"quoted\""]}`, []string{"c2", "c5"}},
		{`{"not":{"attribute":"ltv","op":"exists"}}`, []string{"c5"}},
	}
	for i, tc := range tests {
		r := f.do("POST", "/v1/jobs", "acme", "application/json",
			`{"channel":"email","template":{"id":"bf"},"audience":{"segment":`+tc.segment+`}}`, "Idempotency-Key", fmt.Sprint("k", i))
		if r.status != 202 {
			t.Fatalf("%s: %d %v", tc.segment, r.status, r.body)
		}
		// The planner's query for a segment audience (audience_segment.sql).
		b, _ := os.ReadFile("../planner/sql/audience_segment.sql")
		var path string
		if err := f.db.QueryRow(context.Background(), `SELECT audience->>'segment_path' FROM jobs WHERE id = $1`, r.body["id"]).Scan(&path); err != nil {
			t.Fatal(err)
		}
		rows, err := f.db.Query(context.Background(), string(b), pgx.StrictNamedArgs{
			"tenant": "acme", "channel": "email", "after": "", "page_size": 100, "segment_path": path,
		})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			got = append(got, id)
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s (%s): %v", tc.segment, path, err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("segment %s (%s) selects (-want +got):\n%s", tc.segment, path, diff)
		}
	}
}

func TestRateLimitAnswers429WithRetryAfter(t *testing.T) {
	limits := api.DefaultLimits
	limits.TenantRate, limits.TenantBurst = 1, 3
	f := newFixture(t, limits)
	var last response
	for range 4 {
		last = f.do("GET", "/v1/jobs", "acme", "", "")
	}
	if code, _ := errorOf(last); last.status != 429 || code != "rate_limited" || last.header.Get("Retry-After") != "1" {
		t.Fatalf("fourth request in a burst of 3: %d %v Retry-After %q", last.status, last.body, last.header.Get("Retry-After"))
	}
	// Other tenants have their own budget.
	if r := f.do("GET", "/v1/jobs", "globex", "", ""); r.status != 200 {
		t.Fatalf("another tenant: %d", r.status)
	}
}

func TestEventsLandInMonthlyPartitions(t *testing.T) {
	f := newFixture(t, api.DefaultLimits)
	now := time.Now().UTC()
	lastMonth := now.AddDate(0, -1, 0)
	body := fmt.Sprintf(`{"customer_id":"c1","kind":"view","item_id":"i1","occurred_at":%q}
{"customer_id":"c1","kind":"add_to_cart","item_id":"i1","occurred_at":%q}
{"customer_id":"c1","kind":"purchase","item_id":"i1","quantity":2,"occurred_at":%q}
`, lastMonth.Format(time.RFC3339), now.Add(-time.Minute).Format(time.RFC3339), now.Format(time.RFC3339))
	if r := f.do("POST", "/v1/events", "acme", ndjson, body); r.status != 200 || r.body["upserted"].(float64) != 3 {
		t.Fatalf("events upload: %d %v", r.status, r.body)
	}
	var parts int
	if err := f.db.QueryRow(context.Background(), `SELECT count(DISTINCT tableoid) FROM events`).Scan(&parts); err != nil {
		t.Fatal(err)
	}
	if parts != 2 {
		t.Fatalf("events in %d partitions, want 2", parts)
	}
	before := f.snapshot()
	r := f.do("POST", "/v1/events", "acme", ndjson, `{"customer_id":"c1","kind":"wishlist","item_id":"i1","occurred_at":"2026-01-01T00:00:00Z"}`+"\n")
	if code, msg := errorOf(r); r.status != 422 || code != "invalid_lines" || !strings.Contains(msg, "kind") {
		t.Fatalf("bad kind: %d %v", r.status, r.body)
	}
	f.unchanged(before)
}

func TestEraseCustomerRemovesTheirData(t *testing.T) {
	f := newFixture(t, api.DefaultLimits)
	f.do("POST", "/v1/customers", "acme", ndjson, `{"id":"c1","email":"ada@example.com"}`+"\n"+`{"id":"c2","email":"bob@example.com"}`+"\n")
	f.do("POST", "/v1/recommendations", "acme", ndjson, `{"customer_id":"c1","item_ids":["i1"]}`+"\n")
	f.do("POST", "/v1/events", "acme", ndjson, `{"customer_id":"c1","kind":"view","item_id":"i1","occurred_at":"`+time.Now().UTC().Format(time.RFC3339)+`"}`+"\n")
	req, _ := http.NewRequest("DELETE", f.srv.URL+"/v1/customers/c1", nil)
	req.Header.Set(api.TenantHeader, "acme")
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("erase: %d", resp.StatusCode)
	}
	for table, want := range map[string]int{"customers": 1, "recommendations": 0, "events": 0} {
		if n := f.count(table); n != want {
			t.Errorf("%s has %d rows after erasure, want %d", table, n, want)
		}
	}
	if r := f.do("GET", "/v1/customers/c1", "acme", "", ""); r.status != 404 {
		t.Fatalf("erased customer still readable: %d", r.status)
	}
}

func TestOneClickUnsubscribe(t *testing.T) {
	f := newFixture(t, api.DefaultLimits)
	signer, _ := unsubscribe.NewSigner([]byte(testSecret))
	token := signer.Sign(unsubscribe.Claim{Tenant: "acme", Customer: "c1", Email: "Ada@Example.com", Job: "j1"})
	post := func(tok, body string) *http.Response {
		resp, err := f.client.Post(f.srv.URL+"/u/"+tok, "application/x-www-form-urlencoded", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	// The landing page changes nothing and offers the button.
	resp, err := f.client.Get(f.srv.URL + "/u/" + token)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), `name="List-Unsubscribe" value="One-Click"`) || f.count("suppressions") != 0 {
		t.Fatalf("landing page: %d, %d suppressions\n%s", resp.StatusCode, f.count("suppressions"), page)
	}
	if r := post(token, "nothing=here"); r.StatusCode != 400 || f.count("suppressions") != 0 {
		t.Fatalf("POST without List-Unsubscribe=One-Click: %d", r.StatusCode)
	}
	if r := post(token+"x", "List-Unsubscribe=One-Click"); r.StatusCode != 404 || f.count("suppressions") != 0 {
		t.Fatalf("forged token: %d", r.StatusCode)
	}
	for range 2 { // idempotent
		r := post(token, "List-Unsubscribe=One-Click")
		if r.StatusCode != 200 || len(r.Cookies()) != 0 {
			t.Fatalf("one-click POST: %d, cookies %v", r.StatusCode, r.Cookies())
		}
	}
	var email, reason string
	if err := f.db.QueryRow(context.Background(), `SELECT email, reason FROM suppressions WHERE tenant_id = 'acme'`).Scan(&email, &reason); err != nil {
		t.Fatal(err)
	}
	if email != "ada@example.com" || reason != "unsubscribed" || f.count("suppressions") != 1 {
		t.Fatalf("suppression %q %q (%d rows)", email, reason, f.count("suppressions"))
	}
	// The partner cannot lift it.
	req, _ := http.NewRequest("DELETE", f.srv.URL+"/v1/suppressions/ada@example.com", nil)
	req.Header.Set(api.TenantHeader, "acme")
	del, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	del.Body.Close()
	if del.StatusCode != 409 || f.count("suppressions") != 1 {
		t.Fatalf("partner lifting an unsubscribe: %d", del.StatusCode)
	}
}

func TestWebhookNeedsItsSignature(t *testing.T) {
	f := newFixture(t, api.DefaultLimits)
	body := `{"events":[{"type":"bounce","tenant":"acme","email":"gone@example.com","permanent":true},{"type":"bounce","tenant":"acme","email":"full@example.com"},{"type":"complaint","tenant":"acme","email":"angry@example.com"}]}`
	send := func(sig string) int {
		req, _ := http.NewRequest("POST", f.srv.URL+"/v1/webhooks/esp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if sig != "" {
			req.Header.Set(api.WebhookSignatureHeader, sig)
		}
		resp, err := f.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, sig := range []string{"", api.SignWebhook("wrong-secret-0123456789", []byte(body), time.Now()),
		api.SignWebhook(webhookSecret, []byte(body), time.Now().Add(-time.Hour))} {
		if got := send(sig); got != 401 || f.count("suppressions") != 0 {
			t.Fatalf("signature %q: %d", sig, got)
		}
	}
	if got := send(api.SignWebhook(webhookSecret, []byte(body), time.Now())); got != 200 || f.count("suppressions") != 2 {
		t.Fatalf("signed webhook: %d, %d suppressions (want the hard bounce and the complaint)", got, f.count("suppressions"))
	}
}

// TestRedriveRefusesWhatCannotSend: a re-drive of a paused, cancelled or
// overdue job is a 409 that names why, and changes nothing.
func TestRedriveRefusesWhatCannotSend(t *testing.T) {
	f := newFixture(t, api.DefaultLimits)
	f.template("acme")
	ctx := context.Background()
	newJob := func(key string) string {
		return f.do("POST", "/v1/jobs", "acme", "application/json", job(""), "Idempotency-Key", key).body["id"].(string)
	}
	redrive := func(id, wantCode string) {
		t.Helper()
		before := f.snapshot()
		r := f.do("POST", "/v1/jobs/"+id+"/redrive", "acme", "", "")
		if code, msg := errorOf(r); r.status != 409 || code != wantCode {
			t.Fatalf("re-drive: %d %q %q; want 409 %s", r.status, code, msg, wantCode)
		}
		f.unchanged(before)
	}
	paused := newJob("paused")
	f.do("POST", "/v1/jobs/"+paused+"/pause", "acme", "", "")
	redrive(paused, "invalid_state")
	cancelled := newJob("cancelled")
	f.do("POST", "/v1/jobs/"+cancelled+"/cancel", "acme", "", "")
	redrive(cancelled, "invalid_state")
	overdue := newJob("overdue")
	if _, err := f.db.Exec(ctx, `UPDATE jobs SET submitted_at = now() - interval '2 hours', deadline = now() - interval '1 minute' WHERE id = $1`, overdue); err != nil {
		t.Fatal(err)
	}
	redrive(overdue, "deadline_passed")
	if r := f.do("POST", "/v1/jobs/"+newJob("fine")+"/redrive", "acme", "", ""); r.status != 200 || r.body["redriven_recipients"] != float64(0) {
		t.Fatalf("re-drive of an active job with nothing failed: %d %v", r.status, r.body)
	}
}
