package smtpout_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"herald/devtools/mailcatch"
	"herald/dispatch/internal/provider"
	"herald/dispatch/internal/route"
	"herald/dispatch/internal/smtpout"
)

// testCA is a certificate authority made for one test, and a server
// certificate for 127.0.0.1 that it signed, as a relay's would be.
type testCA struct {
	roots *x509.CertPool
	pem   []byte // the CA certificate, as a -smtp-ca-file holds it
	cert  tls.Certificate
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "smtpout test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "relay.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return testCA{
		roots: roots,
		pem:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		cert:  tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key},
	}
}

// serverTLS is the catcher's side of ca.
func (ca testCA) serverTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{ca.cert}}
}

func TestStartTLS(t *testing.T) {
	ca := newTestCA(t)
	secure := startCatcher(t, mailcatch.Options{TLSConfig: ca.serverTLS()})
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
		{"trusted", secure, smtpout.Config{TLSMode: smtpout.StartTLS, TLS: &tls.Config{RootCAs: ca.roots}}, provider.Sent},
		// A handshake that fails proves that the sends above went over TLS.
		{"untrusted", secure, smtpout.Config{TLSMode: smtpout.StartTLS, TLS: &tls.Config{RootCAs: x509.NewCertPool()}}, provider.Deferred},
		{"system roots", secure, smtpout.Config{TLSMode: smtpout.StartTLS}, provider.Deferred},
		{"wrong name", secure, smtpout.Config{TLSMode: smtpout.StartTLS, TLS: &tls.Config{RootCAs: ca.roots, ServerName: "mx.example.com"}}, provider.Deferred},
		{"not offered, required", plain, smtpout.Config{TLSMode: smtpout.StartTLS, TLS: &tls.Config{RootCAs: ca.roots}}, provider.Deferred},
		{"not offered, none", plain, smtpout.Config{TLSMode: smtpout.NoTLS, TLS: &tls.Config{RootCAs: ca.roots}}, provider.Sent},
		{"offered, none", secure, smtpout.Config{TLSMode: smtpout.NoTLS}, provider.Sent},
		{"implicit against a plain greeting", secure, smtpout.Config{TLSMode: smtpout.ImplicitTLS, TLS: &tls.Config{RootCAs: ca.roots}}, provider.Deferred},
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

// TestRelayWithoutTLSWhenRequired: a relay that offers no STARTTLS, or one
// whose offer a man in the middle stripped, gets neither credentials nor
// mail, and the reason says why.
func TestRelayWithoutTLSWhenRequired(t *testing.T) {
	var mu sync.Mutex
	var after []string
	f := startFake(t, func(p *peer) {
		p.hello("PIPELINING", "AUTH PLAIN LOGIN")
		l := p.line()
		mu.Lock()
		after = append(after, l)
		mu.Unlock()
		if l == "QUIT" {
			p.say("221 bye")
		}
	})
	pool := newPool(t, smtpout.Config{Addr: f.addr, TLSMode: smtpout.StartTLS, Auth: &smtpout.Auth{Username: "herald", Password: "hunter2"}})
	msgs := []*provider.Message{
		{From: "a@example.com", To: "b@example.com", Body: message("1")},
		{From: "a@example.com", To: "c@example.com", Body: message("2")},
	}
	for i, r := range pool.Send(context.Background(), msgs) {
		if r.Outcome != provider.Deferred || !strings.Contains(r.Reason, "relay offers no STARTTLS") {
			t.Errorf("message %d: %v %q, want deferred because the relay offers no STARTTLS", i, r.Outcome, r.Reason)
		}
	}
	pool.Close()
	f.wait()
	mu.Lock()
	defer mu.Unlock()
	for _, l := range after {
		if l != "<eof>" && l != "QUIT" {
			t.Errorf("after EHLO without STARTTLS the client sent %q", l)
		}
	}
	if n := f.conns.Load(); n != 1 {
		t.Errorf("%d connections for one configuration error, want 1", n)
	}
}

func TestAuth(t *testing.T) {
	ca := newTestCA(t)
	creds := mailcatch.Credentials{Username: "herald", Password: "correct horse"}
	relay := func(opts mailcatch.Options) *mailcatch.Server {
		opts.TLSConfig, opts.RequireTLS, opts.Auth = ca.serverTLS(), true, &creds
		return startCatcher(t, opts)
	}
	starttls := relay(mailcatch.Options{})
	loginOnly := relay(mailcatch.Options{AuthMechanisms: []string{"LOGIN"}})
	implicit := relay(mailcatch.Options{ImplicitTLS: true})
	good := &smtpout.Auth{Username: creds.Username, Password: creds.Password}
	bad := &smtpout.Auth{Username: creds.Username, Password: "wrong password"}
	tests := []struct {
		name   string
		server *mailcatch.Server
		mode   smtpout.TLSMode
		auth   *smtpout.Auth
		want   provider.Outcome
		reason string // in every refused message's reason
		fails  int64  // refused AUTH exchanges at the server
	}{
		{"plain over starttls", starttls, smtpout.StartTLS, good, provider.Sent, "", 0},
		{"login over starttls", loginOnly, smtpout.StartTLS, good, provider.Sent, "", 0},
		{"plain over implicit tls", implicit, smtpout.ImplicitTLS, good, provider.Sent, "", 0},
		{"refused credentials", starttls, smtpout.StartTLS, bad, provider.Deferred, "relay refused AUTH for herald: 535 5.7.8", 1},
		{"refused over login", loginOnly, smtpout.StartTLS, bad, provider.Deferred, "relay refused AUTH", 1},
		{"none configured", starttls, smtpout.StartTLS, nil, provider.Deferred, "MAIL FROM: 530 5.7.0", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.server.Stats()
			pool := newPool(t, smtpout.Config{Addr: tc.server.SMTPAddr(), TLSMode: tc.mode, TLS: &tls.Config{RootCAs: ca.roots}, Auth: tc.auth, Conns: 1})
			var msgs []*provider.Message
			for i := range 5 {
				msgs = append(msgs, &provider.Message{From: "a@example.com", To: fmt.Sprintf("r%d@example.com", i), Body: message(fmt.Sprintf("%s-%d", tc.name, i))})
			}
			for i, r := range pool.Send(context.Background(), msgs) {
				if r.Outcome != tc.want || !strings.Contains(r.Reason, tc.reason) {
					t.Errorf("message %d: %v %q, want %v with %q", i, r.Outcome, r.Reason, tc.want, tc.reason)
				}
				if strings.Contains(r.Reason, "wrong password") || strings.Contains(r.Reason, creds.Password) {
					t.Errorf("message %d: the reason %q shows the password", i, r.Reason)
				}
			}
			after := tc.server.Stats()
			wantAccepted := int64(0)
			if tc.want == provider.Sent {
				wantAccepted = 5
			}
			if got := after.Messages - before.Messages; got != wantAccepted {
				t.Errorf("server accepted %d messages, want %d", got, wantAccepted)
			}
			// One refusal, not one per message: relays lock accounts that
			// keep trying.
			if got := after.AuthFailures - before.AuthFailures; got != tc.fails {
				t.Errorf("server refused AUTH %d times, want %d", got, tc.fails)
			}
		})
	}
}

