package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/deploy/stack"
)

// bench runs the whole pipeline on one large job against a counting SMTP
// sink and reports what it cost.
func bench(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := newFlags("bench", stderr)
	n := fs.Int("recipients", 1_000_000, "customers of the benchmark retailer")
	statements := fs.Int("statements", 0, "also report the N SQL statements that took PostgreSQL the most time (pg_stat_statements)")
	profileDir := fs.String("pprof", "", "write a CPU profile of each service, taken once a tenth of the job is done, into this directory")
	profileFor := fs.Duration("pprof-for", 20*time.Second, "how long each CPU profile runs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts := stack.Options{Log: log}
	if *statements > 0 {
		opts.PostgresSettings = map[string]string{"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all"}
	}
	if *profileDir != "" {
		if err := os.MkdirAll(*profileDir, 0o755); err != nil {
			return err
		}
		opts.Flags = map[string][]string{}
		for _, svc := range stack.Services {
			opts.Flags[svc] = []string{"-pprof"}
		}
	}
	st, err := stack.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer st.Stop()
	client := &stack.Client{BaseURL: st.IngestURL, Tenant: "bench"}
	tenant := stack.DemoTenant{ID: "bench", Customers: *n, Items: 2000, Seed: 1}
	fmt.Fprintf(stdout, "loading %d customers…\n", *n)
	loadStart := time.Now()
	if err := tenant.Load(ctx, client); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "loaded in %s\n", time.Since(loadStart).Round(time.Second))
	if *statements > 0 {
		if err := resetStatements(ctx, st.DatabaseURL); err != nil {
			return err
		}
	}
	before := map[string]usage{}
	for _, s := range stack.Services {
		before[s] = readUsage(st.Proc(s).Pid())
	}
	boxBefore, othersBefore := boxCPU(), otherCPU(st.Proc(stack.Edge).Pid())
	job, err := client.SubmitJob(ctx, "bench", demoJob())
	if err != nil {
		return err
	}
	bar := newProgress(stderr)
	show := bar.show
	profiled := make(chan error, 1)
	if *profileDir != "" {
		started := false
		show = func(j stack.Job) {
			bar.show(j)
			if !started && j.PlanningDone && j.Done()*10 >= j.Planned {
				started = true
				go func() { profiled <- profileServices(ctx, st, *profileDir, *profileFor) }()
			}
		}
	} else {
		profiled <- nil
	}
	job, err = client.WaitJob(ctx, job.ID, time.Second, show)
	bar.finish()
	if err != nil {
		return err
	}
	if err := <-profiled; err != nil {
		return err
	}
	after := map[string]usage{}
	for _, s := range stack.Services {
		after[s] = readUsage(st.Proc(s).Pid())
	}
	box, othersAfter := boxCPU()-boxBefore, otherCPU(st.Proc(stack.Edge).Pid())
	p50, p99, err := latency(ctx, st.DatabaseURL, job.ID)
	if err != nil {
		return err
	}
	wall := job.LastDoneAt.Sub(job.SubmittedAt)
	fmt.Fprintf(stdout, "\n%d recipients: %d sent, %d suppressed, %d failed, %d ambiguous\n", job.Planned,
		job.Counts.Sent, job.Counts.Suppressed, job.Counts.Failed, job.Counts.Ambiguous)
	fmt.Fprintf(stdout, "submit → last delivery: %s; throughput %.0f messages/s (from first delivery %.0f/s)\n",
		wall.Round(time.Millisecond), float64(job.Done())/wall.Seconds(), job.PerSecond)
	mail := st.Mail.Stats()
	fmt.Fprintf(stdout, "SMTP sink: %d messages to %d distinct recipients; %d repeated recipients, %d repeated Message-IDs\n",
		mail.Messages, mail.DistinctRecipients, mail.DuplicateRecipients, mail.DuplicateMessageIDs)
	first := "none"
	if job.FirstSentAt != nil {
		first = job.FirstSentAt.Sub(job.SubmittedAt).Round(time.Millisecond).String()
	}
	fmt.Fprintf(stdout, "submit → first delivery: %s; submit → delivered latency: p50 %s, p99 %s\n",
		first, p50.Round(time.Millisecond), p99.Round(time.Millisecond))
	fmt.Fprintf(stdout, "%-10s %12s %14s %12s\n", "service", "cpu seconds", "µs/message", "peak RSS MB")
	var total float64
	for _, s := range stack.Services {
		cpu := after[s].cpu - before[s].cpu
		total += cpu
		fmt.Fprintf(stdout, "%-10s %12.1f %14.1f %12.0f\n", s, cpu, cpu*1e6/float64(max(job.Done(), 1)), float64(after[s].peakRSS)/(1<<20))
	}
	fmt.Fprintf(stdout, "%-10s %12.1f %14.1f\n", "all four", total, total*1e6/float64(max(job.Done(), 1)))
	for _, g := range otherGroups {
		cpu := othersAfter[g] - othersBefore[g]
		fmt.Fprintf(stdout, "%-10s %12.1f %14.1f\n", g, cpu, cpu*1e6/float64(max(job.Done(), 1)))
	}
	fmt.Fprintf(stdout, "%-10s %12.1f %14.1f   (every process on the machine)\n",
		"whole box", box, box*1e6/float64(max(job.Done(), 1)))
	if *statements > 0 {
		return topStatements(ctx, stdout, st.DatabaseURL, *statements)
	}
	return nil
}

