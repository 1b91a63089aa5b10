package api_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"herald/devtools/testenv"
	"herald/ingest/internal/api"
	"herald/ingest/internal/store"
)

// newTenantFixture is a fixture without tenants: every tenant is made
// through the operator API, as in production.
func newTenantFixture(t *testing.T) *fixture {
	t.Helper()
	db := testenv.DB(t)
	a := api.New(store.New(db), slog.New(slog.DiscardHandler), prometheus.NewRegistry(), api.Config{Limits: api.DefaultLimits})
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	return &fixture{t: t, db: db, srv: srv, api: a, client: checkedClient(t)}
}

// asOps sends a request as the edge forwards an operator's: the role
// header and no tenant.
func (f *fixture) asOps(method, path, body string) response {
	f.t.Helper()
	ct := ""
	if body != "" {
		ct = "application/json"
	}
	return f.do(method, path, "", ct, body, "X-Herald-Role", "ops")
}

// stored returns what dispatch reads of a tenant (ledger/sql/tenant.sql),
// and its state.
func (f *fixture) stored(id string) (state string, rate *float64, dailyCap *int, providers *string) {
	f.t.Helper()
	err := f.db.QueryRow(context.Background(), `SELECT state, send_rate, daily_cap, providers::text FROM tenants WHERE id = $1`, id).
		Scan(&state, &rate, &dailyCap, &providers)
	if err != nil {
		f.t.Fatalf("tenant %s: %v", id, err)
	}
	return state, rate, dailyCap, providers
}

func TestOperatorCreatesTenantsAndPartnersReadTheirOwn(t *testing.T) {
	f := newTenantFixture(t)
	if r := f.do("GET", "/v1/jobs", "initech", "", ""); r.status != 403 || r.body["error"].(map[string]any)["code"] != "tenant_unknown" {
		t.Fatalf("a tenant no operator created: %d %v", r.status, r.body)
	}
	if n := f.count("tenants"); n != 0 {
		t.Fatalf("a refused request made %d tenants", n)
	}

	r := f.asOps("PUT", "/v1/ops/tenants/initech", `{"send_rate":50,"daily_cap":3,"providers":{"email":["esp","smtp"],"onsite":["onsite"]}}`)
	if r.status != 201 || r.header.Get("Location") != "/v1/ops/tenants/initech" || r.body["state"] != "active" {
		t.Fatalf("create: %d %v %v", r.status, r.header, r.body)
	}
	state, rate, dailyCap, providers := f.stored("initech")
	if state != "active" || *rate != 50 || *dailyCap != 3 || *providers != `{"email": ["esp", "smtp"], "onsite": ["onsite"]}` {
		t.Fatalf("stored %s %v %v %v", state, *rate, *dailyCap, *providers)
	}

	own := f.do("GET", "/v1/tenant", "initech", "", "")
	if own.status != 200 {
		t.Fatalf("GET /v1/tenant: %d %v", own.status, own.body)
	}
	byOps := f.asOps("GET", "/v1/ops/tenants/initech", "")
	if diff := cmp.Diff(byOps.body, own.body); byOps.status != 200 || diff != "" {
		t.Fatalf("the operator's and the partner's view differ (%d):\n%s", byOps.status, diff)
	}
	if own.body["send_rate"] != 50.0 || own.body["daily_cap"] != 3.0 {
		t.Fatalf("GET /v1/tenant: %v", own.body)
	}
	if r := f.do("GET", "/v1/jobs", "initech", "", ""); r.status != 200 {
		t.Fatalf("the created tenant's GET /v1/jobs: %d %v", r.status, r.body)
	}

	// A PUT replaces every setting: what it leaves out is the default.
	r = f.asOps("PUT", "/v1/ops/tenants/initech", `{"daily_cap":2}`)
	if r.status != 200 || r.body["send_rate"] != nil || r.body["providers"] != nil || r.body["daily_cap"] != 2.0 {
		t.Fatalf("replace: %d %v", r.status, r.body)
	}
	if _, rate, dailyCap, providers := f.stored("initech"); rate != nil || *dailyCap != 2 || providers != nil {
		t.Fatalf("replaced, stored %v %v %v", rate, *dailyCap, providers)
	}
	if r := f.asOps("GET", "/v1/ops/tenants/globex", ""); r.status != 404 {
		t.Fatalf("GET an unknown tenant: %d", r.status)
	}
}

