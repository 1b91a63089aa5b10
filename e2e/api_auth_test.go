package e2e

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"herald/deploy/stack"
)

// token signs claims with key (the dev key when nil) under kid.
func token(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(tenant string, mutate func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{"iss": stack.DevIssuer, "sub": "partner:" + tenant, "aud": []string{stack.DevAudience},
		stack.TenantClaim: tenant, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if mutate != nil {
		mutate(c)
	}
	return c
}

// TestEdgeRejectsBadCredentials sends partner requests through the local
// edge (the shipped Istio policy files) with every kind of bad credential:
// each is refused with its status and a JSON error, and the database is
// unchanged.
func TestEdgeRejectsBadCredentials(t *testing.T) {
	st := startStack(t, stack.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	devKey, err := stack.DevSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&devKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	rs := func(c jwt.MapClaims) string { return token(t, jwt.SigningMethodRS256, devKey, stack.DevKeyID, c) }
	none := func() string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims("acme", nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}()
	conn, err := pgx.Connect(ctx, st.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	snapshot := func() map[string]int {
		out := map[string]int{}
		for _, table := range []string{"tenants", "customers", "templates", "jobs", "outbox", "suppressions"} {
			var n int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			out[table] = n
		}
		return out
	}
	upload := `{"id":"c-new","email":"new@example.com"}` + "\n"
	hc := checkedHTTP(t, st)
	send := func(method, path, bearer string, header map[string]string) (int, string, string) {
		req, _ := http.NewRequestWithContext(ctx, method, st.IngestURL+path, strings.NewReader(upload))
		req.Header.Set("Content-Type", "application/x-ndjson")
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var e struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("%s %s: %d with a body that is not JSON: %q", method, path, resp.StatusCode, b)
		}
		return resp.StatusCode, e.Error.Code, e.Error.Message
	}
	tests := []struct {
		name       string
		path       string
		bearer     string
		header     map[string]string
		wantStatus int
		wantCode   string
		wantInMsg  string
	}{
		{"no token", "/v1/customers", "", nil, 403, "forbidden", "RBAC: access denied"},
		{"a client-sent tenant header and no token", "/v1/customers", "", map[string]string{"X-Tenant-ID": "acme"}, 403, "forbidden", "RBAC"},
		{"a dot-segment path around the policy", "/u/../v1/customers", "", nil, 403, "forbidden", "RBAC"},
		{"alg none", "/v1/customers", none, nil, 401, "unauthenticated", "Jwt verification fails"},
		{"HS256 signed with the RSA public key", "/v1/customers", token(t, jwt.SigningMethodHS256, pubPEM, stack.DevKeyID, claims("acme", nil)), nil, 401, "unauthenticated", "Jwt verification fails"},
		{"expired more than 60s ago", "/v1/customers", rs(claims("acme", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-90 * time.Second).Unix() })), nil, 401, "unauthenticated", "expired"},
		{"wrong issuer", "/v1/customers", rs(claims("acme", func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })), nil, 401, "unauthenticated", "issuer"},
		{"wrong audience", "/v1/customers", rs(claims("acme", func(c jwt.MapClaims) { c["aud"] = []string{"someone-else"} })), nil, 401, "unauthenticated", "Audiences"},
		{"no expiry", "/v1/customers", rs(claims("acme", func(c jwt.MapClaims) { delete(c, "exp") })), nil, 401, "unauthenticated", "Jwt"},
		{"unknown kid", "/v1/customers", token(t, jwt.SigningMethodRS256, otherKey, "not-published", claims("acme", nil)), nil, 401, "unauthenticated", "kid"},
		{"the dev kid, signed with another key", "/v1/customers", token(t, jwt.SigningMethodRS256, otherKey, stack.DevKeyID, claims("acme", nil)), nil, 401, "unauthenticated", "verification fails"},
		{"an invalid token on a public path", "/u/anything", "garbage", nil, 401, "unauthenticated", "Jwt"},
		// HTTP trims header values: copied as it is, " acme" would reach
		// ingest as acme.
		{"a tenant claim with surrounding whitespace", "/v1/customers", rs(claims(" acme ", nil)), nil, 401, "unauthenticated", "tenant id"},
		{"a tenant claim that is not an id", "/v1/customers", rs(claims("acme/globex", nil)), nil, 401, "unauthenticated", "tenant id"},
		{"a valid token of a tenant no operator created", "/v1/customers", rs(claims("globex", nil)), nil, 403, "tenant_unknown", "does not exist"},
		{"a partner token on the operator API", "/v1/ops/tenants/acme/suspend", rs(claims("acme", nil)), nil, 403, "forbidden", "role claim is ops"},
	}
	ensureTenant(t, st, hc, "acme")
	before := snapshot()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, code, msg := send(http.MethodPost, tc.path, tc.bearer, tc.header)
			if status != tc.wantStatus || code != tc.wantCode || !strings.Contains(msg, tc.wantInMsg) {
				t.Fatalf("got %d %q %q; want %d %q with %q", status, code, msg, tc.wantStatus, tc.wantCode, tc.wantInMsg)
			}
			if diff := cmp.Diff(before, snapshot()); diff != "" {
				t.Fatalf("the database changed (-before +after):\n%s", diff)
			}
		})
	}

	// A valid token for acme with a forged X-Tenant-ID: the header is
	// replaced by the token's tenant, so globex gets nothing.
	status, _, msg := send(http.MethodPost, "/v1/customers", rs(claims("acme", nil)), map[string]string{"X-Tenant-ID": "globex"})
	if status != 200 {
		t.Fatalf("valid token with a forged tenant header: %d %s", status, msg)
	}
	var acme, globex int
	if err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE tenant_id = 'acme'), count(*) FILTER (WHERE tenant_id = 'globex') FROM customers`).Scan(&acme, &globex); err != nil {
		t.Fatal(err)
	}
	if acme != 1 || globex != 0 {
		t.Fatalf("customers: acme %d, globex %d; want the upload in acme only", acme, globex)
	}
	// 60 s of clock skew are allowed, as Envoy allows.
	if status, _, msg := send(http.MethodPost, "/v1/customers", rs(claims("acme", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-30 * time.Second).Unix() })), nil); status != 200 {
		t.Fatalf("token expired 30s ago: %d %s", status, msg)
	}
	// The public paths need no token; ingest checks their own credential
	// (here: a token that is not one Herald signed).
	resp, err := hc.Post(st.IngestURL+"/u/not-a-token", "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("public unsubscribe path with a forged link: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
