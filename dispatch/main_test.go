package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io/fs"
	"math/big"
	"strings"
	"testing"
	"time"

	"herald/dispatch/internal/smtpout"
)

// caPEM is a CA certificate made for the test, as an -smtp-ca-file holds it.
func caPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "relay CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestSecureSMTP(t *testing.T) {
	files := map[string][]byte{
		"ca.pem":   caPEM(t),
		"junk.pem": []byte("not a certificate"),
		"password": []byte("from the file\n"),
	}
	readFile := func(name string) ([]byte, error) {
		if b, ok := files[name]; ok {
			return b, nil
		}
		return nil, fs.ErrNotExist
	}
	const secret = "a verp secret of 16+ bytes"
	tests := []struct {
		name string
		addr string
		sec  smtpSecurity
		want string // in the error; empty: valid
		auth string // the password the pool gets, when valid
	}{
		{"starttls with a CA and a password file", "relay.example.com:587", smtpSecurity{TLS: "starttls", CAFile: "ca.pem", Username: "herald", PasswordFile: "password"}, "", "from the file"},
		{"implicit with the password from the environment", "relay.example.com:465", smtpSecurity{TLS: "implicit", Username: "herald", Password: "from env"}, "", "from env"},
		{"verp", "relay.example.com:587", smtpSecurity{TLS: "starttls", ReturnDomain: "bounces.example.com", VERPSecret: secret}, "", ""},
		{"none on loopback with the flag", "127.0.0.1:2525", smtpSecurity{TLS: "none", InsecureLoopback: true}, "", ""},
		{"none without the flag", "127.0.0.1:2525", smtpSecurity{TLS: "none"}, "needs -smtp-insecure-loopback", ""},
		{"the flag across the network", "relay.example.com:25", smtpSecurity{TLS: "none", InsecureLoopback: true}, "not \"relay.example.com\"", ""},
		{"none with credentials", "127.0.0.1:2525", smtpSecurity{TLS: "none", InsecureLoopback: true, Username: "herald", Password: "pw"}, "never sent without TLS", ""},
		{"unknown mode", "relay.example.com:587", smtpSecurity{TLS: "opportunistic"}, "want starttls, implicit or none", ""},
		{"missing CA file", "relay.example.com:587", smtpSecurity{TLS: "starttls", CAFile: "nowhere.pem"}, "read -smtp-ca-file", ""},
		{"CA file without a certificate", "relay.example.com:587", smtpSecurity{TLS: "starttls", CAFile: "junk.pem"}, "holds no PEM certificate", ""},
		{"user without password", "relay.example.com:587", smtpSecurity{TLS: "starttls", Username: "herald"}, "needs a password", ""},
		{"password without user", "relay.example.com:587", smtpSecurity{TLS: "starttls", Password: "pw"}, "needs -smtp-username", ""},
		{"password twice", "relay.example.com:587", smtpSecurity{TLS: "starttls", Username: "herald", Password: "pw", PasswordFile: "password"}, "give the SMTP password once", ""},
		{"missing password file", "relay.example.com:587", smtpSecurity{TLS: "starttls", Username: "herald", PasswordFile: "nowhere"}, "read -smtp-password-file", ""},
		{"verp without a secret", "relay.example.com:587", smtpSecurity{TLS: "starttls", ReturnDomain: "bounces.example.com"}, "VERP secret", ""},
		{"secret without a domain", "relay.example.com:587", smtpSecurity{TLS: "starttls", VERPSecret: secret}, "needs -smtp-return-domain", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := secureSMTP(smtpout.Config{Addr: tc.addr}, tc.sec, readFile)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("secureSMTP: %v, want an error about %q", err, tc.want)
				}
				for _, pw := range []string{"from the file", "from env", "pw"} {
					if strings.Contains(err.Error(), pw) {
						t.Errorf("the error %q shows the password", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("secureSMTP: %v", err)
			}
			if string(cfg.TLSMode) != tc.sec.TLS {
				t.Errorf("TLS mode %q, want %q", cfg.TLSMode, tc.sec.TLS)
			}
			if (cfg.TLS != nil && cfg.TLS.RootCAs != nil) != (tc.sec.CAFile != "") {
				t.Errorf("root CAs set: %v, want %v", cfg.TLS != nil, tc.sec.CAFile != "")
			}
			switch {
			case tc.auth == "" && cfg.Auth != nil:
				t.Errorf("AUTH configured as %v, want none", cfg.Auth)
			case tc.auth != "" && (cfg.Auth == nil || cfg.Auth.Password != tc.auth || cfg.Auth.Username != tc.sec.Username):
				t.Errorf("AUTH %v, want %s with the password %q", cfg.Auth, tc.sec.Username, tc.auth)
			}
			if (cfg.ReturnPath != nil) != (tc.sec.ReturnDomain != "") {
				t.Errorf("return path %+v, want one for %q", cfg.ReturnPath, tc.sec.ReturnDomain)
			}
		})
	}
}

// TestStartLogMasksSMTPSecrets: the start-up line logs the configuration,
// STARTTLS by default, and neither the SMTP password nor the VERP secret.
func TestStartLogMasksSMTPSecrets(t *testing.T) {
	env := map[string]string{
		"HERALD_SMTP_ADDR":          "relay.example.com:587",
		"HERALD_SMTP_USERNAME":      "herald",
		"HERALD_SMTP_PASSWORD":      "hunter2-smtp-password",
		"HERALD_SMTP_RETURN_DOMAIN": "bounces.example.com",
		"HERALD_SMTP_VERP_SECRET":   "verp-secret-0123456789",
		// Start logs its configuration and then fails at once on this.
		"HERALD_DATABASE_URL": "postgres://%zz",
	}
	var out strings.Builder
	err := run(t.Context(), nil, func(k string) string { return env[k] }, &out)
	if err == nil {
		t.Fatal("run started with a database URL that does not parse")
	}
	log := out.String()
	if !strings.Contains(log, `"smtp_tls":"starttls"`) || !strings.Contains(log, `"smtp_username":"herald"`) {
		t.Fatalf("the start-up log does not show the SMTP settings, STARTTLS by default:\n%s", log)
	}
	for _, secret := range []string{env["HERALD_SMTP_PASSWORD"], env["HERALD_SMTP_VERP_SECRET"]} {
		if strings.Contains(log, secret) || strings.Contains(err.Error(), secret) {
			t.Errorf("a secret is in the log or the error:\n%s\n%v", log, err)
		}
	}
}
