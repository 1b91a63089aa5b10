package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"herald/devtools/sendgridcatch"
	"herald/devtools/sescatch"
	"herald/dispatch/internal/provider"
)

func TestValidateNamesWhatSESAndSendGridNeed(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string // each a part of the error
	}{
		{"ses without anything", []string{"-email-providers=ses"},
			[]string{"-ses-region (HERALD_SES_REGION) is required", "-ses-access-key-id or -ses-access-key-id-file is required", "-ses-secret-access-key or -ses-secret-access-key-file is required"}},
		{"ses secret twice", []string{"-email-providers=ses", "-ses-region=eu-west-1", "-ses-access-key-id=AKIA", "-ses-secret-access-key=s3cr3t-value", "-ses-secret-access-key-file=/run/secret"},
			[]string{"give -ses-secret-access-key or -ses-secret-access-key-file, not both"}},
		{"sendgrid without a key", []string{"-email-providers=sendgrid"}, []string{"-sendgrid-key or -sendgrid-key-file is required"}},
		{"unknown provider", []string{"-email-providers=mailgun"}, []string{`unknown provider "mailgun" (want smtp, ses, sendgrid or esp)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// run validates before it connects to anything.
			err := run(context.Background(), tt.args, func(string) string { return "" }, io.Discard)
			if err == nil {
				t.Fatal("run accepted the configuration")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cr3t-value") {
				t.Errorf("error %q shows the secret", err)
			}
		})
	}
}

// TestProvidersReadSecretsFromFiles builds each provider as run does, with
// its secrets in files (as a mounted Secret gives them, with a line end),
// and sends through it to the provider's local endpoint.
func TestProvidersReadSecretsFromFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ses, err := sescatch.Start(t.Context(), sescatch.Options{Region: "eu-west-1", AccessKeyID: "AKIAFILE", SecretAccessKey: "secret-from-file"})
	if err != nil {
		t.Fatal(err)
	}
	defer ses.Close()
	sg, err := sendgridcatch.Start(t.Context(), sendgridcatch.Options{APIKey: "SG.from-file"})
	if err != nil {
		t.Fatal(err)
	}
	defer sg.Close()

	var cfg settings
	cfg.SES.Region, cfg.SES.Endpoint = "eu-west-1", ses.URL()
	cfg.SESKeyIDFile, cfg.SESSecretFile = write("key-id", "AKIAFILE"), write("secret", "secret-from-file")
	cfg.SendGrid.BaseURL, cfg.SendGridFile = sg.URL(), write("sendgrid", "SG.from-file")
	if err := validate(withDefaults(cfg, "ses,sendgrid")); err != nil {
		t.Fatal(err)
	}
	msg := &provider.Message{Key: "acme/0b7c6d2e-9f3a-4c1b-8e5d-2a6f7b8c9d0e/email/ann", MessageID: "x@herald.test", From: "news@shop.example", To: "ann@example.com",
		Tenant: "acme", JobID: "0b7c6d2e-9f3a-4c1b-8e5d-2a6f7b8c9d0e", CustomerID: "ann",
		Body: []byte("From: news@shop.example\r\nTo: ann@example.com\r\nSubject: hi\r\n\r\nhello\r\n")}
	for name, build := range map[string]func(settings, func(string) ([]byte, error)) (provider.Sender, error){"ses": newSES, "sendgrid": newSendGrid} {
		s, err := build(cfg, os.ReadFile)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if res := s.Send(t.Context(), []*provider.Message{msg})[0]; res.Outcome != provider.Sent {
			t.Errorf("%s: result %+v, want sent", name, res)
		}
	}
	if len(ses.Messages()) != 1 || len(sg.Messages()) != 1 {
		t.Errorf("SES has %d messages, SendGrid %d; want one each", len(ses.Messages()), len(sg.Messages()))
	}

	cfg.SESSecretFile = filepath.Join(dir, "missing")
	if _, err := newSES(cfg, os.ReadFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing secret file: %v, want not exist", err)
	}
	cfg.SendGridFile = write("empty", "")
	if _, err := newSendGrid(cfg, os.ReadFile); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("an empty key file: %v, want an error saying so", err)
	}
}

// withDefaults fills what validate checks besides the providers.
func withDefaults(cfg settings, providers string) settings {
	cfg.EmailProviders = providers
	cfg.Receive.Streams, cfg.Receive.MaxInFlight, cfg.DBMaxConns = 1, 1, 10
	cfg.SMTP.Conns, cfg.SMTP.Timeout = 1, 1
	cfg.Breaker.Failures, cfg.Breaker.Cooloff = 1, 1
	cfg.Deliver.MaxWait, cfg.RateCooldown, cfg.Deliver.TenantTTL, cfg.Deliver.Chunk = 1, 1, 1, 1
	return cfg
}
