package mailcatch

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// loginNoIR is a LOGIN client that sends nothing with AUTH and answers the
// server's two challenges, as some relays' clients do.
type loginNoIR struct{ user, pass string }

func (l loginNoIR) Start() (string, []byte, error) { return sasl.Login, nil, nil }

func (l loginNoIR) Next(challenge []byte) ([]byte, error) {
	switch string(challenge) {
	case "Username:":
		return []byte(l.user), nil
	case "Password:":
		return []byte(l.pass), nil
	}
	return nil, errors.New("unexpected challenge " + string(challenge))
}

// replyCode is the SMTP code of err, or 0 when it is no SMTP reply.
func replyCode(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func TestStartRefusesTLSOptionsWithoutTLSConfig(t *testing.T) {
	for name, opts := range map[string]Options{
		"require tls":  {RequireTLS: true},
		"implicit tls": {ImplicitTLS: true},
		"auth":         {Auth: &Credentials{Username: "u", Password: "p"}},
	} {
		t.Run(name, func(t *testing.T) {
			if s, err := Start(t.Context(), opts); err == nil {
				s.Close()
				t.Fatal("Start accepted a TLS option without TLSConfig")
			}
		})
	}
}

func TestRequireTLSRefusesPlainMail(t *testing.T) {
	cert, roots := selfSigned(t)
	s := startServer(t, Options{TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, RequireTLS: true})

	err := send(t, s.SMTPAddr(), "a@example.com", []string{"b@example.com"}, rawMessage("plain@herald", "plain", "x"))
	if replyCode(err) != 530 {
		t.Fatalf("MAIL over plain text: %v, want 530", err)
	}
	c, err := smtp.DialStartTLS(s.SMTPAddr(), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendMail("a@example.com", []string{"b@example.com"}, strings.NewReader(rawMessage("tls@herald", "tls", "x"))); err != nil {
		t.Fatalf("MAIL after STARTTLS: %v", err)
	}
	if s.Has("plain@herald") || !s.Has("tls@herald") {
		t.Error("want only the message sent over TLS recorded")
	}
	if st := s.Stats(); st.RefusedMail != 1 || st.Messages != 1 {
		t.Errorf("stats %+v: want 1 refused MAIL and 1 message", st)
	}
}

func TestAuth(t *testing.T) {
	cert, roots := selfSigned(t)
	creds := &Credentials{Username: "herald", Password: "s3cret pass"}
	s := startServer(t, Options{TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, Auth: creds})
	clientTLS := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}

	t.Run("not offered over plain text", func(t *testing.T) {
		c, err := smtp.Dial(s.SMTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Hello("client.test"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := c.Extension("AUTH"); ok {
			t.Error("AUTH is offered before TLS")
		}
		// The refusal comes before any credentials are read: PLAIN's
		// initial response goes with the command, so the answer is to
		// AUTH itself.
		err = c.Auth(sasl.NewPlainClient("", creds.Username, creds.Password))
		if code := replyCode(err); code < 500 {
			t.Errorf("AUTH over plain text: %v, want a 5xx refusal", err)
		}
		if st := s.Stats(); st.AuthFailures != 0 {
			t.Errorf("the credentials sent over plain text were checked: %+v", st)
		}
	})

	tests := []struct {
		name     string
		auth     sasl.Client // nil: no AUTH
		wantAuth int         // 0: accepted
		wantMail int         // 0: accepted
	}{
		{"plain", sasl.NewPlainClient("", creds.Username, creds.Password), 0, 0},
		{"plain with identity", sasl.NewPlainClient(creds.Username, creds.Username, creds.Password), 0, 0},
		{"login", sasl.NewLoginClient(creds.Username, creds.Password), 0, 0},
		{"login without initial response", loginNoIR{creds.Username, creds.Password}, 0, 0},
		{"wrong password", sasl.NewPlainClient("", creds.Username, "guess"), 535, 530},
		{"wrong user", sasl.NewLoginClient("root", creds.Password), 535, 530},
		{"other identity", sasl.NewPlainClient("admin", creds.Username, creds.Password), 535, 530},
		{"no auth", nil, 0, 530},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := smtp.DialStartTLS(s.SMTPAddr(), clientTLS)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if ok, params := c.Extension("AUTH"); !ok || params != "PLAIN LOGIN" {
				t.Errorf("AUTH inside TLS: offered %v with %q, want PLAIN LOGIN", ok, params)
			}
			if tc.auth != nil {
				if err := c.Auth(tc.auth); replyCode(err) != tc.wantAuth {
					t.Fatalf("AUTH: %v, want code %d", err, tc.wantAuth)
				}
			}
			id := strings.ReplaceAll(tc.name, " ", "-") + "@herald"
			err = c.SendMail("a@example.com", []string{"b@example.com"}, strings.NewReader(rawMessage(id, tc.name, "x")))
			if replyCode(err) != tc.wantMail {
				t.Fatalf("MAIL: %v, want code %d", err, tc.wantMail)
			}
			if got := s.Has(id); got != (tc.wantMail == 0) {
				t.Errorf("message recorded: %v, want %v", got, tc.wantMail == 0)
			}
		})
	}
	if st := s.Stats(); st.AuthFailures != 3 || st.RefusedMail != 4 {
		t.Errorf("stats %+v: want 3 auth failures and 4 refused MAIL", st)
	}
}

func TestImplicitTLS(t *testing.T) {
	cert, roots := selfSigned(t)
	creds := &Credentials{Username: "herald", Password: "pw"}
	s := startServer(t, Options{TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, ImplicitTLS: true, RequireTLS: true, Auth: creds})

	if _, err := smtp.DialTLS(s.SMTPAddr(), &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "127.0.0.1"}); err == nil {
		t.Error("a client that trusts no certificate completed the handshake")
	}
	c, err := smtp.DialTLS(s.SMTPAddr(), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.TLSConnectionState(); !ok {
		t.Fatal("the connection is not encrypted")
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS is offered on an implicit TLS connection")
	}
	if err := c.Auth(sasl.NewPlainClient("", creds.Username, creds.Password)); err != nil {
		t.Fatalf("AUTH: %v", err)
	}
	if err := c.SendMail("a@example.com", []string{"b@example.com"}, strings.NewReader(rawMessage("implicit@herald", "implicit", "x"))); err != nil {
		t.Fatal(err)
	}
	if !s.Has("implicit@herald") {
		t.Error("the message sent over implicit TLS was not recorded")
	}
}
