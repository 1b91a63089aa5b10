package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/deploy/stack"
)

// demoJob is the Black Friday job the demo and the benchmark submit.
func demoJob() map[string]any {
	return map[string]any{
		"channel":  "email",
		"template": map[string]any{"id": "black-friday"},
		"audience": map[string]any{"all_subscribed": true},
		"products": 6,
		"campaign": "bf-2026",
	}
}

func demo(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := newFlags("demo", stderr)
	n := fs.Int("recipients", 100_000, "customers of the demo retailer")
	wait := fs.Bool("wait", true, "keep Herald running after the job until Ctrl-C")
	fake := fs.Bool("fake-pubsub", false, "use Google's in-process Pub/Sub fake even where the emulator is installed")
	maildir := fs.String("maildir", filepath.Join(os.TempDir(), "herald-demo-mail"), "where delivered emails are kept as .eml files (emptied first)")
	sign := fs.Bool("dkim", true, "DKIM-sign the demo's mail with an RSA-2048 key made for the run (about 1–2 ms of dispatch CPU a message)")
	keepMail := fs.Int("keep-mail", 1000, "how many delivered emails to keep as .eml files; the rest are counted only (0: all)")
	jaeger := fs.Bool("jaeger", false, "start a local Jaeger (built from the Go module proxy once per machine) and print the job's trace")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := filepath.Abs(*maildir)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("empty maildir: %w", err)
	}
	opts := stack.Options{Maildir: dir, MaxMailFiles: *keepMail, FakePubsub: *fake, Log: log}
	var signing *demoDKIM
	if *sign {
		if signing, err = newDemoDKIM(); err != nil {
			return err
		}
		defer signing.remove()
		opts.Flags = map[string][]string{"dispatch": signing.flags()}
	}
	var traces *stack.Jaeger
	if *jaeger {
		work, err := os.MkdirTemp("", "herald-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(work)
		// PostgreSQL runs as its own user and must be able to enter it.
		if err := os.Chmod(work, 0o755); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(work, "logs"), 0o755); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "Starting Jaeger…")
		traces, err = stack.StartJaeger(ctx, work, func(msg string) { fmt.Fprintln(stdout, "  "+msg) })
		if err != nil {
			return err
		}
		defer traces.Stop()
		opts.Dir, opts.TraceEndpoint = work, traces.OTLP
		fmt.Fprintf(stdout, "  Jaeger at %s\n", traces.UI)
	}
	fmt.Fprintln(stdout, "Building the four services and the edge (the first run on a machine takes a few minutes)…")
	fmt.Fprintln(stdout, "Starting PostgreSQL, Pub/Sub, a mail catcher, ingest, recommend, render, dispatch and the edge…")
	start := time.Now()
	st, err := stack.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(stdout, "Stopping every process the demo started…")
		if err := st.Stop(); err != nil {
			fmt.Fprintln(stderr, "stop:", err)
		}
	}()
	fmt.Fprintf(stdout, "  up in %s (Pub/Sub: %s at %s; logs in %s)\n", time.Since(start).Round(100*time.Millisecond),
		st.PubsubKind, st.PubsubHost, filepath.Join(st.Dir, "logs"))

	client := &stack.Client{BaseURL: st.IngestURL, Tenant: "acme"}
	tenant := stack.DemoTenant{ID: "acme", Customers: *n, Items: 500, Seed: 2026}
	fmt.Fprintf(stdout, "Loading the demo retailer: 500 products, %d customers with recommendations…\n", *n)
	start = time.Now()
	if err := tenant.Load(ctx, client); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "  loaded in %s\n", time.Since(start).Round(100*time.Millisecond))

	job, err := client.SubmitJob(ctx, fmt.Sprintf("demo-%d", time.Now().UnixNano()), demoJob())
	if err != nil {
		return fmt.Errorf("submit job: %w", err)
	}
	fmt.Fprintf(stdout, "Submitted job %s (deadline %s)\n", job.ID, job.Deadline.Local().Format(time.Kitchen))
	bar := newProgress(stderr)
	job, err = client.WaitJob(ctx, job.ID, 200*time.Millisecond, bar.show)
	bar.finish()
	if err != nil {
		return err
	}
	report(stdout, tenant, job)
	if traces != nil {
		id, err := traceID(ctx, st.DatabaseURL, job.ID)
		if err != nil {
			return err
		}
		counts, err := traces.SpansByService(ctx, id, 15*time.Second)
		if err != nil {
			return err
		}
		services := make([]string, 0, len(counts))
		for name, n := range counts {
			services = append(services, fmt.Sprintf("%s %d", name, n))
		}
		slices.Sort(services)
		fmt.Fprintf(stdout, "  trace: %s\n    spans: %s\n", traces.TraceURL(id), strings.Join(services, ", "))
	}
	msgs := st.Mail.Messages()
	kept := msgs[:0:0]
	for _, m := range msgs {
		if m.Path != "" {
			kept = append(kept, m)
		}
	}
	fmt.Fprintf(stdout, "\nThe mail catcher received %d messages and keeps the first %d as .eml files in %s, for example:\n", len(msgs), len(kept), dir)
	for _, m := range kept[:min(3, len(kept))] {
		fmt.Fprintf(stdout, "  %s\n    to %s: %q\n", m.Path, strings.Join(m.To, ", "), m.Subject)
	}
	if signing != nil {
		fmt.Fprintf(stdout, "Each is DKIM-signed (d=%s, s=%s) with a key made for this run; a receiver checks it against this DNS record:\n  %s\n",
			signing.domain, signing.selector, signing.record())
	}
	if !*wait {
		return nil
	}
	// A partner token for the demo retailer, signed with the local dev key
	// that the edge trusts in place of the real issuer's.
	token, err := stack.MintToken("acme", 24*time.Hour)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nHerald keeps running behind the local edge at %s. Try:\n", st.IngestURL)
	fmt.Fprintf(stdout, "  export HERALD_TOKEN=%s\n", token)
	fmt.Fprintf(stdout, "  curl -H \"Authorization: Bearer $HERALD_TOKEN\" %s/v1/jobs/%s\n", st.IngestURL, job.ID)
	fmt.Fprintf(stdout, "  curl -H \"Authorization: Bearer $HERALD_TOKEN\" '%s/v1/jobs?limit=5'\n", st.IngestURL)
	fmt.Fprintf(stdout, "  curl %s/v1/jobs   # no token: refused by the edge\n", st.IngestURL)
	ops, err := stack.MintOpsToken(24 * time.Hour)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "The ops page (an operator's token): %s/ops?access_token=%s\n", st.IngestURL, ops)
	fmt.Fprintf(stdout, "The tenants, through the operator API (the same token):\n")
	fmt.Fprintf(stdout, "  curl -H \"Authorization: Bearer %s\" %s/v1/ops/tenants\n", ops, st.IngestURL)
	fmt.Fprintf(stdout, "The API is described by its OpenAPI document (a partner token reads it):\n")
	fmt.Fprintf(stdout, "  curl -H \"Authorization: Bearer $HERALD_TOKEN\" %s/v1/openapi.json\n", st.IngestURL)
	fmt.Fprintln(stdout, "Press Ctrl-C to stop everything.")
	<-ctx.Done()
	return nil
}

