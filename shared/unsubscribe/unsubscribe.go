// Package unsubscribe makes and checks the signed tokens in one-click
// unsubscribe links (RFC 8058). A token names the tenant, customer and
// address it unsubscribes and the job whose message carried it; the HMAC
// makes it unforgeable without the secret, so the public endpoint needs no
// login, no cookie and no database lookup to trust it.
package unsubscribe

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
)

// Claim is what a token asserts.
type Claim struct {
	Tenant   string `json:"t"`
	Customer string `json:"c"`
	Email    string `json:"e"`
	Job      string `json:"j"`
}

// ErrInvalid is returned for a token that is malformed or not signed with
// the secret.
var ErrInvalid = errors.New("invalid unsubscribe token")

// Signer signs and verifies tokens with one secret.
type Signer struct{ secret []byte }

// NewSigner returns a signer; the secret should be at least 32 random bytes.
func NewSigner(secret []byte) (*Signer, error) {
	if len(secret) < 16 {
		return nil, errors.New("unsubscribe secret must be at least 16 bytes")
	}
	return &Signer{secret: append([]byte(nil), secret...)}, nil
}

var b64 = base64.RawURLEncoding

// Sign returns the URL-safe token for c.
func (s *Signer) Sign(c Claim) string {
	payload, _ := json.Marshal(c) // a struct of strings always marshals
	return b64.EncodeToString(payload) + "." + b64.EncodeToString(s.mac(payload))
}

// Verify returns the claim of a token signed by s.
func (s *Signer) Verify(token string) (Claim, error) {
	p, m, ok := strings.Cut(token, ".")
	if !ok || len(token) > 2048 {
		return Claim{}, ErrInvalid
	}
	payload, err1 := b64.DecodeString(p)
	mac, err2 := b64.DecodeString(m)
	if err1 != nil || err2 != nil || !hmac.Equal(mac, s.mac(payload)) {
		return Claim{}, ErrInvalid
	}
	var c Claim
	if err := json.Unmarshal(payload, &c); err != nil || c.Tenant == "" || c.Email == "" {
		return Claim{}, ErrInvalid
	}
	return c, nil
}

func (s *Signer) mac(payload []byte) []byte {
	h := hmac.New(sha256.New, s.secret)
	h.Write([]byte("herald-unsubscribe-v1\x00"))
	h.Write(payload)
	return h.Sum(nil)[:16]
}
