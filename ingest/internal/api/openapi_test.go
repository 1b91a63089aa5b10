package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"herald/devtools/openapicheck"
	"herald/ingest/internal/api"
)

// The OpenAPI document and the routes agree: every route is documented
// and every documented operation is served.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	f := newFixture(t, api.DefaultLimits)
	r := f.do("GET", "/v1/openapi.json", "", "", "")
	if r.status != 200 {
		t.Fatalf("openapi.json: %d", r.status)
	}
	var doc struct {
		OpenAPI string `json:"openapi"`
	}
	if err := json.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	c, err := openapicheck.New(api.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	served := f.api.Routes()
	slices.Sort(served)
	if diff := cmp.Diff(served, c.Operations()); diff != "" {
		t.Fatalf("routes (-served +documented):\n%s", diff)
	}
}

// TestOpenAPICheckCatchesWrongAnswers takes a real answer of GET
// /v1/jobs/{id}, which the document allows, and spoils it in the ways a
// handler could drift from the document: each spoilt answer is a
// mismatch that names what is wrong.
func TestOpenAPICheckCatchesWrongAnswers(t *testing.T) {
	f := newFixture(t, api.DefaultLimits)
	f.template("acme")
	id := f.do("POST", "/v1/jobs", "acme", "application/json", job(""), "Idempotency-Key", "k").body["id"].(string)
	req, _ := http.NewRequest("GET", f.srv.URL+"/v1/jobs/"+id, nil)
	req.Header.Set(api.TenantHeader, "acme")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	c, err := openapicheck.New(api.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(req, nil, resp, body); err != nil {
		t.Fatalf("the real answer: %v", err)
	}
	tests := []struct {
		name    string
		spoil   func(job map[string]any)
		status  int
		wantErr string
	}{
		{"a count dropped", func(j map[string]any) { delete(j["counts"].(map[string]any), "capped") }, 200, `"capped"`},
		{"a count of another type", func(j map[string]any) { j["counts"].(map[string]any)["skipped"] = "none" }, 200, "at /counts/skipped"},
		{"an unknown channel", func(j map[string]any) { j["channel"] = "sms" }, 200, "at /channel"},
		{"an undocumented member", func(j map[string]any) { j["priority"] = "high" }, 200, `"priority" is unsupported`},
		{"an unknown state", func(j map[string]any) { j["state"] = "stuck" }, 200, "at /state"},
		{"a time that is not one", func(j map[string]any) { j["deadline"] = "tomorrow" }, 200, "at /deadline"},
		{"a status the operation does not list", func(map[string]any) {}, http.StatusTeapot, "status is not supported"},
		{"a job where an error belongs", func(map[string]any) {}, http.StatusNotFound, `"error"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var j map[string]any
			if err := json.Unmarshal(body, &j); err != nil {
				t.Fatal(err)
			}
			tc.spoil(j)
			spoilt, _ := json.Marshal(j)
			wrong := *resp
			wrong.StatusCode = tc.status
			err := c.Check(req, nil, &wrong, spoilt)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v; want a mismatch naming %s", err, tc.wantErr)
			}
		})
	}
}
