package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"herald/deploy/stack"
)

// chromium runs headless Chromium from Debian's package with the flags a
// closed network needs, and returns its standard output.
func chromium(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("the ops page is tested in a real browser: install Debian's chromium package (%v)", err)
	}
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append(base, args...)...).Output()
	if err != nil {
		t.Fatalf("chromium %v: %v", args, err)
	}
	return string(out)
}

// TestOpsPageShowsARunningJob loads /ops in headless Chromium while a job
// runs and checks what an operator sees: the job with its progress and SLA
// state, every stage up, and the tenant's rate limit. It saves a screenshot.
func TestOpsPageShowsARunningJob(t *testing.T) {
	st := startStack(t, stack.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tn := stack.DemoTenant{ID: "acme", Customers: 8000, Items: 100, Seed: 23}
	client := partnerClient(t, st, tn.ID)
	if err := tn.Load(ctx, client); err != nil {
		t.Fatal(err)
	}
	// A slow tenant keeps the job running while the browser looks.
	sql(t, st, `UPDATE tenants SET send_rate = 400 WHERE id = 'acme'`)
	job, err := client.SubmitJob(ctx, "ops", blackFriday())
	if err != nil {
		t.Fatal(err)
	}
	for {
		j, err := client.GetJob(ctx, job.ID)
		if err != nil {
			t.Fatal(err)
		}
		if j.Counts.Sent > 500 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	token, err := stack.MintOpsToken(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	url := st.IngestURL + "/ops?access_token=" + token
	dom := chromium(t, "--virtual-time-budget=5000", "--dump-dom", url)
	for _, want := range []string{
		`data-job="` + job.ID + `"`, ">acme<", "bf-test", // the running job, by tenant and campaign
		`class="bar"`,                           // its progress bar
		`class="sla `,                           // its SLA state
		">recommend<", ">render<", ">dispatch<", // every stage…
		`class="up"`,        // …answering
		"tenant:acme",       // the tenant's rate bucket
		"batches in flight", // the pipeline backlog
	} {
		if !strings.Contains(dom, want) {
			t.Fatalf("the ops page lacks %q; it shows:\n%s", want, dom)
		}
	}
	if strings.Contains(dom, `class="down"`) || strings.Contains(dom, `id="updated">update failed`) {
		t.Fatalf("the ops page shows a stage down or a failed update:\n%s", dom)
	}
	root, err := stack.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(root, ".herald", "artifacts", "ops.png")
	if err := os.MkdirAll(filepath.Dir(shot), 0o755); err != nil {
		t.Fatal(err)
	}
	chromium(t, "--virtual-time-budget=5000", "--window-size=1280,900", "--screenshot="+shot, url)
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 10_000 {
		t.Fatalf("screenshot %s missing or empty: %v", shot, err)
	}
	t.Logf("screenshot of the ops page during job %s: %s", job.ID, shot)
	// A partner's token does not open the page.
	partner := partnerClient(t, st, tn.ID)
	if _, err := partner.Do(ctx, "GET", "/ops/api/overview", "", nil, nil, nil); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("a partner token reached the ops data: %v", err)
	}
}
