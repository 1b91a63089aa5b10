package api_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"herald/ingest/internal/api"
)

// TestValuesTheDatabaseWouldRefuse: every value PostgreSQL would refuse —
// an integer beyond its column, NUL, invalid UTF-8 or an unpaired
// surrogate in text or jsonb, a number beyond numeric — in a body, an
// NDJSON line or the path is a 422 that names the field (and the line),
// decided before any SQL runs, and changes nothing. Invalid UTF-8 is never
// stored as U+FFFD instead.
func TestValuesTheDatabaseWouldRefuse(t *testing.T) {
	f := newFixture(t, api.DefaultLimits)
	f.template("acme")
	f.do("POST", "/v1/customers", "acme", ndjson, `{"id":"c1","email":"a@example.com"}`+"\n")
	profile := func(name string) string {
		return `{"name":"` + name + `","website_url":"https://a.example","postal_address":"1 St"}`
	}
	tmpl := func(html string) string {
		return `{"from_email":"d@acme.example","subject":"Hi","html":"` + html + `"}`
	}
	customer := func(extra string) string {
		return `{"id":"c1","email":"a@example.com"}` + "\n" + `{"id":"c2","email":"b@example.com"` + extra + "}\n"
	}
	key := func(k string) []string { return []string{"Idempotency-Key", k} }
	const js = "application/json"
	tests := []struct {
		name, method, path, contentType, body string
		header                                []string
		wantCode                              string
		wantField                             string // of the first detail
		wantLine                              float64
	}{
		// Integers bound to integer (int4) columns.
		{"job template version beyond int4", "POST", "/v1/jobs", js,
			`{"channel":"email","template":{"id":"bf","version":2147483648},"audience":{"all_subscribed":true}}`, key("k1"), "invalid_request", "template.version", 0},
		{"catalog trigger template version beyond int4", "PUT", "/v1/catalog-triggers/back_in_stock", js,
			`{"template":{"id":"bf","version":2147483648}}`, nil, "invalid_request", "template.version", 0},
		{"template read of a version beyond int4", "GET", "/v1/templates/bf/versions/2147483648", "", "", nil, "invalid_request", "version", 0},
		{"template read of a version beyond int64", "GET", "/v1/templates/bf/versions/99999999999999999999", "", "", nil, "invalid_request", "version", 0},
		{"preview of a version beyond int4", "POST", "/v1/templates/bf/versions/2147483648/preview", js, `{}`, nil, "invalid_request", "version", 0},
		{"number beyond numeric in a job", "POST", "/v1/jobs", js,
			`{"channel":"email","template":{"id":"bf"},"audience":{"all_subscribed":true},"products":1e1000000}`, key("k2"), "invalid_request", "products", 0},
		// Text and jsonb in JSON bodies.
		{"NUL in template HTML", "POST", "/v1/templates/t2/versions", js, tmpl(`<p>a\u0000b</p>`), nil, "invalid_request", "html", 0},
		{"invalid UTF-8 in template HTML", "POST", "/v1/templates/t2/versions", js, tmpl("<p>caf\xe9</p>"), nil, "invalid_request", "html", 0},
		{"invalid UTF-8 in a campaign", "POST", "/v1/jobs", js,
			`{"channel":"email","template":{"id":"bf"},"audience":{"all_subscribed":true},"campaign":"bf-caf` + "\xe9" + `"}`, key("k3"), "invalid_request", "campaign", 0},
		{"unpaired surrogate in the profile name", "PUT", "/v1/profile", js, profile(`Acme \ud800`), nil, "invalid_request", "name", 0},
		{"NUL in a preview customer id", "POST", "/v1/templates/bf/versions/1/preview", js, `{"customer_id":"c\u0000"}`, nil, "invalid_request", "customer_id", 0},
		{"NUL in a segment value", "POST", "/v1/jobs", js,
			`{"channel":"email","template":{"id":"bf"},"audience":{"segment":{"attribute":"tier","op":"eq","value":"gold\u0000"}}}`, key("k4"), "invalid_request", "audience.segment.value", 0},
		{"tiny number in a segment value", "POST", "/v1/jobs", js,
			`{"channel":"email","template":{"id":"bf"},"audience":{"segment":{"attribute":"ltv","op":"gt","value":1e-20000}}}`, key("k5"), "invalid_request", "audience.segment.value", 0},
		// Path parameters.
		{"NUL in a customer id", "GET", "/v1/customers/c%00", "", "", nil, "invalid_request", "id", 0},
		{"invalid UTF-8 in a customer id", "GET", "/v1/customers/caf%E9", "", "", nil, "invalid_request", "id", 0},
		{"NUL in a customer id to erase", "DELETE", "/v1/customers/c%00", "", "", nil, "invalid_request", "id", 0},
		{"invalid UTF-8 in a catalog item id", "DELETE", "/v1/catalog/items/%C0%AF", "", "", nil, "invalid_request", "id", 0},
		{"NUL in a suppressed address", "DELETE", "/v1/suppressions/a%00@example.com", "", "", nil, "invalid_request", "email", 0},
		{"NUL in a catalog trigger kind", "DELETE", "/v1/catalog-triggers/price%00", "", "", nil, "invalid_request", "kind", 0},
		{"invalid UTF-8 in an onsite customer", "GET", "/v1/onsite/%FF", "", "", nil, "invalid_request", "customer", 0},
		// NDJSON lines: jsonb attributes, text fields, text[] elements.
		{"NUL in customer attributes", "POST", "/v1/customers", ndjson, customer(`,"attributes":{"nick":"a\u0000b"}`), nil, "invalid_lines", "attributes.nick", 2},
		{"NUL in a customer attribute name", "POST", "/v1/customers", ndjson, customer(`,"attributes":{"a\u0000":1}`), nil, "invalid_lines", "attributes", 2},
		{"invalid UTF-8 in customer attributes", "POST", "/v1/customers", ndjson, customer(`,"attributes":{"nick":"caf` + "\xe9" + `"}`), nil, "invalid_lines", "attributes.nick", 2},
		{"unpaired surrogate in customer attributes", "POST", "/v1/customers", ndjson, customer(`,"attributes":{"nick":"\udc00"}`), nil, "invalid_lines", "attributes.nick", 2},
		{"number beyond numeric in customer attributes", "POST", "/v1/customers", ndjson, customer(`,"attributes":{"ltv":1e1000000}`), nil, "invalid_lines", "attributes.ltv", 2},
		{"invalid UTF-8 in a first name", "POST", "/v1/customers", ndjson, customer(`,"first_name":"Ren` + "\xe9" + `"`), nil, "invalid_lines", "first_name", 2},
		{"unpaired surrogate in a category", "POST", "/v1/catalog/items", ndjson,
			`{"id":"i1","title":"T","url":"https://s.example/i1","price_cents":1,"categories":["shoes","\ud800"]}` + "\n", nil, "invalid_lines", "categories[1]", 1},
		{"NUL in a suppression reason", "POST", "/v1/suppressions", ndjson, `{"email":"s@example.com","reason":"x\u0000"}` + "\n", nil, "invalid_lines", "reason", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.t = t
			before := f.snapshot()
			r := f.do(tc.method, tc.path, "acme", tc.contentType, tc.body, tc.header...)
			code, msg := errorOf(r)
			if r.status != 422 || code != tc.wantCode {
				t.Fatalf("got %d %q %q; want 422 %q", r.status, code, msg, tc.wantCode)
			}
			details, _ := r.body["error"].(map[string]any)["details"].([]any)
			if len(details) == 0 {
				t.Fatalf("no details in %v", r.body)
			}
			first, _ := details[0].(map[string]any)
			got := map[string]any{"field": first["field"]}
			want := map[string]any{"field": tc.wantField}
			if tc.wantLine > 0 {
				got["line"], want["line"] = first["line"], tc.wantLine
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("first detail (-want +got):\n%s\nanswer: %v", diff, r.body)
			}
			f.unchanged(before)
		})
	}
}

