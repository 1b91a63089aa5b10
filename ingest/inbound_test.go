package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/smtp"
	"strings"
	"testing"
	"time"

	"herald/devtools/testenv"
	"herald/ingest/internal/store"
	"herald/shared/event"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// dsn is a receiving MTA's hard bounce of the message to rcpt (RFC 3464).
func dsn(id, rcpt string) string {
	return strings.ReplaceAll(`From: Mail Delivery System <MAILER-DAEMON@mx1.example.net>
To: <>
Subject: Undelivered Mail Returned to Sender
Message-ID: <`+id+`>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain

The mail system could not deliver your message.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx1.example.net

Final-Recipient: rfc822; `+rcpt+`
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 no such user

--b1--
`, "\n", "\r\n")
}

// TestInboundBounceReachesTheLedger: a DSN sent over SMTP to a delivery's
// VERP return path marks that delivery bounced and suppresses its address;
// the same DSN to a return path signed with another secret changes nothing.
func TestInboundBounceReachesTheLedger(t *testing.T) {
	db := testenv.DB(t)
	ctx := context.Background()
	st := store.New(db)
	rp := event.ReturnPath{Domain: "bounces.acme.test", Secret: []byte("0123456789abcdef-ingest-verp")}

	now := time.Now().UTC().Truncate(time.Microsecond)
	job := event.NewJobID()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`SELECT herald_ensure_deliveries_partition($1)`, now)
	exec(`INSERT INTO jobs (tenant_id, id, idempotency_key, request_sha256, channel, template_id, template_version,
		audience, products_per_message, submitted_at, deadline)
		VALUES ('acme', $1, $2, '', 'email', 't', 1, '{}', 6, $3, $4)`, job.UUID(), job.String(), now, now.Add(time.Hour))
	keys := map[string]event.DeliveryKey{}
	for i, c := range []string{"ada", "bob"} {
		k := event.DeliveryKey{Tenant: "acme", Job: job.String(), Channel: event.ChannelEmail, Customer: c}
		keys[c] = k
		exec(`INSERT INTO deliveries (tenant_id, job_id, channel, customer_id, job_submitted_at, batch_seq, state, email, message_id)
			VALUES ('acme', $1, 'email', $2, $3, $4, 'sent', $5, $6)`, job.UUID(), c, now, i, c+"@example.net", k.MessageID("mail.acme.test"))
	}

	in, err := newInbound(rp, st, 3, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- in.Run(l)(runCtx, ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-stopped; err != nil {
			t.Errorf("inbound run: %v", err)
		}
	})

	send := func(rcpt, body string) {
		t.Helper()
		c, err := smtp.Dial(l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, step := range []func() error{func() error { return c.Mail("") }, func() error { return c.Rcpt(rcpt) }} {
			if err := step(); err != nil {
				t.Fatalf("send to %s: %v", rcpt, err)
			}
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("send to %s: %v", rcpt, err)
		}
		if err := c.Quit(); err != nil {
			t.Fatal(err)
		}
	}
	state := func(customer string) string {
		t.Helper()
		var feedback, suppressed string
		err := db.QueryRow(ctx, `SELECT d.feedback, coalesce(s.reason, '') FROM deliveries d
			LEFT JOIN suppressions s ON s.tenant_id = d.tenant_id AND s.email = lower(d.email)
			WHERE d.tenant_id = 'acme' AND d.job_id = $1 AND d.customer_id = $2`, job.UUID(), customer).Scan(&feedback, &suppressed)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("feedback %q, suppressed %q", feedback, suppressed)
	}

	forged := event.ReturnPath{Domain: rp.Domain, Secret: []byte("another secret, 16+ bytes")}.Address(keys["bob"])
	send(forged, dsn("forged-1@mx1.example.net", "bob@example.net"))
	if got, want := state("bob"), `feedback "", suppressed ""`; got != want {
		t.Errorf("after a bounce to a forged return path: bob has %s, want %s", got, want)
	}

	send(rp.Address(keys["ada"]), dsn("bounce-1@mx1.example.net", "ada@example.net"))
	if got, want := state("ada"), `feedback "bounced", suppressed "bounce"`; got != want {
		t.Errorf("after a bounce to ada's return path: ada has %s, want %s", got, want)
	}
	if got, want := state("bob"), `feedback "", suppressed ""`; got != want {
		t.Errorf("after a bounce to ada's return path: bob has %s, want %s", got, want)
	}
}

func TestInboundReturnPath(t *testing.T) {
	secret := "0123456789abcdef-ingest-verp"
	files := map[string][]byte{"/run/verp": []byte(secret + "\n")}
	readFile := func(name string) ([]byte, error) {
		if b, ok := files[name]; ok {
			return b, nil
		}
		return nil, fmt.Errorf("open %s: no such file", name)
	}
	tests := []struct {
		name    string
		s       inboundSettings
		want    *event.ReturnPath
		wantErr string
	}{
		{"off", inboundSettings{}, nil, ""},
		{"on", inboundSettings{Addr: ":2525", ReturnDomain: "bounces.acme.test", VERPSecret: secret},
			&event.ReturnPath{Domain: "bounces.acme.test", Secret: []byte(secret)}, ""},
		{"secret from a file", inboundSettings{Addr: ":2525", ReturnDomain: "bounces.acme.test", VERPSecretFile: "/run/verp"},
			&event.ReturnPath{Domain: "bounces.acme.test", Secret: []byte(secret)}, ""},
		{"no secret", inboundSettings{Addr: ":2525", ReturnDomain: "bounces.acme.test"}, nil, "needs -smtp-return-domain and -smtp-verp-secret"},
		{"no domain", inboundSettings{Addr: ":2525", VERPSecret: secret}, nil, "needs -smtp-return-domain"},
		{"short secret", inboundSettings{Addr: ":2525", ReturnDomain: "bounces.acme.test", VERPSecret: "short"}, nil, "16 bytes"},
		{"secret twice", inboundSettings{Addr: ":2525", ReturnDomain: "bounces.acme.test", VERPSecret: secret, VERPSecretFile: "/run/verp"}, nil, "not both"},
		{"missing file", inboundSettings{Addr: ":2525", ReturnDomain: "bounces.acme.test", VERPSecretFile: "/run/none"}, nil, "-smtp-verp-secret-file"},
		{"domain without a receiver", inboundSettings{ReturnDomain: "bounces.acme.test", VERPSecret: secret}, nil, "need -feedback-smtp-addr"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := inboundReturnPath(tc.s, readFile)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got == nil) != (tc.want == nil) || got != nil && (got.Domain != tc.want.Domain || string(got.Secret) != string(tc.want.Secret)) {
				t.Errorf("return path %+v, want %+v", got, tc.want)
			}
		})
	}
}
