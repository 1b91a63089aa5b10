package unsubscribe_test

import (
	"errors"
	"strings"
	"testing"

	"herald/shared/unsubscribe"
)

func TestSignVerify(t *testing.T) {
	s, err := unsubscribe.NewSigner([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	c := unsubscribe.Claim{Tenant: "acme", Customer: "c1", Email: "ada@example.com", Job: "j1"}
	tok := s.Sign(c)
	got, err := s.Verify(tok)
	if err != nil || got != c {
		t.Fatalf("verify own token: %+v, %v", got, err)
	}
	other, _ := unsubscribe.NewSigner([]byte("another secret of sufficient size"))
	payload, _, _ := strings.Cut(tok, ".")
	forged := strings.Replace(payload, "Y", "Z", 1) + tok[len(payload):]
	for name, bad := range map[string]string{
		"other key": other.Sign(c), "tampered payload": forged, "no signature": payload, "empty": "",
	} {
		if _, err := s.Verify(bad); !errors.Is(err, unsubscribe.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
	if _, err := unsubscribe.NewSigner([]byte("short")); err == nil {
		t.Error("a short secret was accepted")
	}
}
