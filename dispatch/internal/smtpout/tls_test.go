package smtpout_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"herald/devtools/mailcatch"
	"herald/dispatch/internal/provider"
	"herald/dispatch/internal/smtpout"
)

// selfSigned returns a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "smtpout test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
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
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, roots
}

func TestStartTLS(t *testing.T) {
	cert, roots := selfSigned(t)
	secure := startCatcher(t, mailcatch.Options{TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}})
	plain := startCatcher(t, mailcatch.Options{})
	msgs := func(id string) []*provider.Message {
		// Two messages, so that the second rides behind the first.
		return []*provider.Message{
			{From: "a@example.com", To: "b@example.com", Body: message(id + "-1")},
			{From: "a@example.com", To: "c@example.com", Body: message(id + "-2")},
		}
	}
	tests := []struct {
		name   string
		server *mailcatch.Server
		cfg    smtpout.Config
		want   provider.Outcome
	}{
		{"trusted", secure, smtpout.Config{TLS: &tls.Config{RootCAs: roots}, RequireTLS: true}, provider.Sent},
		// A handshake that fails proves that the sends above went over TLS.
		{"untrusted", secure, smtpout.Config{TLS: &tls.Config{RootCAs: x509.NewCertPool()}}, provider.Deferred},
		{"wrong name", secure, smtpout.Config{TLS: &tls.Config{RootCAs: roots, ServerName: "mx.example.com"}}, provider.Deferred},
		{"not offered, required", plain, smtpout.Config{TLS: &tls.Config{RootCAs: roots}, RequireTLS: true}, provider.Deferred},
		{"not offered, opportunistic", plain, smtpout.Config{TLS: &tls.Config{RootCAs: roots}}, provider.Sent},
		{"offered, not configured", secure, smtpout.Config{}, provider.Sent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.server.Stats().Messages
			tc.cfg.Addr = tc.server.SMTPAddr()
			pool := newPool(t, tc.cfg)
			for i, r := range pool.Send(context.Background(), msgs(tc.name)) {
				if r.Outcome != tc.want {
					t.Errorf("message %d: %v %q, want %v", i, r.Outcome, r.Reason, tc.want)
				}
			}
			wantAccepted := int64(0)
			if tc.want == provider.Sent {
				wantAccepted = 2
			}
			if got := tc.server.Stats().Messages - before; got != wantAccepted {
				t.Errorf("server accepted %d messages, want %d", got, wantAccepted)
			}
		})
	}
}

// TestStartTLSRefusesInjectedReplies: text after the reply to STARTTLS
// came in plain text and could have been injected by a man in the middle.
func TestStartTLSRefusesInjectedReplies(t *testing.T) {
	_, roots := selfSigned(t)
	f := startFake(t, func(p *peer) {
		p.hello("PIPELINING", "STARTTLS")
		p.expect("STARTTLS")
		p.say("220 go ahead", "250 injected")
		p.line()
	})
	pool := newPool(t, smtpout.Config{Addr: f.addr, TLS: &tls.Config{RootCAs: roots}})
	if r := pool.SendOne(context.Background(), "a@example.com", "b@example.com", message("x")); r.Outcome != provider.Deferred {
		t.Errorf("got %v %q, want deferred", r.Outcome, r.Reason)
	}
}
