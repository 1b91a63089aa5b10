// Package policy reads the Istio RequestAuthentication and
// AuthorizationPolicy that ship in deploy/k8s, strictly: a field the local
// edge does not implement is an error, never silently ignored, so the
// policy the edge enforces is the one the cluster gets.
package policy

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// RequestAuthentication is the subset of security.istio.io/v1
// RequestAuthentication the edge implements.
type RequestAuthentication struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata"`
	Spec       struct {
		Selector *Selector `json:"selector,omitempty"`
		JWTRules []JWTRule `json:"jwtRules"`
	} `json:"spec"`
}

// Metadata names a resource.
type Metadata struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// Selector picks workloads; the edge stands in for the selected gateway.
type Selector struct {
	MatchLabels map[string]string `json:"matchLabels"`
}

// JWTRule is one trusted issuer.
type JWTRule struct {
	Issuer               string          `json:"issuer"`
	JWKSURI              string          `json:"jwksUri,omitempty"`
	JWKS                 string          `json:"jwks,omitempty"`
	Audiences            []string        `json:"audiences,omitempty"`
	ForwardOriginalToken bool            `json:"forwardOriginalToken,omitempty"`
	OutputClaimToHeaders []ClaimToHeader `json:"outputClaimToHeaders,omitempty"`
	FromHeaders          []struct {
		Name   string `json:"name"`
		Prefix string `json:"prefix,omitempty"`
	} `json:"fromHeaders,omitempty"`
	FromParams []string `json:"fromParams,omitempty"`
}

// ClaimToHeader copies a claim of a verified token into a request header.
type ClaimToHeader struct {
	Header string `json:"header"`
	Claim  string `json:"claim"`
}

// AuthorizationPolicy is the subset of security.istio.io/v1
// AuthorizationPolicy the edge implements: ALLOW and DENY rules over
// request principals, paths and methods.
type AuthorizationPolicy struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata"`
	Spec       struct {
		Selector *Selector `json:"selector,omitempty"`
		Action   string    `json:"action,omitempty"`
		Rules    []Rule    `json:"rules,omitempty"`
	} `json:"spec"`
}

// Rule matches when any of its sources, any of its operations (each list
// empty matches everything) all match.
type Rule struct {
	From []struct {
		Source Source `json:"source"`
	} `json:"from,omitempty"`
	To []struct {
		Operation Operation `json:"operation"`
	} `json:"to,omitempty"`
	When []Condition `json:"when,omitempty"`
}

// Condition is an Istio "when" clause. The local edge implements the keys
// request.auth.claims[NAME] (a string claim, or a list of strings of which
// one must match).
type Condition struct {
	Key       string   `json:"key"`
	Values    []string `json:"values,omitempty"`
	NotValues []string `json:"notValues,omitempty"`
}

// claimName returns NAME of a request.auth.claims[NAME] key.
func (c Condition) claimName() (string, bool) {
	name, ok := strings.CutPrefix(c.Key, "request.auth.claims[")
	if !ok || !strings.HasSuffix(name, "]") || len(name) < 2 {
		return "", false
	}
	return strings.TrimSuffix(name, "]"), true
}

func (c Condition) matches(r Request) bool {
	name, _ := c.claimName()
	var have []string
	switch v := r.Claims[name].(type) {
	case string:
		have = []string{v}
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok {
				have = append(have, s)
			}
		}
	}
	found := func(patterns []string) bool {
		for _, h := range have {
			if anyMatch(patterns, h) {
				return true
			}
		}
		return false
	}
	if len(c.Values) > 0 && !found(c.Values) {
		return false
	}
	if len(c.NotValues) > 0 && found(c.NotValues) {
		return false
	}
	return true
}

// Source is who sends the request.
type Source struct {
	RequestPrincipals    []string `json:"requestPrincipals,omitempty"`
	NotRequestPrincipals []string `json:"notRequestPrincipals,omitempty"`
}

// Operation is what the request does.
type Operation struct {
	Methods    []string `json:"methods,omitempty"`
	NotMethods []string `json:"notMethods,omitempty"`
	Paths      []string `json:"paths,omitempty"`
	NotPaths   []string `json:"notPaths,omitempty"`
}

// Load reads both policy files.
func Load(requestAuthnPath, authzPath string) (*RequestAuthentication, *AuthorizationPolicy, error) {
	var ra RequestAuthentication
	if err := decode(requestAuthnPath, "security.istio.io/v1", "RequestAuthentication", &ra, &ra.APIVersion, &ra.Kind); err != nil {
		return nil, nil, err
	}
	if len(ra.Spec.JWTRules) == 0 {
		return nil, nil, fmt.Errorf("%s: no jwtRules", requestAuthnPath)
	}
	for i, r := range ra.Spec.JWTRules {
		if r.Issuer == "" {
			return nil, nil, fmt.Errorf("%s: jwtRules[%d] has no issuer", requestAuthnPath, i)
		}
		if len(r.FromHeaders) > 0 || len(r.FromParams) > 0 {
			return nil, nil, fmt.Errorf("%s: jwtRules[%d]: fromHeaders and fromParams are not implemented by the local edge", requestAuthnPath, i)
		}
	}
	var ap AuthorizationPolicy
	if err := decode(authzPath, "security.istio.io/v1", "AuthorizationPolicy", &ap, &ap.APIVersion, &ap.Kind); err != nil {
		return nil, nil, err
	}
	switch ap.Spec.Action {
	case "", "ALLOW", "DENY":
	default:
		return nil, nil, fmt.Errorf("%s: action %q is not implemented by the local edge", authzPath, ap.Spec.Action)
	}
	for i, rule := range ap.Spec.Rules {
		for _, c := range rule.When {
			if _, ok := c.claimName(); !ok {
				return nil, nil, fmt.Errorf("%s: rules[%d]: condition key %q is not implemented by the local edge", authzPath, i, c.Key)
			}
		}
	}
	return &ra, &ap, nil
}