// TestRefusedAuthTripsTheBreaker: refused credentials, or none where the
// relay wants them, are the relay's configuration, not the messages': no
// message fails, and the breaker opens so that the next provider takes
// over.
func TestRefusedAuthTripsTheBreaker(t *testing.T) {
	ca := newTestCA(t)
	mc := startCatcher(t, mailcatch.Options{TLSConfig: ca.serverTLS(), RequireTLS: true, Auth: &mailcatch.Credentials{Username: "herald", Password: "right"}})
	for name, auth := range map[string]*smtpout.Auth{
		"wrong password": {Username: "herald", Password: "wrong"},
		"no credentials": nil,
	} {
		t.Run(name, func(t *testing.T) {
			pool := newPool(t, smtpout.Config{Addr: mc.SMTPAddr(), TLSMode: smtpout.StartTLS, TLS: &tls.Config{RootCAs: ca.roots}, Auth: auth})
			router := route.New(prometheus.NewRegistry())
			router.Add("email", "smtp", pool, nil, route.BreakerConfig{Failures: 2, Cooloff: time.Hour}, prometheus.NewRegistry())
			for call := range 2 {
				p, err := router.Pick("email", nil)
				if err != nil {
					t.Fatalf("call %d: %v", call, err)
				}
				res := p.Send(context.Background(), []*provider.Message{{From: "a@example.com", To: "b@example.com", Body: message(fmt.Sprint(name, call))}})
				if res[0].Outcome != provider.Deferred || !strings.Contains(res[0].Reason, "relay configuration") {
					t.Errorf("call %d: %v %q, want deferred for the relay's configuration", call, res[0].Outcome, res[0].Reason)
				}
				router.Report(p, res)
			}
			if _, err := router.Pick("email", nil); !errors.Is(err, route.ErrNoProvider) {
				t.Errorf("after two refused calls Pick says %v, want the breaker open", err)
			}
		})
	}
	if st := mc.Stats(); st.Messages != 0 {
		t.Errorf("the relay accepted %d messages", st.Messages)
	}
}

