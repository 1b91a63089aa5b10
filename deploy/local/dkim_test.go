package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"herald/deploy/stack"
)

// TestDemoDKIMRecordVerifiesItsSignatures checks the DNS record the demo
// prints: a verifier that looks the selector up and gets that record
// accepts mail signed with the demo's key.
func TestDemoDKIMRecordVerifiesItsSignatures(t *testing.T) {
	d, err := newDemoDKIM()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.remove)
	msg := "From: Acme <deals@acme.example>\r\nTo: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n"
	var signed bytes.Buffer
	if err := dkim.Sign(&signed, strings.NewReader(msg), &dkim.SignOptions{Domain: d.domain, Selector: d.selector, Signer: d.key}); err != nil {
		t.Fatal(err)
	}
	name, txt, ok := strings.Cut(d.record(), " IN TXT ")
	if !ok {
		t.Fatalf("record %q is not NAME IN TXT VALUE", d.record())
	}
	lookup := func(domain string) ([]string, error) {
		if domain+"." != name {
			return nil, fmt.Errorf("no TXT record at %s (the demo printed %s)", domain, name)
		}
		return []string{strings.Trim(txt, `"`)}, nil
	}
	vs, err := dkim.VerifyWithOptions(&signed, &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != stack.DemoSenderDomain {
		t.Fatalf("verifications %+v: want one valid signature of acme.example", vs)
	}
}
