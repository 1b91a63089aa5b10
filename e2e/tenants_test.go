package e2e

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/deploy/stack"
)

// TestTenantSuspensionPausesItsRunningJob: an operator suspends a tenant
// whose job is sending. The job pauses (what dispatch had claimed
// finishes, nothing more is claimed), the tenant's token is answered 403
// tenant_suspended, and resuming the tenant leaves the job paused. When
// the partner resumes it, every recipient has exactly one message.
func TestTenantSuspensionPausesItsRunningJob(t *testing.T) {
	st := startStack(t, stack.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	hc := checkedHTTP(t, st)
	ops := opsClient(t, st, hc)
	// A slow tenant keeps the job running while the operator suspends it.
	var created struct {
		State    string  `json:"state"`
		SendRate float64 `json:"send_rate"`
	}
	if _, err := ops.JSON(ctx, http.MethodPut, "/v1/ops/tenants/acme", map[string]any{"send_rate": 100}, nil, &created); err != nil {
		t.Fatal(err)
	}
	if created.State != "active" || created.SendRate != 100 {
		t.Fatalf("created %+v", created)
	}
	tn := stack.DemoTenant{ID: "acme", Customers: 2000, Items: 100, Seed: 61}
	client := partnerClient(t, st, tn.ID)
	if err := tn.Load(ctx, client); err != nil {
		t.Fatal(err)
	}
	job, err := client.SubmitJob(ctx, "suspend", blackFriday())
	if err != nil {
		t.Fatal(err)
	}
	for {
		j, err := client.GetJob(ctx, job.ID)
		if err != nil {
			t.Fatal(err)
		}
		if j.Counts.Sent > 100 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}

	var suspended struct {
		State      string   `json:"state"`
		PausedJobs []string `json:"paused_jobs"`
	}
	if _, err := ops.Do(ctx, http.MethodPost, "/v1/ops/tenants/acme/suspend", "", nil, nil, &suspended); err != nil {
		t.Fatal(err)
	}
	if suspended.State != "suspended" || !slices.Equal(suspended.PausedJobs, []string{job.ID}) {
		t.Fatalf("suspend: %+v, want job %s paused", suspended, job.ID)
	}
	var apiErr *stack.APIError
	if _, err := client.GetJob(ctx, job.ID); !errors.As(err, &apiErr) || apiErr.Status != 403 || !strings.Contains(apiErr.Body, `"tenant_suspended"`) {
		t.Fatalf("the suspended tenant's token: %v, want 403 tenant_suspended", err)
	}
	if _, err := client.SubmitJob(ctx, "while-suspended", blackFriday()); !errors.As(err, &apiErr) || apiErr.Status != 403 {
		t.Fatalf("a job of the suspended tenant: %v, want 403", err)
	}

	// What dispatch had claimed finishes; then the count stays, since
	// nothing more of a paused job is claimed.
	conn, err := pgx.Connect(ctx, st.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var state string
	var sending int
	for {
		err := conn.QueryRow(ctx, `SELECT j.state, (SELECT count(*) FROM deliveries d WHERE d.tenant_id = j.tenant_id AND d.job_id = j.id AND d.state = 'sending')
			FROM jobs j WHERE j.tenant_id = 'acme' AND j.id = $1`, job.ID).Scan(&state, &sending)
		if err != nil {
			t.Fatal(err)
		}
		if state != "paused" {
			t.Fatalf("the suspended tenant's job is %s", state)
		}
		if sending == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	atPause := st.Mail.Stats().Messages
	want, _ := expected(tn)
	if atPause >= int64(len(want)) {
		t.Fatalf("all %d messages went out before the suspension took hold; the test proves nothing", atPause)
	}

	if _, err := ops.Do(ctx, http.MethodPost, "/v1/ops/tenants/acme/resume", "", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	j, err := client.GetJob(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != "paused" {
		t.Fatalf("after the tenant's resume its job is %s; the partner resumes it", j.State)
	}
	if _, err := client.Do(ctx, http.MethodPost, "/v1/jobs/"+job.ID+"/resume", "", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	done, err := client.WaitJob(ctx, job.ID, 200*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d messages before the suspension held, %d in all", atPause, st.Mail.Stats().Messages)
	faultReport(t, "suspended and resumed", len(want), st.Mail.Stats(), 0, done)
}