func decode(path, apiVersion, kind string, v any, gotVersion, gotKind *string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read policy: %w", err)
	}
	if strings.Contains("\n"+string(b), "\n---") {
		return fmt.Errorf("%s: must be a single YAML document", path)
	}
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if *gotVersion != apiVersion || *gotKind != kind {
		return fmt.Errorf("%s: is %s %s, want %s %s", path, *gotVersion, *gotKind, apiVersion, kind)
	}
	return nil
}

// Request is what authorization looks at.
type Request struct {
	Method string
	Path   string // normalized, without the query
	// Principal is "<iss>/<sub>" of a verified token, or "" without one.
	Principal string
	// Claims are the verified token's claims, nil without one.
	Claims map[string]any
}

// ErrDenied is returned for a request the policy does not allow.
var ErrDenied = errors.New("RBAC: access denied")

// A Denial is ErrDenied with what the request lacked, read from the rules
// that would have allowed its method and path: a token at all, or a claim
// of the token (an ops page reached with a partner token names the role).
type Denial struct {
	Needs []string
}

func (d *Denial) Error() string {
	if len(d.Needs) == 0 {
		return ErrDenied.Error()
	}
	return ErrDenied.Error() + ": this path needs " + strings.Join(d.Needs, ", or ")
}

func (d *Denial) Unwrap() error { return ErrDenied }

// deny explains why no rule allowed r.
func (p *AuthorizationPolicy) deny(r Request) error {
	var needs []string
	add := func(need string) {
		if !slices.Contains(needs, need) {
			needs = append(needs, need)
		}
	}
	for _, rule := range p.Spec.Rules {
		if !rule.operationMatches(r) {
			continue
		}
		var lacks []string
		if !rule.sourceMatches(r) {
			lacks = append(lacks, "a verified token (Authorization: Bearer …)")
		}
		for _, c := range rule.When {
			if c.matches(r) {
				continue
			}
			if name, ok := c.claimName(); ok && len(c.Values) > 0 {
				lacks = append(lacks, fmt.Sprintf("a token whose %s claim is %s", name, strings.Join(c.Values, " or ")))
			} else {
				lacks = append(lacks, "a token that meets "+c.Key)
			}
		}
		if len(lacks) > 0 {
			add(strings.Join(lacks, " and "))
		}
	}
	return &Denial{Needs: needs}
}

// Authorize applies the policy as Istio does: an ALLOW policy allows what
// one of its rules matches and denies everything else; a DENY policy
// denies what one of its rules matches.
func (p *AuthorizationPolicy) Authorize(r Request) error {
	matched := false
	for _, rule := range p.Spec.Rules {
		if rule.matches(r) {
			matched = true
			break
		}
	}
	if p.Spec.Action == "DENY" {
		if matched {
			return ErrDenied
		}
		return nil
	}
	if !matched {
		return p.deny(r)
	}
	return nil
}

func (rule Rule) matches(r Request) bool {
	return rule.conditionsHold(r) && rule.sourceMatches(r) && rule.operationMatches(r)
}

func (rule Rule) sourceMatches(r Request) bool {
	if len(rule.From) == 0 {
		return true
	}
	for _, f := range rule.From {
		if f.Source.matches(r) {
			return true
		}
	}
	return false
}

func (rule Rule) operationMatches(r Request) bool {
	if len(rule.To) == 0 {
		return true
	}
	for _, t := range rule.To {
		if t.Operation.matches(r) {
			return true
		}
	}
	return false
}

func (rule Rule) conditionsHold(r Request) bool {
	for _, c := range rule.When {
		if !c.matches(r) {
			return false
		}
	}
	return true
}

func (s Source) matches(r Request) bool {
	// Principals match only a request that has one: "*" means any
	// authenticated request, never an anonymous one.
	if len(s.RequestPrincipals) > 0 && (r.Principal == "" || !anyMatch(s.RequestPrincipals, r.Principal)) {
		return false
	}
	if len(s.NotRequestPrincipals) > 0 && r.Principal != "" && anyMatch(s.NotRequestPrincipals, r.Principal) {
		return false
	}
	return true
}

func (o Operation) matches(r Request) bool {
	if len(o.Methods) > 0 && !anyMatch(o.Methods, r.Method) {
		return false
	}
	if len(o.NotMethods) > 0 && anyMatch(o.NotMethods, r.Method) {
		return false
	}
	if len(o.Paths) > 0 && !anyMatch(o.Paths, r.Path) {
		return false
	}
	if len(o.NotPaths) > 0 && anyMatch(o.NotPaths, r.Path) {
		return false
	}
	return true
}

// anyMatch applies Istio's string match: exact, "*" alone, a prefix match
// with a trailing "*", or a suffix match with a leading "*".
func anyMatch(patterns []string, v string) bool {
	for _, p := range patterns {
		switch {
		case p == "*":
			if v != "" {
				return true
			}
		case strings.HasSuffix(p, "*"):
			if strings.HasPrefix(v, strings.TrimSuffix(p, "*")) {
				return true
			}
		case strings.HasPrefix(p, "*"):
			if strings.HasSuffix(v, strings.TrimPrefix(p, "*")) {
				return true
			}
		case p == v:
			return true
		}
	}
	return false
}
