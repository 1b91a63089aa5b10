package gateway

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// opsToken is an operator's token: role ops and no tenant.
func (e *edge) opsToken() string {
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": issuer, "sub": "operator", "aud": audience, "role": "ops",
		"exp": time.Now().Add(time.Hour).Unix()})
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(e.keys["k1"])
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// TestOperatorAPINeedsTheOpsRole: the tenant administration under /v1/ops/
// reaches ingest only with an operator's token, which arrives as the role
// header and no tenant; a partner's token, even for a tenant that exists,
// stops at the edge, as does a role header the client made up.
func TestOperatorAPINeedsTheOpsRole(t *testing.T) {
	e := newEdge(t)
	for _, tc := range []struct{ method, path string }{
		{"GET", "/v1/ops/tenants"},
		{"GET", "/v1/ops/tenants/acme"},
		{"PUT", "/v1/ops/tenants/acme"},
		{"POST", "/v1/ops/tenants/acme/suspend"},
		{"POST", "/v1/ops/tenants/acme/resume"},
	} {
		status, seen := e.do(tc.method, tc.path, e.opsToken(), nil)
		if status != 204 || seen == nil {
			t.Fatalf("%s %s with an operator token: %d", tc.method, tc.path, status)
		}
		if seen.Get("X-Herald-Role") != "ops" || seen.Get("X-Tenant-ID") != "" {
			t.Fatalf("%s %s: ingest saw role %q and tenant %q", tc.method, tc.path, seen.Get("X-Herald-Role"), seen.Get("X-Tenant-ID"))
		}
		partner := map[string]string{"X-Herald-Role": "ops"}
		if status, seen := e.do(tc.method, tc.path, e.token("k1", "acme"), partner); status != 403 || seen != nil {
			t.Errorf("%s %s with a partner token claiming the role in a header: %d (proxied: %v), want 403", tc.method, tc.path, status, seen != nil)
		}
		if status, seen := e.do(tc.method, tc.path, "", nil); status != 403 || seen != nil {
			t.Errorf("%s %s without a token: %d (proxied: %v), want 403", tc.method, tc.path, status, seen != nil)
		}
	}
	// The partner's own settings are a partner route.
	if status, seen := e.do("GET", "/v1/tenant", e.token("k1", "acme"), nil); status != 204 || seen.Get("X-Tenant-ID") != "acme" {
		t.Fatalf("GET /v1/tenant with a partner token: %d", status)
	}
}
