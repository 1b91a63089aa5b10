// Package e2e runs Herald end to end: the four services as processes on a
// real PostgreSQL, the Pub/Sub emulator and an SMTP server, driven through
// the partner API, and checks what arrives at the SMTP server.
package e2e

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/deploy/stack"
	"herald/devtools/openapicheck"
	"herald/devtools/testenv"
)

// binDir holds the services, built once for the whole package.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "herald-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	err = stack.Build(ctx, "", dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	defer os.RemoveAll(dir)
	testenv.Main(m)
}

// startStack starts Herald for one test on the shared servers, with its
// own database and Pub/Sub project; opts.PubsubHost names a Pub/Sub server
// of the test's own instead.
func startStack(t *testing.T, opts stack.Options) *stack.Stack {
	t.Helper()
	opts.BinDir = binDir
	opts.DatabaseURL = testenv.DatabaseURL(t)
	if opts.PubsubHost == "" {
		ps := testenv.Pubsub(t)
		opts.PubsubHost, opts.Project = ps.EmulatorHost, ps.Project
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	st, err := stack.Start(ctx, opts)
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, s := range stack.Services {
				if p := st.Proc(s); p != nil {
					b, _ := os.ReadFile(p.Log)
					if len(b) > 6000 {
						b = b[len(b)-6000:]
					}
					t.Logf("%s log tail:\n%s", s, b)
				}
			}
		}
		if err := st.Stop(); err != nil {
			t.Errorf("stop stack: %v", err)
		}
	})
	return st
}

// partnerClient returns a client of the partner API as tenant, through the
// edge, that holds every request and answer to the OpenAPI document. An
// operator creates the tenant first unless it exists.
func partnerClient(t *testing.T, st *stack.Stack, tenant string) *stack.Client {
	t.Helper()
	hc := checkedHTTP(t, st)
	ensureTenant(t, st, hc, tenant)
	return &stack.Client{BaseURL: st.IngestURL, Tenant: tenant, HTTP: hc}
}

// opsClient returns a client of the operator API, through the edge, held
// to the OpenAPI document.
func opsClient(t *testing.T, st *stack.Stack, hc *http.Client) *stack.Client {
	t.Helper()
	if hc == nil {
		hc = checkedHTTP(t, st)
	}
	ops, err := stack.OpsClient(st.IngestURL, hc)
	if err != nil {
		t.Fatal(err)
	}
	return ops
}

// ensureTenant creates tenant through the operator API, as an operator
// would, unless it exists.
func ensureTenant(t *testing.T, st *stack.Stack, hc *http.Client, tenant string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := opsClient(t, st, hc).EnsureTenant(ctx, tenant); err != nil {
		t.Fatal(err)
	}
}

// checkedHTTP returns an HTTP client for the edge whose every exchange
// must be one the OpenAPI document allows: the document ingest serves,
// so that one is what the test holds the API to.
func checkedHTTP(t *testing.T, st *stack.Stack) *http.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var doc json.RawMessage
	reader := &stack.Client{BaseURL: st.IngestURL, Tenant: "openapi-reader"}
	if _, err := reader.Do(ctx, http.MethodGet, "/v1/openapi.json", "", nil, nil, &doc); err != nil {
		t.Fatalf("read the OpenAPI document: %v", err)
	}
	c, err := openapicheck.New(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 10 * time.Minute, Transport: c.Transport(t, nil)}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func blackFriday() map[string]any {
	return map[string]any{
		"channel":  "email",
		"template": map[string]any{"id": "black-friday"},
		"audience": map[string]any{"all_subscribed": true},
		"products": 6,
		"campaign": "bf-test",
	}
}

// expected lists who must get mail: subscribed customers not suppressed.
func expected(tn stack.DemoTenant) (deliver map[string]stack.Customer, suppressed int) {
	deliver = map[string]stack.Customer{}
	for i := range tn.Customers {
		c := tn.Customer(i)
		switch {
		case !c.Subscribed:
		case tn.Suppressed(i):
			suppressed++
		default:
			deliver[c.Email] = c
		}
	}
	return deliver, suppressed
}

