package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/deploy/stack"
	"herald/devtools/espcatch"
	"herald/shared/unsubscribe"
)

// espReport checks what the HTTP ESP holds: one message per recipient.
func espReport(t *testing.T, name string, st *stack.Stack, want map[string]stack.Customer, job stack.Job) espcatch.Stats {
	t.Helper()
	stats := st.ESP.Stats()
	to := map[string]int{}
	for _, m := range st.ESP.Messages() {
		to[m.To]++
	}
	dup := 0
	for _, n := range to {
		if n > 1 {
			dup += n - 1
		}
	}
	lost := 0
	for email := range want {
		if to[email] == 0 {
			lost++
		}
	}
	t.Logf("%s: messages %d, faulted requests %d, repeats the ESP dropped by key %d, lost %d, duplicated %d, ambiguous %d",
		name, stats.Messages, stats.Faulted, stats.Duplicates, lost, dup, job.Counts.Ambiguous)
	if lost != 0 || dup != 0 || stats.Messages != int64(len(want)) || len(to) != len(want) {
		t.Fatalf("%s: want exactly %d messages, one per recipient", name, len(want))
	}
	return stats
}

// TestESPErrorsAreRetriedWithTheSameKey has the HTTP ESP fail 30% of calls
// with 503, and drop the connection after accepting on some more: every
// recipient gets exactly one message, because every retry carries the
// ledger key as the idempotency key.
func TestESPErrorsAreRetriedWithTheSameKey(t *testing.T) {
	st := startStack(t, stack.Options{ESP: true, EmailProviders: "esp", Flags: map[string][]string{"ingest": {"-stall-after=10s"}}})
	var n atomic.Int64
	st.ESP.SetFault(func(espcatch.Request) espcatch.Fault {
		switch k := n.Add(1); {
		case k%10 < 3:
			return espcatch.Fault{Status: http.StatusServiceUnavailable}
		case k%10 == 5:
			return espcatch.Fault{DropAfterAccept: true}
		}
		return espcatch.Fault{}
	})
	tn := stack.DemoTenant{ID: "acme", Customers: 3000, Items: 100, Seed: 31}
	job := loadAndRun(t, st, tn, "esp-faults")
	want, _ := expected(tn)
	stats := espReport(t, "ESP 5xx on 30% of calls, dropped answers on 10%", st, want, job)
	if stats.Faulted == 0 || stats.Duplicates == 0 {
		t.Fatalf("no faults (%d) or no repeated keys (%d): the test did not exercise retries", stats.Faulted, stats.Duplicates)
	}
}

// TestESPThrottlingSlowsTheLimiter has the ESP answer 429 with Retry-After
// to a fifth of the calls: the account's shared rate is cut, and every
// recipient still gets exactly one message.
func TestESPThrottlingSlowsTheLimiter(t *testing.T) {
	t.Parallel() // mostly waiting: on rates, retries or the clock
	st := startStack(t, stack.Options{ESP: true, EmailProviders: "esp", Flags: map[string][]string{
		"dispatch": {"-provider-rate=4000", "-rate-cooldown=1m"},
		"ingest":   {"-stall-after=10s"},
	}})
	var n atomic.Int64
	st.ESP.SetFault(func(espcatch.Request) espcatch.Fault {
		if n.Add(1)%5 == 0 {
			return espcatch.Fault{Status: http.StatusTooManyRequests, RetryAfter: time.Second}
		}
		return espcatch.Fault{}
	})
	tn := stack.DemoTenant{ID: "acme", Customers: 3000, Items: 100, Seed: 37}
	job := loadAndRun(t, st, tn, "esp-429")
	want, _ := expected(tn)
	espReport(t, "ESP 429 on 20% of calls", st, want, job)
	rate, ceiling := bucket(t, st, "account:esp:%")
	t.Logf("the ESP account's shared rate: %.0f/s of %.0f/s", rate, ceiling)
	if rate >= ceiling {
		t.Fatalf("429s did not cut the account's rate (%.0f of %.0f)", rate, ceiling)
	}
}

