package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"herald/devtools/openapicheck"
	"herald/devtools/testenv"
	"herald/ingest/internal/api"
	"herald/ingest/internal/store"
	"herald/shared/tenantid"
	"herald/shared/unsubscribe"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type fixture struct {
	t   *testing.T
	db  *pgxpool.Pool
	srv *httptest.Server
	api *api.API
	// client checks every exchange against the OpenAPI document.
	client *http.Client
}

// testSecret signs the unsubscribe tokens of the tests.
const testSecret = "test-unsubscribe-secret-0123456789"

func newFixture(t *testing.T, limits api.Limits) *fixture {
	t.Helper()
	db := testenv.DB(t)
	signer, err := unsubscribe.NewSigner([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	a := api.New(store.New(db), slog.New(slog.DiscardHandler), prometheus.NewRegistry(),
		api.Config{Limits: limits, Unsubscribe: signer, WebhookSecret: webhookSecret})
	// The tenants most tests use exist from the start, so that a
	// snapshot taken before their first request counts them already.
	for _, id := range []string{"acme", "globex", "initech"} {
		if _, err := db.Exec(context.Background(), `INSERT INTO tenants (id) VALUES ($1)`, id); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(withTenants(t, db, a.Handler()))
	t.Cleanup(srv.Close)
	return &fixture{t: t, db: db, srv: srv, api: a, client: checkedClient(t)}
}

// withTenants creates, as an operator would have, the tenant each request
// names before h serves it: the tests of the partner routes are about
// those routes, not about tenant administration (tenants_test.go).
func withTenants(t testing.TB, db *pgxpool.Pool, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ids := r.Header.Values(api.TenantHeader); len(ids) == 1 && tenantid.Valid(ids[0]) {
			if _, err := db.Exec(r.Context(), `INSERT INTO tenants (id) VALUES ($1) ON CONFLICT (id) DO NOTHING`, ids[0]); err != nil {
				t.Errorf("create tenant %s: %v", ids[0], err)
			}
		}
		h.ServeHTTP(w, r)
	})
}

// checkedClient returns a client whose every request and answer must be
// what the OpenAPI document says.
func checkedClient(t *testing.T) *http.Client { return checkedClientOver(t, nil) }

// checkedClientOver is checkedClient sending through base.
func checkedClientOver(t *testing.T, base http.RoundTripper) *http.Client {
	t.Helper()
	c, err := openapicheck.New(api.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: c.Transport(t, base)}
}

type response struct {
	status int
	body   map[string]any
	header http.Header
}

// do sends a request as tenant (none if empty) and decodes the JSON answer.
func (f *fixture) do(method, path, tenant, contentType, body string, header ...string) response {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	if tenant != "" {
		req.Header.Set(api.TenantHeader, tenant)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := f.client.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if resp.StatusCode == http.StatusNoContent && len(b) == 0 {
		return response{status: resp.StatusCode, header: resp.Header}
	}
	if err := json.Unmarshal(b, &m); err != nil {
		f.t.Fatalf("%s %s answered %d with a body that is not a JSON object: %q", method, path, resp.StatusCode, b)
	}
	return response{status: resp.StatusCode, body: m, header: resp.Header}
}

func (f *fixture) count(table string) int {
	f.t.Helper()
	var n int
	if err := f.db.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

const ndjson = "application/x-ndjson"

// errorOf returns the error code and message of an error answer.
func errorOf(r response) (code, message string) {
	e, _ := r.body["error"].(map[string]any)
	code, _ = e["code"].(string)
	message, _ = e["message"].(string)
	return code, message
}

func TestBadInputIsRejectedAndStoresNothing(t *testing.T) {
	limits := api.DefaultLimits
	limits.MaxBulkBytes = 4096
	limits.MaxJSONBytes = 2048
	f := newFixture(t, limits)
	good := `{"id":"c1","email":"ada@example.com","first_name":"Ada"}` + "\n"
	tests := []struct {
		name        string
		method      string
		path        string
		tenant      string
		contentType string
		body        string
		header      []string
		wantStatus  int
		wantCode    string
		wantInMsg   string
	}{
		{"malformed NDJSON line", "POST", "/v1/customers", "acme", ndjson,
			good + `{"id":"c2","email":"b@example.com"}` + "\n" + `{"id":"c3",` + "\n", nil,
			400, "invalid_lines", "line 3"},
		{"unknown field in a line", "POST", "/v1/customers", "acme", ndjson,
			good + `{"id":"c2","email":"b@example.com","shoe_size":44}` + "\n", nil,
			400, "invalid_lines", "shoe_size"},
		{"invalid email", "POST", "/v1/customers", "acme", ndjson,
			good + `{"id":"c2","email":"not an address"}` + "\n", nil,
			422, "invalid_lines", "line 2: email"},
		{"invalid email and a malformed line", "POST", "/v1/customers", "acme", ndjson,
			good + `{"id":"c2","email":"not an address"}` + "\n" + `{"id":"c3"` + "\n", nil,
			400, "invalid_lines", "line 2: email"},
		{"upload over the size limit", "POST", "/v1/customers", "acme", ndjson,
			strings.Repeat(good, 200), nil,
			413, "too_large", "4096"},
		{"missing tenant header", "POST", "/v1/customers", "", ndjson,
			good, nil, 401, "unauthenticated", "X-Tenant-ID"},
		{"wrong content type", "POST", "/v1/customers", "acme", "text/csv",
			good, nil, 415, "unsupported_media_type", "application/x-ndjson"},
		{"unknown field in a job", "POST", "/v1/jobs", "acme", "application/json",
			`{"channel":"email","template":{"id":"t"},"audience":{"all_subscribed":true},"priority":"high"}`, []string{"Idempotency-Key", "k1"},
			400, "invalid_json", "priority"},
		{"job naming a strategy, a field that is gone", "POST", "/v1/jobs", "acme", "application/json",
			`{"channel":"email","template":{"id":"t"},"audience":{"all_subscribed":true},"strategy":"personalized"}`, []string{"Idempotency-Key", "k5"},
			400, "invalid_json", "picking.strategies"},
		{"job naming a null strategy", "POST", "/v1/jobs", "acme", "application/json",
			`{"channel":"email","template":{"id":"t"},"audience":{"all_subscribed":true},"strategy":null}`, []string{"Idempotency-Key", "k6"},
			400, "invalid_json", "strategy is no longer a field"},
		{"job body over the size limit", "POST", "/v1/jobs", "acme", "application/json",
			`{"channel":"email","campaign":"` + strings.Repeat("x", 3000) + `"}`, []string{"Idempotency-Key", "k2"},
			413, "too_large", "2048"},
		{"job naming an unknown template", "POST", "/v1/jobs", "acme", "application/json",
			`{"channel":"email","template":{"id":"nope"},"audience":{"all_subscribed":true}}`, []string{"Idempotency-Key", "k3"},
			404, "not_found", "nope"},
		{"job without idempotency key", "POST", "/v1/jobs", "acme", "application/json",
			`{"channel":"email","template":{"id":"t"},"audience":{"all_subscribed":true}}`, nil,
			400, "idempotency_key_required", "Idempotency-Key"},
		{"job with a deadline in the past", "POST", "/v1/jobs", "acme", "application/json",
			`{"channel":"email","template":{"id":"t"},"audience":{"all_subscribed":true},"deadline":"2020-01-01T00:00:00Z"}`, []string{"Idempotency-Key", "k4"},
			422, "invalid_request", "deadline"},
		{"template that does not parse", "POST", "/v1/templates/t/versions", "acme", "application/json",
			`{"from_email":"a@b.example","subject":"Hi","html":"{{if .Customer}}"}`, nil,
			422, "invalid_template", "html"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.t = t
			r := f.do(tc.method, tc.path, tc.tenant, tc.contentType, tc.body, tc.header...)
			code, msg := errorOf(r)
			if r.status != tc.wantStatus || code != tc.wantCode || !strings.Contains(msg, tc.wantInMsg) {
				t.Fatalf("got %d %q %q; want %d %q with %q in the message", r.status, code, msg, tc.wantStatus, tc.wantCode, tc.wantInMsg)
			}
			for _, table := range []string{"customers", "jobs", "outbox", "templates"} {
				if n := f.count(table); n != 0 {
					t.Fatalf("%s has %d rows after a rejected request", table, n)
				}
			}
		})
	}
}

func TestLineErrorsNameEveryBadLine(t *testing.T) {
	f := newFixture(t, api.DefaultLimits)
	body := `{"id":"c1","email":"a@example.com"}` + "\n" +
		`{"id":"c2","email":"bad"}` + "\n" +
		"\n" +
		`not json` + "\n" +
		`{"id":"","email":"c@example.com"}` + "\n"
	r := f.do("POST", "/v1/customers", "acme", ndjson, body)
	details, _ := r.body["error"].(map[string]any)["details"].([]any)
	var got []float64
	for _, d := range details {
		got = append(got, d.(map[string]any)["line"].(float64))
	}
	if diff := cmp.Diff([]float64{2, 4, 5}, got); r.status != 400 || diff != "" {
		t.Fatalf("status %d, bad lines (-want +got):\n%s", r.status, diff)
	}
}

func TestUploadsUpsert(t *testing.T) {
	f := newFixture(t, api.DefaultLimits)
	r := f.do("POST", "/v1/customers", "acme", ndjson,
		`{"id":"c1","email":"ada@example.com","first_name":"Ada"}`+"\n"+`{"id":"c2","email":"bob@example.com"}`+"\n")
	if r.status != 200 || r.body["upserted"].(float64) != 2 {
		t.Fatalf("first upload: %d %v", r.status, r.body)
	}
	// The same id twice in one upload: the last line wins.
	r = f.do("POST", "/v1/customers", "acme", ndjson,
		`{"id":"c1","email":"ada@example.com","first_name":"Augusta"}`+"\n"+`{"id":"c1","email":"ada@example.com","first_name":"Ada Augusta","subscribed":false}`+"\n")
	if r.status != 200 {
		t.Fatalf("second upload: %d %v", r.status, r.body)
	}
	var name string
	var subscribed bool
	if err := f.db.QueryRow(context.Background(), `SELECT first_name, subscribed FROM customers WHERE tenant_id = 'acme' AND id = 'c1'`).Scan(&name, &subscribed); err != nil {
		t.Fatal(err)
	}
	if name != "Ada Augusta" || subscribed || f.count("customers") != 2 {
		t.Fatalf("after upsert: name %q subscribed %v, %d customers", name, subscribed, f.count("customers"))
	}
}

func (f *fixture) template(tenant string) {
	f.t.Helper()
	r := f.do("POST", "/v1/templates/bf/versions", tenant, "application/json",
		`{"from_email":"deals@acme.example","subject":"Hi {{.Customer.FirstName}}","html":"<p>Hi {{.Customer.FirstName}}</p>"}`)
	if r.status != 201 {
		f.t.Fatalf("add template: %d %v", r.status, r.body)
	}
}

func TestIdempotencyKey(t *testing.T) {
	f := newFixture(t, api.DefaultLimits)
	f.template("acme")
	job := `{"channel":"email","template":{"id":"bf"},"audience":{"all_subscribed":true}}`
	first := f.do("POST", "/v1/jobs", "acme", "application/json", job, "Idempotency-Key", "k")
	// Same request, other spacing and key order.
	again := f.do("POST", "/v1/jobs", "acme", "application/json",
		`{ "audience": {"all_subscribed": true}, "template": {"id": "bf"}, "channel": "email" }`, "Idempotency-Key", "k")
	if first.status != 202 || again.status != 202 || first.body["id"] != again.body["id"] {
		t.Fatalf("same key: %d %v then %d %v", first.status, first.body["id"], again.status, again.body["id"])
	}
	if again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("a replayed answer lacks Idempotent-Replayed: true")
	}
	other := f.do("POST", "/v1/jobs", "acme", "application/json",
		`{"channel":"email","template":{"id":"bf"},"audience":{"all_subscribed":true},"products":3}`, "Idempotency-Key", "k")
	if code, _ := errorOf(other); other.status != 422 || code != "idempotency_key_reused" {
		t.Fatalf("same key, other body: %d %v", other.status, other.body)
	}
	// Another tenant may use the same key for its own job.
	f.template("globex")
	theirs := f.do("POST", "/v1/jobs", "globex", "application/json", job, "Idempotency-Key", "k")
	if theirs.status != 202 || theirs.body["id"] == first.body["id"] {
		t.Fatalf("other tenant, same key: %d %v", theirs.status, theirs.body)
	}
	if n, m := f.count("jobs"), f.count("outbox"); n != 2 || m != 2 {
		t.Fatalf("%d jobs and %d outbox rows, want 2 and 2", n, m)
	}
}

func TestJobsOfAnotherTenantAreNotFound(t *testing.T) {
	f := newFixture(t, api.DefaultLimits)
	f.template("acme")
	r := f.do("POST", "/v1/jobs", "acme", "application/json",
		`{"channel":"email","template":{"id":"bf"},"audience":{"all_subscribed":true}}`, "Idempotency-Key", "k")
	id := r.body["id"].(string)
	if got := f.do("GET", "/v1/jobs/"+id, "acme", "", ""); got.status != 200 || got.body["state"] != "planning" {
		t.Fatalf("own job: %d %v", got.status, got.body)
	}
	if got := f.do("GET", "/v1/jobs/"+id, "globex", "", ""); got.status != 404 {
		t.Fatalf("another tenant's job: %d %v", got.status, got.body)
	}
}

func TestExplicitAudienceMustExist(t *testing.T) {
	f := newFixture(t, api.DefaultLimits)
	f.template("acme")
	f.do("POST", "/v1/customers", "acme", ndjson, `{"id":"c1","email":"a@example.com"}`+"\n")
	r := f.do("POST", "/v1/jobs", "acme", "application/json",
		`{"channel":"email","template":{"id":"bf"},"audience":{"customer_ids":["c1","c9"]}}`, "Idempotency-Key", "k")
	if code, msg := errorOf(r); r.status != 422 || code != "unknown_customers" || !strings.Contains(msg, "c9") {
		t.Fatalf("unknown customer: %d %v", r.status, r.body)
	}
	if f.count("jobs") != 0 {
		t.Fatal("a job was stored")
	}
	deadline := time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339)
	r = f.do("POST", "/v1/jobs", "acme", "application/json",
		`{"channel":"email","template":{"id":"bf"},"audience":{"customer_ids":["c1"]},"deadline":"`+deadline+`"}`, "Idempotency-Key", "k2")
	if r.status != 202 || r.body["deadline"] != deadline {
		t.Fatalf("valid explicit job: %d %v", r.status, r.body)
	}
}

// The tenant is the one X-Tenant-ID the edge set, exactly: a second one (which
// only something other than the edge can have added) or a malformed one is
// refused, never resolved to one of them.
func TestTenantHeaderMustBeOneExactID(t *testing.T) {
	f := newFixture(t, api.DefaultLimits)
	tests := []struct {
		name    string
		tenants []string
		want    int
	}{
		{"one valid id", []string{"acme"}, 200},
		{"none", nil, 401},
		{"two", []string{"acme", "globex"}, 401},
		{"the same twice", []string{"acme", "acme"}, 401},
		{"empty", []string{""}, 401},
		{"inner space", []string{"ac me"}, 401},
		{"too long", []string{strings.Repeat("a", 65)}, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", f.srv.URL+"/v1/jobs", nil)
			for _, v := range tc.tenants {
				req.Header.Add(api.TenantHeader, v)
			}
			resp, err := f.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("X-Tenant-ID %q: %d, want %d", tc.tenants, resp.StatusCode, tc.want)
			}
		})
	}
}
