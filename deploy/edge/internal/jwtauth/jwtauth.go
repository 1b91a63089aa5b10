// Package jwtauth verifies partner JWTs as Istio's RequestAuthentication
// does at the gateway: the issuer picks the rule, the signature is checked
// against that issuer's JWKS with the algorithms pinned to asymmetric ones,
// exp and nbf allow 60 s of clock skew (Envoy's default), and the audience
// must be one the rule lists. Key sets are reloaded periodically and when a
// token names a key id not yet known, so keys can be rotated.
package jwtauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ClockSkew is how far exp and nbf may be off, as Envoy allows.
const ClockSkew = 60 * time.Second

// Algorithms are the signature algorithms accepted. Symmetric ones (HS*)
// and "none" are never accepted: a JWKS publishes public keys, and a token
// "signed" with one as an HMAC secret must not pass.
var Algorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}

// Rule is one trusted issuer.
type Rule struct {
	Issuer    string
	Audiences []string
	Keys      *KeySet
}

// Verified is what a valid token asserts.
type Verified struct {
	Issuer  string
	Subject string
	Claims  jwt.MapClaims
}

// Principal is Istio's request principal: "<iss>/<sub>".
func (v Verified) Principal() string { return v.Issuer + "/" + v.Subject }

// Error is a rejected token, with Envoy's wording.
type Error struct{ Reason string }

func (e *Error) Error() string { return e.Reason }

// Verifier checks tokens against rules.
type Verifier struct {
	rules []Rule
	now   func() time.Time
}

// NewVerifier returns a verifier for rules; now is the clock (time.Now).
func NewVerifier(rules []Rule, now func() time.Time) *Verifier {
	return &Verifier{rules: rules, now: now}
}

// Verify checks a compact JWT.
func (v *Verifier) Verify(ctx context.Context, token string) (Verified, error) {
	var unverified jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &unverified); err != nil {
		return Verified{}, &Error{"Jwt is not in the form of Header.Payload.Signature"}
	}
	var rule *Rule
	for i := range v.rules {
		if v.rules[i].Issuer == unverified.Issuer {
			rule = &v.rules[i]
		}
	}
	if rule == nil {
		return Verified{}, &Error{"Jwt issuer is not configured"}
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods(Algorithms),
		jwt.WithLeeway(ClockSkew),
		jwt.WithIssuer(rule.Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(v.now),
	)
	claims := jwt.MapClaims{}
	_, err := parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		return rule.Keys.Lookup(ctx, kid, t.Method.Alg())
	})
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenExpired):
		return Verified{}, &Error{"Jwt is expired"}
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return Verified{}, &Error{"Jwt not yet valid"}
	case errors.Is(err, errUnknownKey):
		return Verified{}, &Error{"Jwks doesn't have key to match kid or alg from Jwt"}
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return Verified{}, &Error{"Jwt verification fails"}
	default:
		return Verified{}, &Error{"Jwt verification fails: " + err.Error()}
	}
	if len(rule.Audiences) > 0 {
		aud, _ := claims.GetAudience()
		if !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(rule.Audiences, a) }) {
			return Verified{}, &Error{"Audiences in Jwt are not allowed"}
		}
	}
	sub, _ := claims.GetSubject()
	return Verified{Issuer: rule.Issuer, Subject: sub, Claims: claims}, nil
}

var errUnknownKey = errors.New("no key for kid and alg")

// KeySet is a JWKS read from a file or an http(s) URL, kept fresh.
type KeySet struct {
	source  string
	client  *http.Client
	minGap  time.Duration
	mu      sync.Mutex
	keys    []key
	loaded  time.Time
	loadErr error
}

type key struct {
	kid string
	pub any // *rsa.PublicKey or *ecdsa.PublicKey
}

// NewKeySet reads source (a file path or an http(s) URL) once and returns
// the set; a reload happens at most every minGap.
func NewKeySet(ctx context.Context, source string, minGap time.Duration) (*KeySet, error) {
	k := &KeySet{source: source, client: &http.Client{Timeout: 10 * time.Second}, minGap: minGap}
	if err := k.Reload(ctx); err != nil {
		return nil, err
	}
	return k, nil
}