func TestJobDeliversPersonalizedEmailToEveryRecipient(t *testing.T) {
	maildir := t.TempDir()
	st := startStack(t, stack.Options{Maildir: maildir})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	client := partnerClient(t, st, "acme")
	tn := stack.DemoTenant{ID: "acme", Customers: 1500, Items: 120, Seed: 7}
	if err := tn.Load(ctx, client); err != nil {
		t.Fatal(err)
	}
	job, err := client.SubmitJob(ctx, "job-1", blackFriday())
	if err != nil {
		t.Fatal(err)
	}
	job, err = client.WaitJob(ctx, job.ID, 100*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, suppressed := expected(tn)
	if job.Counts.Sent != int64(len(want)) || job.Counts.Suppressed != int64(suppressed) || job.Planned != int64(len(want)+suppressed) {
		t.Fatalf("job counts: planned %d, sent %d, suppressed %d; want planned %d, sent %d, suppressed %d",
			job.Planned, job.Counts.Sent, job.Counts.Suppressed, len(want)+suppressed, len(want), suppressed)
	}
	if job.Counts.Failed+job.Counts.Ambiguous+job.Counts.Expired != 0 {
		t.Fatalf("job has failed/ambiguous/expired recipients: %+v", job.Counts)
	}
	msgs := st.Mail.Messages()
	if len(msgs) != len(want) {
		t.Fatalf("SMTP server got %d messages, want %d", len(msgs), len(want))
	}
	byEmail := map[string]int{}
	for i := range tn.Customers {
		byEmail[tn.Customer(i).Email] = i
	}
	best := bestSellers(tn)
	// The relay requires STARTTLS and AUTH; every message went from its
	// own VERP return path.
	if st := st.Mail.Stats(); st.RefusedMail != 0 || st.AuthFailures != 0 {
		t.Fatalf("the relay refused %d MAIL commands and %d logins", st.RefusedMail, st.AuthFailures)
	}
	returnPaths := map[string]bool{}
	for _, m := range msgs {
		if !strings.HasPrefix(m.From, "bounce+") || !strings.HasSuffix(m.From, "@"+stack.ReturnDomain) || returnPaths[m.From] {
			t.Fatalf("message %s went from %q, want a return path of its own at %s", m.MessageID, m.From, stack.ReturnDomain)
		}
		returnPaths[m.From] = true
	}
	for _, m := range msgs {
		if len(m.To) != 1 {
			t.Fatalf("message %s has recipients %v, want one", m.MessageID, m.To)
		}
		c, ok := want[m.To[0]]
		if !ok {
			t.Fatalf("message to %s, who must not get one", m.To[0])
		}
		delete(want, m.To[0])
		text := textPart(t, m.Path)
		if !strings.Contains(text, "Hi "+c.FirstName+",") {
			t.Fatalf("message to %s does not greet %s:\n%s", c.Email, c.FirstName, text)
		}
		titles := productTitles(text)
		wantTitles := expectedTitles(tn, byEmail[c.Email], best, 6)
		if !slices.Equal(titles, wantTitles) {
			t.Fatalf("message to %s shows products\n%q\nwant\n%q", c.Email, titles, wantTitles)
		}
	}
	if len(want) != 0 {
		t.Fatalf("%d recipients got no message", len(want))
	}
	assertLedger(t, st, job.ID, map[string]int64{"sent": job.Counts.Sent, "suppressed": job.Counts.Suppressed})
}

// bestSellers is the tenant's in-stock items by sales, as recommend ranks them.
func bestSellers(tn stack.DemoTenant) []stack.Item {
	var items []stack.Item
	for j := range tn.Items {
		if it := tn.Item(j); it.InStock {
			items = append(items, it)
		}
	}
	slices.SortFunc(items, func(a, b stack.Item) int {
		return cmp.Or(cmp.Compare(b.Sales30d, a.Sales30d), cmp.Compare(a.ID, b.ID))
	})
	return items
}

// expectedTitles is what customer i must be shown: their ranked, in-stock,
// distinct recommendations, topped up with best sellers.
func expectedTitles(tn stack.DemoTenant, i int, best []stack.Item, n int) []string {
	var titles []string
	seen := map[string]bool{}
	for _, id := range tn.Recommended(i) {
		var j int
		fmt.Sscanf(id, "SKU-%05d", &j)
		it := tn.Item(j)
		if len(titles) == n || !it.InStock || seen[id] {
			continue
		}
		seen[id] = true
		titles = append(titles, it.Title)
	}
	for _, it := range best {
		if len(titles) == n {
			break
		}
		if !seen[it.ID] {
			seen[it.ID] = true
			titles = append(titles, it.Title)
		}
	}
	return titles
}

// textPart returns the decoded text/plain part of a stored message.
func textPart(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse %s: %v", filepath.Base(path), err)
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("content type of %s: %v", filepath.Base(path), err)
	}
	r := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := r.NextRawPart()
		if err != nil {
			t.Fatalf("no text part in %s: %v", filepath.Base(path), err)
		}
		if strings.HasPrefix(p.Header.Get("Content-Type"), "text/plain") {
			b, err := io.ReadAll(quotedprintable.NewReader(p))
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
}

// productTitles reads the product lines of the demo template's text part.
func productTitles(text string) []string {
	var titles []string
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, "* "); ok {
			if i := strings.LastIndex(rest, " ("); i > 0 {
				titles = append(titles, rest[:i])
			}
		}
	}
	return titles
}

// assertLedger checks the job's ledger rows by state.
func assertLedger(t *testing.T, st *stack.Stack, job string, want map[string]int64) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, st.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, _ := conn.Query(ctx, `SELECT state, count(*) FROM deliveries WHERE job_id = $1 GROUP BY state`, job)
	got := map[string]int64{}
	var state string
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&state, &n}, func() error { got[state] = n; return nil }); err != nil {
		t.Fatal(err)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("ledger has %d %s rows, want %d (all: %v)", got[k], k, v, got)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("ledger has %d unexpected %s rows", got[k], k)
		}
	}
}

// redriven counts the job's batches that were published more than once.
func redriven(t *testing.T, st *stack.Stack, job string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, st.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM job_batches WHERE job_id = $1 AND publishes > 1`, job).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