// The boundary itself is fine: the largest int4 version is a version that
// does not exist, not a refused value.
func TestLargestVersionIsJustUnknown(t *testing.T) {
	f := newFixture(t, api.DefaultLimits)
	f.template("acme")
	if r := f.do("GET", "/v1/templates/bf/versions/2147483647", "acme", "", ""); r.status != 404 {
		t.Fatalf("version 2147483647: %d %v", r.status, r.body)
	}
	r := f.do("POST", "/v1/jobs", "acme", "application/json",
		`{"channel":"email","template":{"id":"bf","version":2147483647},"audience":{"all_subscribed":true}}`, "Idempotency-Key", "k")
	if code, _ := errorOf(r); r.status != 404 || code != "not_found" {
		t.Fatalf("job with version 2147483647: %d %v", r.status, r.body)
	}
}

// A trace context header that is not one is ignored, as W3C Trace Context
// says, rather than stored (invalid UTF-8 there failed the insert).
func TestMalformedTraceparentIsIgnored(t *testing.T) {
	f := newFixture(t, api.DefaultLimits)
	f.template("acme")
	for i, tp := range []string{"00-caf\xe9-x", "not a trace context", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"} {
		r := f.do("POST", "/v1/jobs", "acme", "application/json", job(""), "Idempotency-Key", strings.Repeat("k", i+1), "Traceparent", tp)
		if r.status != 202 {
			t.Fatalf("traceparent %q: %d %v", tp, r.status, r.body)
		}
		var stored string
		if err := f.db.QueryRow(context.Background(), `SELECT traceparent FROM jobs WHERE id = $1`, r.body["id"]).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		want := ""
		if i == 2 {
			want = tp
		}
		if stored != want {
			t.Fatalf("traceparent %q stored as %q, want %q", tp, stored, want)
		}
	}
}