// resetStatements starts pg_stat_statements afresh, so that it counts the
// job only, not the load before it.
func resetStatements(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()`)
	if err != nil {
		return fmt.Errorf("pg_stat_statements: %w", err)
	}
	return nil
}

// topStatements prints the n statements PostgreSQL spent the most time in
// (waits included), each by its first line of SQL or comment.
func topStatements(ctx context.Context, w io.Writer, url string, n int) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT calls, total_exec_time, rows, query FROM pg_stat_statements
		ORDER BY total_exec_time DESC LIMIT $1`, n)
	if err != nil {
		return fmt.Errorf("pg_stat_statements: %w", err)
	}
	defer rows.Close()
	fmt.Fprintf(w, "\n%10s %10s %8s %10s  %s\n", "calls", "total ms", "ms/call", "rows", "statement")
	for rows.Next() {
		var calls, nrows int64
		var ms float64
		var query string
		if err := rows.Scan(&calls, &ms, &nrows, &query); err != nil {
			return err
		}
		first, _, _ := strings.Cut(strings.TrimSpace(query), "\n")
		if len(first) > 90 {
			first = first[:90] + "…"
		}
		fmt.Fprintf(w, "%10d %10.0f %8.2f %10d  %s\n", calls, ms, ms/float64(max(calls, 1)), nrows, first)
	}
	return rows.Err()
}

// The processes beside the four services whose CPU the benchmark reports:
// PostgreSQL's server processes, the Pub/Sub emulator (a JVM), this
// process (which holds the SMTP sink) and the edge.
var otherGroups = []string{"postgres", "emulator", "sink", "edge"}

// otherCPU sums, per group of otherGroups, the CPU time of the group's
// processes including their exited, reaped children (PostgreSQL's
// backends that come and go).
func otherCPU(edge int) map[string]float64 {
	sums := map[string]float64{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return sums
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		var group string
		switch comm := s[open+1 : end]; {
		case pid == self:
			group = "sink"
		case pid == edge:
			group = "edge"
		case comm == "postgres":
			group = "postgres"
		case comm == "java":
			group = "emulator"
		default:
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 15 {
			continue
		}
		for _, i := range []int{11, 12, 13, 14} { // utime, stime, cutime, cstime
			v, _ := strconv.ParseFloat(f[i], 64)
			sums[group] += v / 100 // USER_HZ
		}
	}
	return sums
}

// boxCPU is the CPU time, in seconds, every process on the machine has
// used since boot (user, nice, system, irq, softirq).
func boxCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var total float64
	for _, i := range []int{1, 2, 3, 6, 7} {
		if i < len(f) {
			v, _ := strconv.ParseFloat(f[i], 64)
			total += v
		}
	}
	return total / 100 // USER_HZ
}

type usage struct {
	cpu     float64 // user+system seconds
	peakRSS int64   // bytes
}

// readUsage reads a process's CPU time and peak resident set from /proc.
func readUsage(pid int) usage {
	var u usage
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command name, which is in parentheses.
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 {
			f := strings.Fields(s[i+1:])
			if len(f) > 13 {
				ut, _ := strconv.ParseFloat(f[11], 64)
				st, _ := strconv.ParseFloat(f[12], 64)
				u.cpu = (ut + st) / 100 // USER_HZ is 100 on Linux
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				u.peakRSS = kb << 10
			}
		}
	}
	return u
}

// latency reads the submit-to-delivered percentiles of a job's sent
// messages from the ledger.
func latency(ctx context.Context, url, job string) (p50, p99 time.Duration, err error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close(ctx)
	var a, b float64
	err = conn.QueryRow(ctx, `
		SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM done_at - job_submitted_at)),
		       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM done_at - job_submitted_at))
		FROM deliveries WHERE job_id = $1 AND state = 'sent'`, job).Scan(&a, &b)
	if err != nil {
		return 0, 0, fmt.Errorf("read latency: %w", err)
	}
	return time.Duration(a * float64(time.Second)), time.Duration(b * float64(time.Second)), nil
}

// profileServices takes a CPU profile of every service and of this process
// (the SMTP sink) at once, for d, and writes <service>.pprof and sink.pprof
// into dir.
func profileServices(ctx context.Context, st *stack.Stack, dir string, d time.Duration) error {
	errs := make(chan error, len(stack.Services))
	for _, svc := range stack.Services {
		go func() {
			url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", st.Addr(svc), int(d.Seconds()))
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				errs <- err
				return
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- fmt.Errorf("profile %s: %w", svc, err)
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs <- fmt.Errorf("profile %s: %s", svc, resp.Status)
				return
			}
			f, err := os.Create(filepath.Join(dir, svc+".pprof"))
			if err != nil {
				errs <- err
				return
			}
			_, err = io.Copy(f, resp.Body)
			errs <- errors.Join(err, f.Close())
		}()
	}
	// This process is the SMTP sink (and the mail API): profile it too.
	f, err := os.Create(filepath.Join(dir, "sink.pprof"))
	if err != nil {
		return err
	}
	defer f.Close()
	all := []error{pprof.StartCPUProfile(f)}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	pprof.StopCPUProfile()
	for range stack.Services {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}
