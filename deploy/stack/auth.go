package stack

import (
	"crypto/rsa"
	"crypto/x509"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The local stack's partner tokens: signed with a development key that is
// checked in (dev-jwt-key.pem; it guards nothing but throwaway local
// stacks), for the issuer and audience that the shipped
// RequestAuthentication trusts. The edge is given this key's JWKS instead
// of the real issuer's.
const (
	DevIssuer   = "https://auth.herald.example"
	DevAudience = "herald-partner-api"
	DevKeyID    = "herald-local-dev-1"
	// TenantClaim is the claim the edge copies into X-Tenant-ID.
	TenantClaim = "tenant"
)

//go:embed dev-jwt-key.pem
var devKeyPEM []byte

var devKey = sync.OnceValues(func() (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(devKeyPEM)
	if block == nil {
		return nil, errors.New("dev-jwt-key.pem holds no PEM block")
	}
	return x509.ParsePKCS1PrivateKey(block.Bytes)
})

// DevSigningKey is the local stack's token-signing key.
func DevSigningKey() (*rsa.PrivateKey, error) { return devKey() }

// MintToken returns a partner token for tenant, valid for ttl, signed with
// the development key.
func MintToken(tenant string, ttl time.Duration) (string, error) {
	key, err := devKey()
	if err != nil {
		return "", err
	}
	now := time.Now()
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": DevIssuer, "sub": "partner:" + tenant, "aud": []string{DevAudience},
		TenantClaim: tenant, "iat": now.Unix(), "exp": now.Add(ttl).Unix(),
	})
	t.Header["kid"] = DevKeyID
	return t.SignedString(key)
}

// MintOpsToken signs a dev token for an operator: role "ops", no tenant.
// It opens /ops, and nothing of any tenant's partner API.
func MintOpsToken(ttl time.Duration) (string, error) {
	key, err := devKey()
	if err != nil {
		return "", err
	}
	now := time.Now()
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": DevIssuer, "sub": "operator:local", "aud": []string{DevAudience},
		"role": "ops", "iat": now.Unix(), "exp": now.Add(ttl).Unix(),
	})
	t.Header["kid"] = DevKeyID
	return t.SignedString(key)
}

// JWKS is the JSON Web Key Set publishing the public halves of keys by id.
func JWKS(keys map[string]*rsa.PublicKey) ([]byte, error) {
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	for kid, pub := range keys {
		set.Keys = append(set.Keys, map[string]string{
			"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
			"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
		})
	}
	return json.MarshalIndent(set, "", "  ")
}

func writeDevJWKS(path string) error {
	key, err := devKey()
	if err != nil {
		return err
	}
	b, err := JWKS(map[string]*rsa.PublicKey{DevKeyID: &key.PublicKey})
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write dev JWKS: %w", err)
	}
	return nil
}
