package api_test

import (
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"herald/ingest/internal/api"
	"herald/ingest/internal/store"
	"herald/shared/emailtemplate"
)

// sharing returns a fixture on f's database whose API has other limits.
func (f *fixture) sharing(limits api.Limits) *fixture {
	f.t.Helper()
	a := api.New(store.New(f.db), slog.New(slog.DiscardHandler), prometheus.NewRegistry(), api.Config{Limits: limits})
	srv := httptest.NewServer(withTenants(f.t, f.db, a.Handler()))
	f.t.Cleanup(srv.Close)
	return &fixture{t: f.t, db: f.db, srv: srv, api: a, client: checkedClient(f.t)}
}

func templateBody(t *testing.T, subject, html string) string {
	t.Helper()
	b, err := json.Marshal(map[string]string{"from_email": "deals@acme.example", "subject": subject, "html": html})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// budgetAnswer is what an answer says about a template's budget.
type budgetAnswer struct {
	Status       int
	Code         string
	Part, Budget string
}

func budgetOf(r response) budgetAnswer {
	code, _ := errorOf(r)
	e, _ := r.body["error"].(map[string]any)
	d, _ := e["details"].(map[string]any)
	part, _ := d["part"].(string)
	budget, _ := d["budget"].(string)
	return budgetAnswer{Status: r.status, Code: code, Part: part, Budget: budget}
}

// TestUploadWithinBudget uploads templates that run out of their budget
// on the sample data: each is refused with 422 naming the budget, and
// nothing is stored.
func TestUploadWithinBudget(t *testing.T) {
	limits := api.DefaultLimits
	limits.TemplateBudget = emailtemplate.Budget{Steps: 40, Bytes: 100_000}
	f := newFixture(t, limits)
	doubling := `{{define "a"}}{{template "b"}}{{template "b"}}{{end}}{{define "b"}}{{template "c"}}{{template "c"}}{{end}}{{define "c"}}{{end}}`
	tests := []struct {
		name, subject, html string
		want                budgetAnswer
	}{
		{"a printf field a million wide in two loops", `{{range .Items}}{{range $.Items}}{{printf "%0999999d" 0}}{{end}}{{end}}`, "<p>x</p>",
			budgetAnswer{422, "template_budget_exceeded", "subject", "bytes"}},
		{"loops that write nothing, on html/template's fallback", "Hi",
			`<script>var x = {{template "v" .}};</script>{{define "v"}}1{{end}}{{range .Items}}{{range $.Items}}{{end}}{{end}}`,
			budgetAnswer{422, "template_budget_exceeded", "html", "steps"}},
		{"calls that double, in loops", "Hi", doubling + `{{range .Items}}{{template "a"}}{{end}}`,
			budgetAnswer{422, "template_budget_exceeded", "html", "steps"}},
		{"calls that double past the static limit", "Hi", strings.Repeat(`{{template "c"}}`, 1001) + `{{define "c"}}{{end}}`,
			budgetAnswer{422, "invalid_template", "", ""}},
		{"within budget", "Hi", `{{range .Items}}{{range slice $.Items 1}}{{end}}{{end}}`, budgetAnswer{Status: 201}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.t = t
			before := f.snapshot()
			r := f.do("POST", "/v1/templates/t/versions", "acme", "application/json", templateBody(t, tc.subject, tc.html))
			if diff := cmp.Diff(tc.want, budgetOf(r)); diff != "" {
				t.Fatalf("answer %v (-want +got):\n%s", r.body, diff)
			}
			if tc.want.Status != 201 {
				f.unchanged(before)
			}
		})
	}
}

// TestPreviewWithinBudget previews templates that pass at upload but run
// out of their budget on a customer's data, or under a smaller budget
// than the one they were uploaded with: 422 naming the budget.
func TestPreviewWithinBudget(t *testing.T) {
	limits := api.DefaultLimits
	limits.TemplateBudget = emailtemplate.Budget{Steps: 50, Bytes: 2000}
	f := newFixture(t, limits)
	long := strings.Repeat("A", 200)
	if r := f.do("POST", "/v1/customers", "acme", ndjson, `{"id":"c1","email":"ada@example.com","first_name":"`+long+`"}`+"\n"); r.status != 200 {
		t.Fatalf("customers: %d %v", r.status, r.body)
	}
	// 36 copies of the first name: 108 bytes for the sample's Ada, 7200
	// for c1.
	html := `{{range .Items}}{{range $.Items}}{{$.Customer.FirstName}}{{end}}{{end}}`
	if r := f.do("POST", "/v1/templates/t/versions", "acme", "application/json", templateBody(t, "Hi", html)); r.status != 201 {
		t.Fatalf("upload: %d %v", r.status, r.body)
	}
	smaller := limits
	smaller.TemplateBudget.Steps = 10
	tests := []struct {
		name string
		f    *fixture
		body string
		want budgetAnswer
	}{
		{"the sample customer", f, `{}`, budgetAnswer{Status: 200}},
		{"a customer whose name makes the HTML too large", f, `{"customer_id":"c1"}`, budgetAnswer{422, "template_budget_exceeded", "html", "bytes"}},
		{"a budget smaller than at upload", f.sharing(smaller), `{}`, budgetAnswer{422, "template_budget_exceeded", "html", "steps"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.f.t = t
			r := tc.f.do("POST", "/v1/templates/t/versions/1/preview", "acme", "application/json", tc.body)
			if diff := cmp.Diff(tc.want, budgetOf(r)); diff != "" {
				t.Fatalf("answer %v (-want +got):\n%s", r.body, diff)
			}
		})
	}
}
