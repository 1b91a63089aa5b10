package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"

	"herald/deploy/stack"
)

// demoDKIM is the signing key the demo makes for its retailer's From
// domain, so its mail carries a DKIM signature a receiver could check.
type demoDKIM struct {
	domain, selector, keyFile string
	key                       *rsa.PrivateKey
}

// newDemoDKIM makes an RSA-2048 key, the size receivers expect, and writes
// it where dispatch reads it.
func newDemoDKIM() (*demoDKIM, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("make the demo's DKIM key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode the demo's DKIM key: %w", err)
	}
	f, err := os.CreateTemp("", "herald-demo-dkim-*.pem")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		os.Remove(f.Name())
		return nil, fmt.Errorf("write the demo's DKIM key: %w", err)
	}
	return &demoDKIM{domain: stack.DemoSenderDomain, selector: "herald-demo", keyFile: f.Name(), key: key}, nil
}

func (d *demoDKIM) flags() []string {
	return []string{"-dkim-domain=" + d.domain, "-dkim-selector=" + d.selector, "-dkim-key-file=" + d.keyFile}
}

// record is the DNS TXT record that publishes the public key (RFC 6376
// section 3.6.1).
func (d *demoDKIM) record() string {
	der, err := x509.MarshalPKIXPublicKey(&d.key.PublicKey)
	if err != nil {
		return fmt.Sprintf("(the public key cannot be encoded: %v)", err)
	}
	return fmt.Sprintf("%s._domainkey.%s. IN TXT \"v=DKIM1; k=rsa; p=%s\"", d.selector, d.domain, base64.StdEncoding.EncodeToString(der))
}

func (d *demoDKIM) remove() { os.Remove(d.keyFile) }