func report(w io.Writer, tn stack.DemoTenant, j stack.Job) {
	unsubscribed := 0
	for i := range tn.Customers {
		if !tn.Customer(i).Subscribed {
			unsubscribed++
		}
	}
	fmt.Fprintf(w, "\nThe audience is every subscribed customer: of %d, %d had unsubscribed, so %d were planned.\n",
		tn.Customers, unsubscribed, j.Planned)
	fmt.Fprintf(w, "Job %s is %s:\n", j.ID, j.State)
	fmt.Fprintf(w, "  delivered   %9d\n", j.Counts.Sent)
	fmt.Fprintf(w, "  suppressed  %9d   (on the tenant's suppression list: earlier bounces and complaints)\n", j.Counts.Suppressed)
	fmt.Fprintf(w, "  failed      %9d\n", j.Counts.Failed)
	if j.Counts.Expired+j.Counts.Ambiguous > 0 {
		fmt.Fprintf(w, "  expired     %9d\n  ambiguous   %9d\n", j.Counts.Expired, j.Counts.Ambiguous)
	}
	if j.FirstSentAt != nil && j.LastDoneAt != nil {
		total := j.LastDoneAt.Sub(j.SubmittedAt)
		fmt.Fprintf(w, "  throughput  %9.0f messages/s\n", j.PerSecond)
		fmt.Fprintf(w, "  submit → first delivery  %s\n", j.FirstSentAt.Sub(j.SubmittedAt).Round(time.Millisecond))
		fmt.Fprintf(w, "  submit → last delivery   %s (deadline was %s after submit: %s)\n", total.Round(time.Millisecond),
			j.Deadline.Sub(j.SubmittedAt).Round(time.Minute), slaWord(j))
	}
}

func slaWord(j stack.Job) string {
	if j.LastDoneAt != nil && j.LastDoneAt.Before(j.Deadline) {
		return "met"
	}
	return "missed"
}

// progress draws a one-line bar on a terminal, or a line every few seconds
// elsewhere.
type progress struct {
	w     io.Writer
	tty   bool
	last  time.Time
	drawn bool
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) show(j stack.Job) {
	if !p.tty && time.Since(p.last) < 5*time.Second {
		return
	}
	p.last = time.Now()
	total := max(j.Planned, 1)
	frac := float64(j.Done()) / float64(total)
	const width = 40
	filled := int(frac * width)
	line := fmt.Sprintf("[%s%s] %5.1f%%  %d/%d  %.0f/s  %s", strings.Repeat("█", filled), strings.Repeat("·", width-filled),
		100*frac, j.Done(), j.Planned, j.PerSecond, j.State)
	if !j.PlanningDone {
		line += " (still planning)"
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\033[K", line)
		p.drawn = true
	} else {
		fmt.Fprintln(p.w, line)
	}
}

func (p *progress) finish() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}

// traceID is the trace the job's work continues, from its stored
// traceparent ("00-<trace id>-<span id>-<flags>").
func traceID(ctx context.Context, url, job string) (string, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	var tp string
	if err := conn.QueryRow(ctx, `SELECT traceparent FROM jobs WHERE id = $1`, job).Scan(&tp); err != nil {
		return "", fmt.Errorf("read the job's trace: %w", err)
	}
	parts := strings.Split(tp, "-")
	if len(parts) != 4 {
		return "", fmt.Errorf("job %s has no trace (traceparent %q)", job, tp)
	}
	return parts[1], nil
}