func TestTenantListPages(t *testing.T) {
	f := newTenantFixture(t)
	for _, id := range []string{"c", "a", "b"} {
		if r := f.asOps("PUT", "/v1/ops/tenants/"+id, `{}`); r.status != 201 {
			t.Fatalf("create %s: %d", id, r.status)
		}
	}
	ids := func(r response) []string {
		var out []string
		for _, t := range r.body["tenants"].([]any) {
			out = append(out, t.(map[string]any)["id"].(string))
		}
		return out
	}
	first := f.asOps("GET", "/v1/ops/tenants?limit=2", "")
	if diff := cmp.Diff([]string{"a", "b"}, ids(first)); first.status != 200 || diff != "" || first.body["next_cursor"] != "b" {
		t.Fatalf("first page: %d %v", first.status, first.body)
	}
	rest := f.asOps("GET", "/v1/ops/tenants?limit=2&cursor=b", "")
	if diff := cmp.Diff([]string{"c"}, ids(rest)); rest.status != 200 || diff != "" || rest.body["next_cursor"] != nil {
		t.Fatalf("last page: %d %v", rest.status, rest.body)
	}
	for _, q := range []string{"limit=0", "limit=501", "limit=x", "cursor=%20a"} {
		if r := f.asOps("GET", "/v1/ops/tenants?"+q, ""); r.status != 422 {
			t.Errorf("?%s: %d, want 422", q, r.status)
		}
	}
}

// A partner's token never opens the operator API: without the role the
// edge sets from an operator's token, every operator route is 403 and
// changes nothing.
func TestOperatorRoutesRefusePartners(t *testing.T) {
	f := newTenantFixture(t)
	if r := f.asOps("PUT", "/v1/ops/tenants/acme", `{}`); r.status != 201 {
		t.Fatalf("create acme: %d", r.status)
	}
	before := f.snapshot()
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/v1/ops/tenants", ""},
		{"GET", "/v1/ops/tenants/acme", ""},
		{"PUT", "/v1/ops/tenants/acme", `{"send_rate":1000}`},
		{"PUT", "/v1/ops/tenants/globex", `{}`},
		{"POST", "/v1/ops/tenants/acme/suspend", ""},
		{"POST", "/v1/ops/tenants/acme/resume", ""},
	} {
		for _, role := range []string{"", "partner", "OPS"} {
			var header []string
			if role != "" {
				header = []string{"X-Herald-Role", role}
			}
			r := f.do(tc.method, tc.path, "acme", "application/json", tc.body, header...)
			if code, _ := errorOf(r); r.status != 403 || code != "forbidden" {
				t.Errorf("%s %s as partner acme, role %q: %d %v", tc.method, tc.path, role, r.status, r.body)
			}
		}
	}
	f.unchanged(before)
	if state, rate, _, _ := f.stored("acme"); state != "active" || rate != nil {
		t.Fatalf("acme is %s with rate %v after partners' calls", state, rate)
	}
}

// Every setting out of bounds is 422 naming its field, before the
// database: nothing is stored, and the answer is Herald's, not a CHECK
// violation's 500.
func TestTenantSettingsOutOfBounds(t *testing.T) {
	f := newTenantFixture(t)
	for _, tc := range []struct {
		name, path, body, field string
	}{
		{"zero rate", "/v1/ops/tenants/acme", `{"send_rate":0}`, "send_rate"},
		{"negative rate", "/v1/ops/tenants/acme", `{"send_rate":-5}`, "send_rate"},
		{"rate too high", "/v1/ops/tenants/acme", `{"send_rate":100001}`, "send_rate"},
		{"zero cap", "/v1/ops/tenants/acme", `{"daily_cap":0}`, "daily_cap"},
		{"cap beyond an integer", "/v1/ops/tenants/acme", `{"daily_cap":2147483648}`, "daily_cap"},
		{"unknown channel", "/v1/ops/tenants/acme", `{"providers":{"sms":["smtp"]}}`, "providers.sms"},
		{"no providers", "/v1/ops/tenants/acme", `{"providers":{"email":[]}}`, "providers.email"},
		{"another channel's provider", "/v1/ops/tenants/acme", `{"providers":{"email":["esp","ads"]}}`, "providers.email[1]"},
		{"unknown provider", "/v1/ops/tenants/acme", `{"providers":{"ad":["meta"]}}`, "providers.ad[0]"},
		{"a provider twice", "/v1/ops/tenants/acme", `{"providers":{"email":["esp","smtp","esp"]}}`, "providers.email[2]"},
		{"not a tenant id", "/v1/ops/tenants/-acme", `{}`, "id"},
		{"a tenant id too long", "/v1/ops/tenants/a12345678901234567890123456789012345678901234567890123456789012345", `{}`, "id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.t = t
			r := f.asOps("PUT", tc.path, tc.body)
			if r.status != 422 {
				t.Fatalf("%s: %d %v", tc.body, r.status, r.body)
			}
			details, _ := r.body["error"].(map[string]any)["details"].([]any)
			if len(details) == 0 || details[0].(map[string]any)["field"] != tc.field {
				t.Fatalf("%s: details %v, want field %s", tc.body, details, tc.field)
			}
			if n := f.count("tenants"); n != 0 {
				t.Fatalf("%s stored %d tenants", tc.body, n)
			}
		})
	}
	for _, path := range []string{"/v1/ops/tenants/-acme", "/v1/ops/tenants/-acme/suspend", "/v1/ops/tenants/-acme/resume"} {
		method := "POST"
		if path == "/v1/ops/tenants/-acme" {
			method = "GET"
		}
		if r := f.asOps(method, path, ""); r.status != 422 {
			t.Errorf("%s %s: %d, want 422", method, path, r.status)
		}
	}
	for _, path := range []string{"/v1/ops/tenants/nobody/suspend", "/v1/ops/tenants/nobody/resume"} {
		if r := f.asOps("POST", path, ""); r.status != 404 {
			t.Errorf("POST %s: %d, want 404", path, r.status)
		}
	}
}

