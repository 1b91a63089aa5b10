package e2e

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"herald/deploy/stack"
)

// TestRedriveSendsTheFailedOnce has the relay refuse a tenth of the
// recipients for good, so the job completes with them failed; once the
// relay takes them, a re-drive through the API sends each of them exactly
// once and nobody else again.
func TestRedriveSendsTheFailedOnce(t *testing.T) {
	st := startStack(t, stack.Options{})
	var refusing atomic.Bool
	refusing.Store(true)
	st.Mail.SetFault(func(from string, to []string) *smtp.SMTPError {
		if refusing.Load() && strings.Contains(to[0], "7@") {
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "rejected by policy"}
		}
		return nil
	})
	tn := stack.DemoTenant{ID: "acme", Customers: 2000, Items: 100, Seed: 53}
	job := loadAndRun(t, st, tn, "redrive")
	want, _ := expected(tn)
	var refused int64
	for email := range want {
		if strings.Contains(email, "7@") {
			refused++
		}
	}
	if refused == 0 || job.Counts.Failed != refused || job.Counts.Sent != int64(len(want))-refused {
		t.Fatalf("before the re-drive: %+v; want %d failed and the other %d sent", job.Counts, refused, int64(len(want))-refused)
	}

	refusing.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	client := partnerClient(t, st, tn.ID)
	var answer struct {
		Recipients int64 `json:"redriven_recipients"`
		Batches    int64 `json:"republished_batches"`
	}
	if _, err := client.Do(ctx, http.MethodPost, "/v1/jobs/"+job.ID+"/redrive", "", nil, nil, &answer); err != nil {
		t.Fatal(err)
	}
	if answer.Recipients != refused || answer.Batches == 0 {
		t.Fatalf("re-drive answered %+v; want %d recipients", answer, refused)
	}
	job, err := client.WaitJob(ctx, job.ID, 100*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	if job.Counts.Failed != 0 || job.Counts.Sent != int64(len(want)) {
		t.Fatalf("after the re-drive: %+v; want all %d sent", job.Counts, len(want))
	}
	faultReport(t, "10% refused for good, then re-driven", len(want), st.Mail.Stats(), refused, job)

	// Again, with nothing failed: nothing moves.
	if _, err := client.Do(ctx, http.MethodPost, "/v1/jobs/"+job.ID+"/redrive", "", nil, nil, &answer); err != nil {
		t.Fatal(err)
	}
	if answer.Recipients != 0 {
		t.Fatalf("a second re-drive took back %d recipients", answer.Recipients)
	}
}