func TestConfigValidate(t *testing.T) {
	auth := &smtpout.Auth{Username: "u", Password: "p"}
	tests := []struct {
		name string
		cfg  smtpout.Config
		want string // empty: valid
	}{
		{"starttls by default", smtpout.Config{Addr: "relay.example.com:587", Auth: auth}, ""},
		{"implicit", smtpout.Config{Addr: "relay.example.com:465", TLSMode: smtpout.ImplicitTLS, Auth: auth}, ""},
		{"none on loopback", smtpout.Config{Addr: "127.0.0.1:2525", TLSMode: smtpout.NoTLS}, ""},
		{"none on localhost", smtpout.Config{Addr: "localhost:2525", TLSMode: smtpout.NoTLS}, ""},
		{"none on ::1", smtpout.Config{Addr: "[::1]:2525", TLSMode: smtpout.NoTLS}, ""},
		{"none across the network", smtpout.Config{Addr: "relay.example.com:25", TLSMode: smtpout.NoTLS}, "loopback"},
		{"none with credentials", smtpout.Config{Addr: "127.0.0.1:25", TLSMode: smtpout.NoTLS, Auth: auth}, "never sent without TLS"},
		{"no verification", smtpout.Config{Addr: "relay.example.com:587", TLS: &tls.Config{InsecureSkipVerify: true}}, "verification"},
		{"unknown mode", smtpout.Config{Addr: "relay.example.com:587", TLSMode: "opportunistic"}, "unknown TLS mode"},
		{"no password", smtpout.Config{Addr: "relay.example.com:587", Auth: &smtpout.Auth{Username: "u"}}, "password"},
		{"no port", smtpout.Config{Addr: "relay.example.com"}, "address"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate: %v, want valid", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, smtpout.ErrRelayConfig)):
				t.Errorf("Validate: %v, want a relay configuration error about %q", err, tc.want)
			}
		})
	}
}

// TestInvalidConfigNeverDials: a pool built from a configuration that
// Validate refuses sends nothing, not even a greeting's worth.
func TestInvalidConfigNeverDials(t *testing.T) {
	f := startFake(t, func(p *peer) { p.hello() })
	pool := newPool(t, smtpout.Config{Addr: f.addr, TLSMode: smtpout.NoTLS, Auth: &smtpout.Auth{Username: "u", Password: "p"}})
	if r := pool.SendOne(context.Background(), "a@example.com", "b@example.com", message("x")); r.Outcome != provider.Deferred || !strings.Contains(r.Reason, "never sent without TLS") {
		t.Errorf("got %v %q, want deferred for the configuration", r.Outcome, r.Reason)
	}
	if n := f.conns.Load(); n != 0 {
		t.Errorf("%d connections, want none", n)
	}
}

func TestAuthString(t *testing.T) {
	a := &smtpout.Auth{Username: "herald", Password: "s3cret"}
	for _, s := range []string{a.String(), fmt.Sprint(a), fmt.Sprintf("%v", a)} {
		if strings.Contains(s, "s3cret") {
			t.Errorf("%q shows the password", s)
		}
	}
}

// TestStartTLSRefusesInjectedReplies: text after the reply to STARTTLS
// came in plain text and could have been injected by a man in the middle.
func TestStartTLSRefusesInjectedReplies(t *testing.T) {
	ca := newTestCA(t)
	f := startFake(t, func(p *peer) {
		p.hello("PIPELINING", "STARTTLS")
		p.expect("STARTTLS")
		p.say("220 go ahead", "250 injected")
		p.line()
	})
	pool := newPool(t, smtpout.Config{Addr: f.addr, TLSMode: smtpout.StartTLS, TLS: &tls.Config{RootCAs: ca.roots}})
	if r := pool.SendOne(context.Background(), "a@example.com", "b@example.com", message("x")); r.Outcome != provider.Deferred {
		t.Errorf("got %v %q, want deferred", r.Outcome, r.Reason)
	}
}