// Reload reads the set again; on failure the old keys stay in use.
func (k *KeySet) Reload(ctx context.Context) error {
	b, err := k.fetch(ctx)
	var keys []key
	if err == nil {
		keys, err = parseJWKS(b)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.loaded = time.Now()
	k.loadErr = err
	if err != nil {
		return fmt.Errorf("load JWKS from %s: %w", k.source, err)
	}
	k.keys = keys
	return nil
}

// Err is the error of the last reload, if it failed.
func (k *KeySet) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.loadErr
}

func (k *KeySet) fetch(ctx context.Context) ([]byte, error) {
	if !strings.HasPrefix(k.source, "http://") && !strings.HasPrefix(k.source, "https://") {
		return os.ReadFile(k.source)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.source, nil)
	if err != nil {
		return nil, err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

// Lookup returns the key for kid (any key when kid is empty) that suits
// alg. An unknown kid triggers one reload, at most every minGap, so that a
// newly published key works at once.
func (k *KeySet) Lookup(ctx context.Context, kid, alg string) (any, error) {
	if pub := k.find(kid, alg); pub != nil {
		return pub, nil
	}
	k.mu.Lock()
	stale := time.Since(k.loaded) >= k.minGap
	k.mu.Unlock()
	if stale {
		_ = k.Reload(ctx)
		if pub := k.find(kid, alg); pub != nil {
			return pub, nil
		}
	}
	return nil, errUnknownKey
}

func (k *KeySet) find(kid, alg string) any {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, key := range k.keys {
		if kid != "" && key.kid != kid {
			continue
		}
		switch key.pub.(type) {
		case *rsa.PublicKey:
			if strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS") {
				return key.pub
			}
		case *ecdsa.PublicKey:
			if strings.HasPrefix(alg, "ES") {
				return key.pub
			}
		}
	}
	return nil
}

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

func parseJWKS(b []byte) ([]key, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("decode JWKS: %w", err)
	}
	var keys []key
	for _, j := range set.Keys {
		if j.Use != "" && j.Use != "sig" {
			continue
		}
		dec := func(s string) *big.Int {
			raw, err := base64.RawURLEncoding.DecodeString(s)
			if err != nil || len(raw) == 0 {
				return nil
			}
			return new(big.Int).SetBytes(raw)
		}
		switch j.Kty {
		case "RSA":
			n, e := dec(j.N), dec(j.E)
			if n == nil || e == nil || !e.IsInt64() || n.BitLen() < 2048 {
				return nil, fmt.Errorf("JWKS key %q: bad or short RSA key", j.Kid)
			}
			keys = append(keys, key{kid: j.Kid, pub: &rsa.PublicKey{N: n, E: int(e.Int64())}})
		case "EC":
			var curve elliptic.Curve
			switch j.Crv {
			case "P-256":
				curve = elliptic.P256()
			case "P-384":
				curve = elliptic.P384()
			case "P-521":
				curve = elliptic.P521()
			default:
				return nil, fmt.Errorf("JWKS key %q: curve %q", j.Kid, j.Crv)
			}
			// RFC 7518 6.2.1: x and y are the curve's full size each, so
			// together they are the uncompressed point after its 0x04.
			x, errX := base64.RawURLEncoding.DecodeString(j.X)
			y, errY := base64.RawURLEncoding.DecodeString(j.Y)
			size := (curve.Params().BitSize + 7) / 8
			if errX != nil || errY != nil || len(x) != size || len(y) != size {
				return nil, fmt.Errorf("JWKS key %q: bad EC key", j.Kid)
			}
			pub, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
			if err != nil {
				return nil, fmt.Errorf("JWKS key %q: bad EC key: %w", j.Kid, err)
			}
			keys = append(keys, key{kid: j.Kid, pub: pub})
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS has no signing keys")
	}
	return keys, nil
}

// PublicJWK is the JWKS entry of an RSA public key, for tools that publish
// a key set (the local stack's dev key, tests).
func PublicJWK(kid string, pub *rsa.PublicKey) map[string]string {
	return map[string]string{
		"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}
}
