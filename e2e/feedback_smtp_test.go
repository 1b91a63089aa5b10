package e2e

import (
	"context"
	"net/smtp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/deploy/stack"
)

// TestBounceToAReturnPathSuppressesTheAddress follows an asynchronous
// bounce end to end: dispatch sends each message from its own VERP return
// path through the relay; a receiving MTA's DSN for one of them, sent to
// that return path at ingest's SMTP receiver, marks that one delivery
// bounced and suppresses its address, and the next job skips it. A DSN to
// a forged return path changes nothing.
func TestBounceToAReturnPathSuppressesTheAddress(t *testing.T) {
	st := startStack(t, stack.Options{Maildir: t.TempDir()})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	client := partnerClient(t, st, "acme")
	tn := stack.DemoTenant{ID: "acme", Customers: 60, Items: 30, Seed: 11}
	if err := tn.Load(ctx, client); err != nil {
		t.Fatal(err)
	}
	first, err := client.SubmitJob(ctx, "verp-1", blackFriday())
	if err != nil {
		t.Fatal(err)
	}
	if first, err = client.WaitJob(ctx, first.ID, 100*time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	msgs := st.Mail.Messages()
	if len(msgs) < 2 {
		t.Fatalf("the first job delivered %d messages, want at least 2", len(msgs))
	}
	bounced, other := msgs[0], msgs[1]
	forged := "bounce+" + strings.Repeat("a", 42) + "@" + stack.ReturnDomain

	for _, b := range []struct{ returnPath, rcpt, id string }{
		{forged, other.To[0], "forged-1@mx.example.net"},
		{bounced.From, bounced.To[0], "bounce-1@mx.example.net"},
	} {
		if err := smtp.SendMail(st.FeedbackSMTPAddr, nil, "", []string{b.returnPath}, []byte(hardBounce(b.id, b.rcpt))); err != nil {
			t.Fatalf("send the DSN to %s: %v", b.returnPath, err)
		}
	}

	conn, err := pgx.Connect(ctx, st.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	ledger := func(email string) (feedback, suppressed string) {
		t.Helper()
		err := conn.QueryRow(ctx, `SELECT d.feedback, coalesce(s.reason, '') FROM deliveries d
			LEFT JOIN suppressions s ON s.tenant_id = d.tenant_id AND s.email = lower(d.email)
			WHERE d.tenant_id = 'acme' AND d.job_id = $1 AND lower(d.email) = lower($2)`, first.ID, email).Scan(&feedback, &suppressed)
		if err != nil {
			t.Fatal(err)
		}
		return feedback, suppressed
	}
	if f, s := ledger(bounced.To[0]); f != "bounced" || s != "bounce" {
		t.Errorf("the bounced delivery has feedback %q and suppression %q, want bounced and bounce", f, s)
	}
	if f, s := ledger(other.To[0]); f != "" || s != "" {
		t.Errorf("after a DSN to a forged return path, the other delivery has feedback %q and suppression %q, want none", f, s)
	}

	second, err := client.SubmitJob(ctx, "verp-2", blackFriday())
	if err != nil {
		t.Fatal(err)
	}
	if second, err = client.WaitJob(ctx, second.ID, 100*time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	if second.Counts.Suppressed != first.Counts.Suppressed+1 {
		t.Errorf("second job: %d suppressed, want the first's %d and the bounced address", second.Counts.Suppressed, first.Counts.Suppressed)
	}
	sent := 0
	for _, m := range st.Mail.Messages()[len(msgs):] {
		if strings.EqualFold(m.To[0], bounced.To[0]) {
			t.Errorf("the second job mailed the bounced address %s", m.To[0])
		}
		sent++
	}
	if sent != len(msgs)-1 {
		t.Errorf("the second job sent %d messages, want %d: all but the bounced address", sent, len(msgs)-1)
	}
}

// hardBounce is a receiving MTA's RFC 3464 report that rcpt does not exist.
func hardBounce(id, rcpt string) string {
	return strings.ReplaceAll(`From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
Subject: Undelivered Mail Returned to Sender
Message-ID: <`+id+`>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain

The mail system could not deliver your message.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; `+rcpt+`
Action: failed
Status: 5.1.1

--b1--
`, "\n", "\r\n")
}
