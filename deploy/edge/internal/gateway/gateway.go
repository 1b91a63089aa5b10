// Package gateway is the local edge's request path: what the Istio ingress
// gateway does for Herald in a cluster, from the same policy files. It
// strips every header that only the edge may set, authenticates a bearer
// token if there is one (an invalid token is refused even on a public
// path, as Envoy does), authorizes the request against the
// AuthorizationPolicy (a request without a token has no principal and
// reaches only the public paths), copies the configured claims into
// headers, and proxies to ingest, cutting off a request body that arrives
// too slowly. A tenant claim that is not exactly a
// tenant id (see tenantid) refuses the request: HTTP trims header values,
// so " acme" copied into X-Tenant-ID would reach ingest as "acme".
package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"herald/deploy/edge/internal/jwtauth"
	"herald/deploy/edge/internal/policy"
	"herald/shared/bodyrate"
	"herald/shared/tenantid"
)

// TenantHeader carries the verified tenant to ingest.
const TenantHeader = "X-Tenant-ID"

// Config is one edge.
type Config struct {
	Upstream *url.URL
	Verifier *jwtauth.Verifier
	// Authn is the RequestAuthentication: its rules' output headers are
	// stripped from clients and set from claims.
	Authn *policy.RequestAuthentication
	Authz *policy.AuthorizationPolicy
	Log   *slog.Logger
	Reg   prometheus.Registerer
	// Body is the slowest a request body may arrive; a body that falls
	// behind is cut off with 408 rather than relayed to ingest for ever.
	Body bodyrate.Rule
}

// Gateway is the edge's handler.
type Gateway struct {
	cfg      Config
	proxy    *httputil.ReverseProxy
	strip    []string
	outcomes *prometheus.CounterVec
}

// New returns the edge handler.
func New(cfg Config) *Gateway {
	g := &Gateway{cfg: cfg}
	// The tenant header is never taken from a client, whatever the policy.
	g.strip = []string{TenantHeader}
	for _, r := range cfg.Authn.Spec.JWTRules {
		for _, h := range r.OutputClaimToHeaders {
			g.strip = append(g.strip, h.Header)
		}
	}
	g.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(cfg.Upstream)
			pr.SetXForwarded()
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, bodyrate.ErrTooSlow) || bodyrate.Exceeded(r) {
				g.outcomes.WithLabelValues("body_too_slow").Inc()
				w.Header().Set("Connection", "close")
				writeError(w, http.StatusRequestTimeout, "body_too_slow", err.Error())
				return
			}
			cfg.Log.WarnContext(r.Context(), "upstream unavailable", "error", err)
			writeError(w, http.StatusBadGateway, "bad_gateway", "the API is unavailable; retry shortly")
		},
	}
	g.outcomes = promauto.With(cfg.Reg).NewCounterVec(prometheus.CounterOpts{
		Name: "herald_edge_requests_total",
		Help: "Requests at the local edge by outcome (proxied, unauthenticated, denied, bad_request; body_too_slow of those proxied).",
	}, []string{"outcome"})
	return g
}

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for _, h := range g.strip {
		r.Header.Del(h)
	}
	clean, ok := normalize(r.URL)
	if !ok {
		g.outcomes.WithLabelValues("bad_request").Inc()
		writeError(w, http.StatusBadRequest, "bad_request", "malformed path")
		return
	}
	r.URL.Path, r.URL.RawPath = clean, ""
	token, present := bearer(r)
	var principal string
	var verified jwtauth.Verified
	var claimHeaders []claimHeader
	if present {
		var err error
		verified, err = g.cfg.Verifier.Verify(r.Context(), token)
		if err == nil {
			claimHeaders, err = g.headersOf(verified)
		}
		if err != nil {
			g.outcomes.WithLabelValues("unauthenticated").Inc()
			w.Header().Set("WWW-Authenticate", fmt.Sprintf("Bearer realm=%q, error=\"invalid_token\"", "herald"))
			writeError(w, http.StatusUnauthorized, "unauthenticated", err.Error())
			return
		}
		principal = verified.Principal()
	}
	if err := g.cfg.Authz.Authorize(policy.Request{Method: r.Method, Path: clean, Principal: principal, Claims: verified.Claims}); err != nil {
		g.outcomes.WithLabelValues("denied").Inc()
		writeError(w, http.StatusForbidden, "forbidden", err.Error())
		return
	}
	for _, h := range claimHeaders {
		r.Header.Set(h.header, h.value)
	}
	if present {
		for _, rule := range g.cfg.Authn.Spec.JWTRules {
			if rule.Issuer == verified.Issuer && !rule.ForwardOriginalToken {
				r.Header.Del("Authorization")
			}
		}
	}
	g.outcomes.WithLabelValues("proxied").Inc()
	g.proxy.ServeHTTP(w, bodyrate.Limit(w, r, g.cfg.Body))
}

// bearer finds the token where Istio looks by default: the Authorization
// header's Bearer credential, or the access_token query parameter.
func bearer(r *http.Request) (string, bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok), true
		}
	}
	if tok := r.URL.Query().Get("access_token"); tok != "" {
		return tok, true
	}
	return "", false
}

type claimHeader struct{ header, value string }

// headersOf returns the headers the verified token's claims become. The
// tenant claim, when the token has one, must be exactly a tenant id.
func (g *Gateway) headersOf(v jwtauth.Verified) ([]claimHeader, error) {
	var out []claimHeader
	for _, rule := range g.cfg.Authn.Spec.JWTRules {
		if rule.Issuer != v.Issuer {
			continue
		}
		for _, h := range rule.OutputClaimToHeaders {
			raw, has := v.Claims[h.Claim]
			if !has {
				continue
			}
			value, ok := claimValue(raw)
			if http.CanonicalHeaderKey(h.Header) == http.CanonicalHeaderKey(TenantHeader) {
				if !ok || !tenantid.Valid(value) {
					return nil, fmt.Errorf("claim %q is not a tenant id (%s)", h.Claim, tenantid.Syntax)
				}
			}
			if ok {
				out = append(out, claimHeader{header: h.Header, value: value})
			}
		}
	}
	return out, nil
}

// claimValue renders a claim for a header, as Envoy does for strings,
// numbers and booleans. A value that a header cannot carry as it is —
// with a control character, or with leading or trailing whitespace, which
// HTTP trims — is dropped rather than passed on changed.
func claimValue(v any) (string, bool) {
	var s string
	switch v := v.(type) {
	case string:
		s = v
	case float64:
		s = strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		s = strconv.FormatBool(v)
	default:
		return "", false
	}
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) || strings.Trim(s, " \t") != s {
		return "", false
	}
	return s, true
}

// normalize resolves dot segments (Istio's default BASE path
// normalization) so that /u/../v1/jobs is authorized as /v1/jobs, and
// refuses encoded slashes and backslashes, which would let a path mean one
// thing to the policy and another to the service.
func normalize(u *url.URL) (string, bool) {
	raw := strings.ToLower(u.EscapedPath())
	if strings.Contains(raw, "%2f") || strings.Contains(raw, "%5c") || strings.Contains(u.Path, "\\") || !strings.HasPrefix(u.Path, "/") {
		return "", false
	}
	clean := path.Clean(u.Path)
	if strings.HasSuffix(u.Path, "/") && clean != "/" {
		clean += "/"
	}
	return clean, true
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": message}})
}
