package mailcatch

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// selfSigned returns a server certificate for 127.0.0.1 and a pool that
// trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mailcatch test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true,

		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

func TestStartTLS(t *testing.T) {
	cert, roots := selfSigned(t)
	s := startServer(t, Options{TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}})
	plain := startServer(t, Options{})
	if ok, _ := extension(t, plain.SMTPAddr(), "STARTTLS"); ok {
		t.Error("a catcher without TLSConfig offers STARTTLS")
	}
	if ok, _ := extension(t, s.SMTPAddr(), "STARTTLS"); !ok {
		t.Fatal("a catcher with TLSConfig does not offer STARTTLS")
	}

	// go-smtp's client shakes hands lazily, at the next command.
	if c, err := smtp.DialStartTLS(s.SMTPAddr(), &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "127.0.0.1"}); err == nil {
		if err := c.Noop(); err == nil {
			t.Error("a client that trusts no certificate completed STARTTLS")
		}
		c.Close()
	}
	c, err := smtp.DialStartTLS(s.SMTPAddr(), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	defer c.Close()
	if _, ok := c.TLSConnectionState(); !ok {
		t.Fatal("the connection is not encrypted after STARTTLS")
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS is offered again inside TLS")
	}
	if err := c.SendMail("a@example.com", []string{"b@example.com"}, strings.NewReader(rawMessage("tls@herald", "over tls", "secret"))); err != nil {
		t.Fatal(err)
	}
	if !s.Has("tls@herald") {
		t.Error("the message sent over TLS was not recorded")
	}
}