// Suspending a tenant refuses its requests and pauses its active jobs in
// the same step; resuming it serves its requests again but leaves its jobs
// paused until the partner resumes them.
func TestSuspendedTenantIsRefusedAndItsJobsPause(t *testing.T) {
	f := newTenantFixture(t)
	for _, id := range []string{"acme", "globex"} {
		if r := f.asOps("PUT", "/v1/ops/tenants/"+id, `{}`); r.status != 201 {
			t.Fatalf("create %s: %d", id, r.status)
		}
		f.template(id)
	}
	jobState := func(id string) string {
		var s string
		if err := f.db.QueryRow(context.Background(), `SELECT state FROM jobs WHERE id = $1`, id).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	submit := func(tenant, key string) string {
		r := f.do("POST", "/v1/jobs", tenant, "application/json", job(""), "Idempotency-Key", key)
		if r.status != 202 {
			t.Fatalf("submit %s as %s: %d %v", key, tenant, r.status, r.body)
		}
		return r.body["id"].(string)
	}
	running, cancelled, other := submit("acme", "run"), submit("acme", "gone"), submit("globex", "other")
	if r := f.do("POST", "/v1/jobs/"+cancelled+"/cancel", "acme", "", ""); r.status != 200 {
		t.Fatalf("cancel: %d", r.status)
	}

	r := f.asOps("POST", "/v1/ops/tenants/acme/suspend", "")
	if diff := cmp.Diff([]any{running}, r.body["paused_jobs"]); r.status != 200 || r.body["state"] != "suspended" || diff != "" {
		t.Fatalf("suspend: %d %v", r.status, r.body)
	}
	if s := jobState(running); s != "paused" {
		t.Fatalf("the suspended tenant's running job is %s", s)
	}
	if s, o := jobState(cancelled), jobState(other); s != "cancelled" || o != "active" {
		t.Fatalf("a cancelled job became %s, another tenant's %s", s, o)
	}
	before := f.snapshot()
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/v1/tenant", ""},
		{"GET", "/v1/jobs", ""},
		{"POST", "/v1/jobs/" + running + "/resume", ""},
		{"POST", "/v1/jobs", job("")},
	} {
		r := f.do(tc.method, tc.path, "acme", "application/json", tc.body, "Idempotency-Key", "again")
		if code, _ := errorOf(r); r.status != 403 || code != "tenant_suspended" {
			t.Errorf("%s %s while suspended: %d %v", tc.method, tc.path, r.status, r.body)
		}
	}
	f.unchanged(before)
	if r := f.do("GET", "/v1/jobs", "globex", "", ""); r.status != 200 {
		t.Fatalf("another tenant while acme is suspended: %d", r.status)
	}
	if r := f.asOps("POST", "/v1/ops/tenants/acme/suspend", ""); r.status != 200 || len(r.body["paused_jobs"].([]any)) != 0 {
		t.Fatalf("suspend again: %d %v", r.status, r.body)
	}

	if r := f.asOps("POST", "/v1/ops/tenants/acme/resume", ""); r.status != 200 || r.body["state"] != "active" {
		t.Fatalf("resume: %d %v", r.status, r.body)
	}
	if s := jobState(running); s != "paused" {
		t.Fatalf("resuming the tenant made its job %s; the partner resumes it", s)
	}
	if r := f.do("POST", "/v1/jobs/"+running+"/resume", "acme", "", ""); r.status != 200 || jobState(running) != "active" {
		t.Fatalf("the partner's resume after the tenant's: %d %v", r.status, r.body)
	}
}
