package gateway

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"herald/deploy/edge/internal/jwtauth"
	"herald/deploy/edge/internal/policy"
	"herald/shared/bodyrate"
)

const (
	issuer   = "https://auth.herald.example"
	audience = "herald-partner-api"
)

// The shipped policy files, which the edge enforces.
var (
	authnFile = filepath.Join("..", "..", "..", "k8s", "components", "istio", "request-authentication.yaml")
	authzFile = filepath.Join("..", "..", "..", "k8s", "components", "istio", "authorization-policy.yaml")
)

type edge struct {
	t        *testing.T
	url      string
	jwks     string
	keys     map[string]*rsa.PrivateKey
	upstream chan http.Header
	keySet   *jwtauth.KeySet
}

func writeJWKS(t *testing.T, path string, keys map[string]*rsa.PrivateKey) {
	t.Helper()
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	for kid, k := range keys {
		set.Keys = append(set.Keys, jwtauth.PublicJWK(kid, &k.PublicKey))
	}
	b, _ := json.Marshal(set)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func newEdge(t *testing.T) *edge { return newEdgeWith(t, bodyrate.Rule{}) }

// newEdgeWith is an edge that holds request bodies to rule.
func newEdgeWith(t *testing.T, rule bodyrate.Rule) *edge {
	t.Helper()
	e := &edge{t: t, jwks: filepath.Join(t.TempDir(), "jwks.json"), keys: map[string]*rsa.PrivateKey{}, upstream: make(chan http.Header, 10)}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e.keys["k1"] = k
	writeJWKS(t, e.jwks, e.keys)
	authn, authz, err := policy.Load(authnFile, authzFile)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := jwtauth.NewKeySet(context.Background(), e.jwks, 0)
	if err != nil {
		t.Fatal(err)
	}
	e.keySet = keys
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		h := r.Header.Clone()
		h.Set("X-Seen-Path", r.URL.Path)
		e.upstream <- h
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	gw := New(Config{Upstream: u, Verifier: jwtauth.NewVerifier([]jwtauth.Rule{{Issuer: authn.Spec.JWTRules[0].Issuer,
		Audiences: authn.Spec.JWTRules[0].Audiences, Keys: keys}}, time.Now),
		Authn: authn, Authz: authz, Log: slog.New(slog.DiscardHandler), Reg: prometheus.NewRegistry(), Body: rule})
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

func (e *edge) token(kid, tenant string) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": issuer, "sub": "p", "aud": audience, "tenant": tenant,
		"exp": time.Now().Add(time.Hour).Unix()})
	tok.Header["kid"] = kid
	s, err := tok.SignedString(e.keys[kid])
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// do sends a request and returns the status and, if it was proxied, the
// headers ingest saw.
func (e *edge) do(method, path, bearer string, header map[string]string) (int, http.Header) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.url+path, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case h := <-e.upstream:
		return resp.StatusCode, h
	default:
		return resp.StatusCode, nil
	}
}

func TestClaimsBecomeHeadersAndClientHeadersGo(t *testing.T) {
	e := newEdge(t)
	status, seen := e.do("GET", "/v1/jobs", e.token("k1", "acme"), map[string]string{"X-Tenant-ID": "globex"})
	if status != 204 || seen == nil {
		t.Fatalf("valid token: %d", status)
	}
	if seen.Get("X-Tenant-ID") != "acme" || seen.Get("Authorization") != "" {
		t.Fatalf("ingest saw tenant %q and authorization %q", seen.Get("X-Tenant-ID"), seen.Get("Authorization"))
	}
	// Public paths pass without a token, and without any tenant.
	status, seen = e.do("POST", "/u/tok", "", map[string]string{"X-Tenant-ID": "globex"})
	if status != 204 || seen.Get("X-Tenant-ID") != "" {
		t.Fatalf("public path: %d, tenant %q", status, seen.Get("X-Tenant-ID"))
	}
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/v1/jobs", 403},          // no token
		{"DELETE", "/u/tok", 403},         // not a method the exception names
		{"GET", "/healthz", 403},          // nothing else is routed
		{"GET", "/u/../v1/jobs", 403},     // dot segments resolve before the policy
		{"GET", "/u/%2e%2e/v1/jobs", 403}, // encoded dots too
		{"GET", "/u%2Fx", 400},            // encoded slashes are refused
	} {
		if status, seen := e.do(tc.method, tc.path, "", nil); status != tc.want || seen != nil {
			t.Errorf("%s %s without a token: %d (proxied: %v), want %d", tc.method, tc.path, status, seen != nil, tc.want)
		}
	}
}

