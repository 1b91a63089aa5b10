package e2e

import (
	"bytes"
	"context"
	"net/http"
	"net/mail"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/deploy/stack"
)

// TestOneClickUnsubscribeStopsLaterSends follows a recipient's RFC 8058
// one-click unsubscribe from a delivered message: the List-Unsubscribe URL
// it carries, POSTed without any partner token through the edge, stops
// every later send to that address for that tenant.
func TestOneClickUnsubscribeStopsLaterSends(t *testing.T) {
	st := startStack(t, stack.Options{Maildir: t.TempDir()})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	client := partnerClient(t, st, "acme")
	tn := stack.DemoTenant{ID: "acme", Customers: 200, Items: 40, Seed: 31}
	if err := tn.Load(ctx, client); err != nil {
		t.Fatal(err)
	}
	first, err := client.SubmitJob(ctx, "unsub-1", blackFriday())
	if err != nil {
		t.Fatal(err)
	}
	if first, err = client.WaitJob(ctx, first.ID, 100*time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	msgs := st.Mail.Messages()
	if len(msgs) == 0 {
		t.Fatal("the first job delivered nothing")
	}
	victim := msgs[len(msgs)/2]
	addr := victim.To[0]
	raw, err := os.ReadFile(victim.Path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get("List-Unsubscribe-Post"); got != "List-Unsubscribe=One-Click" {
		t.Fatalf("List-Unsubscribe-Post is %q", got)
	}
	link := strings.Trim(m.Header.Get("List-Unsubscribe"), "<>")
	if !strings.HasPrefix(link, st.IngestURL+"/u/") {
		t.Fatalf("List-Unsubscribe %q does not point at the edge's /u/", link)
	}
	// A mail client's one-click POST: form body, no token, no cookies.
	hc := checkedHTTP(t, st)
	for range 2 {
		resp, err := hc.Post(link, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 0 {
			t.Fatalf("one-click POST: %d, cookies %v", resp.StatusCode, resp.Cookies())
		}
	}

	second, err := client.SubmitJob(ctx, "unsub-2", blackFriday())
	if err != nil {
		t.Fatal(err)
	}
	if second, err = client.WaitJob(ctx, second.ID, 100*time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, msg := range st.Mail.Messages() {
		if strings.EqualFold(msg.To[0], addr) {
			got++
		}
	}
	if got != 1 {
		t.Fatalf("%s got %d messages in all, want only the first job's", addr, got)
	}
	if second.Counts.Sent != first.Counts.Sent-1 || second.Counts.Suppressed != first.Counts.Suppressed+1 {
		t.Fatalf("second job: sent %d suppressed %d; first: sent %d suppressed %d", second.Counts.Sent, second.Counts.Suppressed,
			first.Counts.Sent, first.Counts.Suppressed)
	}
	conn, err := pgx.Connect(ctx, st.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var state, reason string
	if err := conn.QueryRow(ctx, `SELECT state, reason FROM deliveries WHERE job_id = $1 AND lower(email) = lower($2)`, second.ID, addr).Scan(&state, &reason); err != nil {
		t.Fatal(err)
	}
	if state != "suppressed" || reason != "unsubscribed" {
		t.Fatalf("the unsubscribed address's ledger row in the second job: %s (%s)", state, reason)
	}
}