// bucket reads a rate bucket's current rate and ceiling.
func bucket(t *testing.T, st *stack.Stack, like string) (rate, ceiling float64) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, st.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SELECT rate, max_rate FROM rate_buckets WHERE name LIKE $1`, like).Scan(&rate, &ceiling); err != nil {
		t.Fatalf("rate bucket %s: %v", like, err)
	}
	return rate, ceiling
}

// TestFailoverToTheFallbackProvider makes the SMTP relay unreachable: its
// breaker opens and the HTTP ESP, second in line, delivers everything.
func TestFailoverToTheFallbackProvider(t *testing.T) {
	st := startStack(t, stack.Options{ESP: true, EmailProviders: "smtp,esp", Flags: map[string][]string{
		"dispatch": {"-smtp-addr=127.0.0.1:1", "-breaker-failures=3", "-breaker-cooloff=10m"},
		"ingest":   {"-stall-after=10s"},
	}})
	tn := stack.DemoTenant{ID: "acme", Customers: 2000, Items: 100, Seed: 41}
	job := loadAndRun(t, st, tn, "failover")
	want, _ := expected(tn)
	espReport(t, "SMTP relay down, ESP as fallback", st, want, job)
	if n := st.Mail.Stats().Messages; n != 0 {
		t.Fatalf("the unreachable relay got %d messages", n)
	}
}

// TestTenantChoosesItsProviders runs two tenants on one dispatch whose
// configured order is SMTP, then the ESP: the tenant that names the ESP as
// its email provider is sent through the ESP only, the other through SMTP.
func TestTenantChoosesItsProviders(t *testing.T) {
	st := startStack(t, stack.Options{ESP: true, EmailProviders: "smtp,esp"})
	sql(t, st, `INSERT INTO tenants (id, providers) VALUES ('acme', '{"email": ["esp", "smtp"]}')
		ON CONFLICT (id) DO UPDATE SET providers = EXCLUDED.providers`)
	acme := stack.DemoTenant{ID: "acme", Customers: 800, Items: 100, Seed: 43}
	globex := stack.DemoTenant{ID: "globex", Customers: 600, Items: 100, Seed: 47}
	acmeJob := loadAndRun(t, st, acme, "acme-esp")
	globexJob := loadAndRun(t, st, globex, "globex-smtp")
	want, _ := expected(acme)
	espReport(t, "tenant acme, ESP first", st, want, acmeJob)
	want, _ = expected(globex)
	faultReport(t, "tenant globex, dispatch's order", len(want), st.Mail.Stats(), 0, globexJob)
	for _, m := range st.Mail.Messages() {
		for _, to := range m.To {
			if want[to].Email != to {
				t.Fatalf("SMTP got mail for %s, who is not globex's", to)
			}
		}
	}
}

// TestOnsiteMessagesReachThePartnersSite runs an onsite job and reads a
// customer's messages through the partner API.
func TestOnsiteMessagesReachThePartnersSite(t *testing.T) {
	st := startStack(t, stack.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tn := stack.DemoTenant{ID: "acme", Customers: 500, Items: 60, Seed: 43}
	client := partnerClient(t, st, tn.ID)
	if err := tn.Load(ctx, client); err != nil {
		t.Fatal(err)
	}
	req := blackFriday()
	req["channel"] = "onsite"
	job, err := client.SubmitJob(ctx, "onsite", req)
	if err != nil {
		t.Fatal(err)
	}
	if job, err = client.WaitJob(ctx, job.ID, 100*time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	want, _ := expected(tn)
	if job.Counts.Sent != int64(len(want)) {
		t.Fatalf("onsite job %+v; want %d sent", job.Counts, len(want))
	}
	if st.Mail.Stats().Messages != 0 {
		t.Fatal("an onsite job sent email")
	}
	var someone stack.Customer
	for i := range tn.Customers {
		if c := tn.Customer(i); want[c.Email].ID != "" {
			someone = c
			break
		}
	}
	type inbox struct {
		Messages []struct {
			JobID   string         `json:"job_id"`
			Payload map[string]any `json:"payload"`
			Seen    bool           `json:"seen"`
		} `json:"messages"`
	}
	var first, second inbox
	if _, err := client.Do(ctx, http.MethodGet, "/v1/onsite/"+url.PathEscape(someone.ID), "", nil, nil, &first); err != nil {
		t.Fatal(err)
	}
	if len(first.Messages) != 1 || first.Messages[0].JobID != job.ID || first.Messages[0].Seen || len(first.Messages[0].Payload) == 0 {
		t.Fatalf("first read of %s's inbox: %+v", someone.ID, first)
	}
	if _, err := client.Do(ctx, http.MethodGet, "/v1/onsite/"+url.PathEscape(someone.ID), "", nil, nil, &second); err != nil {
		t.Fatal(err)
	}
	if len(second.Messages) != 1 || !second.Messages[0].Seen {
		t.Fatalf("second read should show the message seen: %+v", second)
	}
	// Another tenant cannot read it.
	other := partnerClient(t, st, "globex")
	if _, err := other.Do(ctx, http.MethodGet, "/v1/onsite/"+url.PathEscape(someone.ID), "", nil, nil, nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("another tenant read the inbox: %v", err)
	}
}

// TestAdAudienceFollowsSuppressions syncs an ad job's audience to a local
// Meta Marketing API (hashed addresses only), then suppresses a few people
// and runs the campaign again: they are removed from the audience.
func TestAdAudienceFollowsSuppressions(t *testing.T) {
	st := startStack(t, stack.Options{Ads: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tn := stack.DemoTenant{ID: "acme", Customers: 800, Items: 60, Seed: 47}
	client := partnerClient(t, st, tn.ID)
	if err := tn.Load(ctx, client); err != nil {
		t.Fatal(err)
	}
	run := func(key string) stack.Job {
		req := blackFriday()
		req["channel"] = "ad"
		job, err := client.SubmitJob(ctx, key, req)
		if err != nil {
			t.Fatal(err)
		}
		if job, err = client.WaitJob(ctx, job.ID, 100*time.Millisecond, nil); err != nil {
			t.Fatal(err)
		}
		return job
	}
	hash := func(email string) string {
		sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(email))))
		return hex.EncodeToString(sum[:])
	}
	audience := "herald-acme-bf-test"
	want, _ := expected(tn)
	first := run("ads-1")
	members := st.Ads.Members(audience)
	if first.Counts.Sent != int64(len(want)) || len(members) != len(want) {
		t.Fatalf("first sync: job %+v, %d members; want %d", first.Counts, len(members), len(want))
	}
	var emails []string
	for email := range want {
		emails = append(emails, email)
	}
	sort.Strings(emails)
	for _, email := range emails {
		if !slices.Contains(members, hash(email)) {
			t.Fatalf("%s is not in the audience (as its SHA-256)", email)
		}
		if slices.Contains(members, email) {
			t.Fatal("a plain address reached the ad platform")
		}
	}
	gone := emails[:5]
	var lines strings.Builder
	for _, email := range gone {
		lines.WriteString(`{"email":"` + email + `","reason":"asked to be forgotten"}` + "\n")
	}
	if err := client.Upload(ctx, "/v1/suppressions", strings.NewReader(lines.String())); err != nil {
		t.Fatal(err)
	}
	second := run("ads-2")
	members = st.Ads.Members(audience)
	if second.Counts.Suppressed < 5 || len(members) != len(want)-5 {
		t.Fatalf("second sync: job %+v, %d members; want 5 more suppressed and %d members", second.Counts, len(members), len(want)-5)
	}
	for _, email := range gone {
		if slices.Contains(members, hash(email)) {
			t.Fatalf("suppressed %s is still in the audience", email)
		}
	}
	// Both jobs of the campaign filled one customer-file audience, made once.
	if got := st.Ads.Audiences(); len(got) != 1 || got[0].Name != audience || got[0].Subtype != "CUSTOM" || got[0].CustomerFileSource != "USER_PROVIDED_ONLY" {
		t.Fatalf("audiences at the platform: %+v", got)
	}
}

// TestUnsubscribesDuringAJobStopSendsAtOnce unsubscribes 400 recipients
// while their job runs: after each unsubscribe returns, nothing more
// reaches that address.
func TestUnsubscribesDuringAJobStopSendsAtOnce(t *testing.T) {
	t.Parallel() // mostly waiting: on rates, retries or the clock
	st := startStack(t, stack.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	tn := stack.DemoTenant{ID: "acme", Customers: 12_000, Items: 100, Seed: 53}
	client := partnerClient(t, st, tn.ID)
	if err := tn.Load(ctx, client); err != nil {
		t.Fatal(err)
	}
	// A slow tenant keeps the job running for about half a minute.
	sql(t, st, `UPDATE tenants SET send_rate = 400 WHERE id = 'acme'`)
	want, _ := expected(tn)
	// Every 29th recipient, spread over the whole job.
	var victims []stack.Customer
	for i := 0; i < tn.Customers && len(victims) < 400; i += 29 {
		if c := tn.Customer(i); want[c.Email].ID != "" {
			victims = append(victims, c)
		}
	}
	signer, err := unsubscribe.NewSigner([]byte(stack.UnsubscribeSecret))
	if err != nil {
		t.Fatal(err)
	}
	job, err := client.SubmitJob(ctx, "unsubscribes", blackFriday())
	if err != nil {
		t.Fatal(err)
	}
	for {
		j, err := client.GetJob(ctx, job.ID)
		if err != nil {
			t.Fatal(err)
		}
		if j.Counts.Sent > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Unsubscribe them all, sixteen at a time, while the job runs, noting
	// when each returned.
	returned := make(map[string]time.Time, len(victims))
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan stack.Customer)
	hc := checkedHTTP(t, st)
	hc.Timeout = time.Minute
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				tok := signer.Sign(unsubscribe.Claim{Tenant: tn.ID, Customer: c.ID, Email: c.Email, Job: job.ID})
				resp, err := hc.Post(st.IngestURL+"/u/"+tok, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
				if err != nil {
					t.Error(err)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("unsubscribe %s: %s", c.Email, resp.Status)
					continue
				}
				mu.Lock()
				returned[c.Email] = time.Now()
				mu.Unlock()
			}
		}()
	}
	for _, c := range victims {
		work <- c
	}
	close(work)
	wg.Wait()
	if job, err = client.WaitJob(ctx, job.ID, 100*time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	late, before := 0, 0
	for _, m := range st.Mail.Messages() {
		if at, ok := returned[m.To[0]]; ok {
			if m.Received.After(at) {
				late++
			} else {
				before++
			}
		}
	}
	stats := st.Mail.Stats()
	t.Logf("%d unsubscribes during the job: %d of those recipients were sent to before their unsubscribe returned, %d after; job %+v; SMTP messages %d, duplicated %d",
		len(victims), before, late, job.Counts, stats.Messages, stats.DuplicateRecipients)
	if late != 0 {
		t.Fatalf("%d messages reached an address after its unsubscribe had returned", late)
	}
	if job.Counts.Suppressed < int64(len(victims)-before) || stats.DuplicateRecipients != 0 {
		t.Fatalf("job %+v: want at least %d suppressed and no duplicates", job.Counts, len(victims)-before)
	}
	if before > len(victims)/2 {
		t.Fatalf("%d of %d unsubscribes came after the send: the test raced nothing", before, len(victims))
	}
}