func TestKeysRotate(t *testing.T) {
	e := newEdge(t)
	k2, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e.keys["k2"] = k2
	tok2 := e.token("k2", "acme")
	// k2 is not published yet.
	delete(e.keys, "k2")
	if status, _ := e.do("GET", "/v1/jobs", tok2, nil); status != 401 {
		t.Fatalf("unpublished key: %d", status)
	}
	// Published: a token with its kid makes the edge reload at once.
	e.keys["k2"] = k2
	writeJWKS(t, e.jwks, e.keys)
	if status, _ := e.do("GET", "/v1/jobs", tok2, nil); status != 204 {
		t.Fatalf("newly published key: %d", status)
	}
	// Retired: k1 leaves the set and, from the next periodic reload, its
	// tokens stop working.
	tok1 := e.token("k1", "acme")
	delete(e.keys, "k1")
	writeJWKS(t, e.jwks, e.keys)
	if err := e.keySet.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if status, _ := e.do("GET", "/v1/jobs", tok1, nil); status != 401 {
		t.Fatalf("retired key: %d", status)
	}
}

// A tenant claim reaches ingest only if it is exactly a tenant id: HTTP
// trims header values, so a claim with surrounding whitespace would act as
// the trimmed tenant.
func TestTenantClaimMustBeExactlyAnID(t *testing.T) {
	e := newEdge(t)
	tests := []struct {
		claim      string
		wantStatus int
		wantTenant string // "" when the request must not be proxied
	}{
		{"acme", 204, "acme"},
		{" acme", 401, ""},
		{"acme ", 401, ""},
		{"acme\t", 401, ""},
		{"ac me", 401, ""},
		{"acme/globex", 401, ""},
		{strings.Repeat("a", 65), 401, ""},
		{"", 401, ""},
	}
	for _, tc := range tests {
		status, seen := e.do("GET", "/v1/jobs", e.token("k1", tc.claim), nil)
		got := ""
		if seen != nil {
			got = seen.Get("X-Tenant-ID")
		}
		if status != tc.wantStatus || (seen != nil) != (tc.wantTenant != "") || got != tc.wantTenant {
			t.Errorf("tenant claim %q: status %d, proxied %v with tenant %q; want %d, tenant %q",
				tc.claim, status, seen != nil, got, tc.wantStatus, tc.wantTenant)
		}
	}
}

// A body that stops arriving is cut off at the edge with 408, so a trickle
// holds neither the edge nor ingest; a body that keeps up passes.
func TestSlowBodyIsCutOffAtTheEdge(t *testing.T) {
	e := newEdgeWith(t, bodyrate.Rule{BytesPerSecond: 1 << 20, Grace: 100 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pr, pw := io.Pipe()
	go func() {
		// The client waits for its body to end even after ctx does.
		<-ctx.Done()
		pw.CloseWithError(ctx.Err())
	}()
	req, _ := http.NewRequestWithContext(ctx, "POST", e.url+"/v1/customers", pr)
	req.Header.Set("Authorization", "Bearer "+e.token("k1", "acme"))
	req.Header.Set("Content-Type", "application/x-ndjson")
	go func() { _, _ = io.WriteString(pw, `{"id":"c1","email":"a@example.com"}`+"\n") }()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	var body struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || body.Error.Code != "body_too_slow" {
		t.Fatalf("stalled body: %d %q %q", resp.StatusCode, body.Error.Code, body.Error.Message)
	}
	req, _ = http.NewRequestWithContext(ctx, "POST", e.url+"/v1/customers", strings.NewReader(strings.Repeat("x", 1<<16)))
	req.Header.Set("Authorization", "Bearer "+e.token("k1", "acme"))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("body sent at once: %d", resp.StatusCode)
	}
}
