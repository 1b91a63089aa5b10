package store

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// newJob is a job of all subscribed customers on template bf, submitted
// now; its request hash is that of the key and extra.
func newJob(key, extra string) NewJob {
	now := testNow()
	hash := sha256.Sum256([]byte(key + extra))
	return NewJob{IdempotencyKey: key, RequestHash: hash[:], Channel: "email", TemplateID: "bf",
		Audience: Audience{AllSubscribed: true}, ProductsPerMessage: 6, Campaign: "bf", SubmittedAt: now, Deadline: now.Add(4 * time.Hour)}
}

// respond answers a job with its id and template version, as the API's
// answer would.
func respond(j JobStatus) ([]byte, error) {
	return json.Marshal(map[string]any{"id": j.ID, "version": j.TemplateVersion})
}

// create accepts j for tenant or fails the test.
func (f *fixture) create(tenant string, j NewJob) Accepted {
	f.t.Helper()
	acc, err := f.s.CreateJob(context.Background(), tenant, j, respond)
	if err != nil {
		f.t.Fatalf("create job %q: %v", j.IdempotencyKey, err)
	}
	return acc
}

// jobsAndOutbox counts the jobs and outbox rows of every tenant.
func (f *fixture) jobsAndOutbox() [2]int {
	f.t.Helper()
	return [2]int{f.count(`SELECT count(*) FROM jobs`), f.count(`SELECT count(*) FROM outbox`)}
}

// CreateJob stores the job, its answer and its planning task in one
// transaction, resolving the template's latest version.
func TestCreateJobStoresTheJobItsAnswerAndItsPlanningTask(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.template("acme", "bf")
	f.template("acme", "bf")
	j := newJob("k1", "")
	j.Traceparent = "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01"
	var seen JobStatus
	acc, err := f.s.CreateJob(ctx, "acme", j, func(s JobStatus) ([]byte, error) { seen = s; return respond(s) })
	if err != nil {
		t.Fatal(err)
	}
	if acc.Replayed || acc.ID == uuid.Nil || acc.ID.Version() != 7 {
		t.Fatalf("accepted %+v, want a new UUIDv7 job", acc)
	}
	if want, _ := respond(seen); string(acc.Response) != string(want) {
		t.Errorf("response %s, want %s", acc.Response, want)
	}
	if seen.ID != acc.ID || seen.TemplateVersion != 2 || seen.JobState != StateActive {
		t.Errorf("respond saw %+v, want the job's id, template version 2 (the latest) and state active", seen)
	}
	var got struct {
		key, channel, template, campaign, traceparent, origin, state string
		version, products                                            int
		hash, response                                               []byte
		audience                                                     Audience
	}
	if err := f.db.QueryRow(ctx, `SELECT idempotency_key, channel, template_id, campaign, traceparent, origin, state,
		template_version, products_per_message, request_sha256, accepted_response, audience FROM jobs WHERE tenant_id = 'acme' AND id = $1`, acc.ID).
		Scan(&got.key, &got.channel, &got.template, &got.campaign, &got.traceparent, &got.origin, &got.state,
			&got.version, &got.products, &got.hash, &got.response, &got.audience); err != nil {
		t.Fatal(err)
	}
	if got.key != "k1" || got.channel != "email" || got.template != "bf" || got.version != 2 || got.products != 6 ||
		got.campaign != "bf" || got.traceparent != j.Traceparent || got.origin != OriginPartner || got.state != StateActive ||
		string(got.hash) != string(j.RequestHash) || string(got.response) != string(acc.Response) || !got.audience.AllSubscribed {
		t.Errorf("stored job %+v", got)
	}
	if n := f.count(`SELECT count(*) FROM outbox WHERE tenant_id = 'acme' AND job_id = $1 AND kind = 'plan_job' AND lease_until = '-infinity'`, acc.ID); n != 1 {
		t.Errorf("%d planning tasks due at once, want 1", n)
	}
	if n := f.count(`SELECT count(*) FROM tenants WHERE id = 'acme'`); n != 1 {
		t.Errorf("%d tenant rows, want 1", n)
	}
}

// A scheduled job's planning task is not leased before its send_at.
func TestCreateJobSchedulesPlanningAtSendAt(t *testing.T) {
	f := newFixture(t)
	f.template("acme", "bf")
	j := newJob("k1", "")
	sendAt := j.SubmittedAt.Add(3 * time.Hour)
	j.SendAt, j.Deadline = &sendAt, sendAt.Add(time.Hour)
	acc := f.create("acme", j)
	var leaseUntil time.Time
	if err := f.db.QueryRow(context.Background(), `SELECT lease_until FROM outbox WHERE job_id = $1`, acc.ID).Scan(&leaseUntil); err != nil {
		t.Fatal(err)
	}
	if !leaseUntil.Equal(sendAt) {
		t.Errorf("planning task leased until %v, want the send_at %v", leaseUntil, sendAt)
	}
	if n := f.count(`SELECT count(*) FROM pg_class WHERE relname = $1`, "deliveries_"+sendAt.Format("20060102")); n != 1 {
		t.Errorf("no ledger partition for the send_at's day")
	}
}

// The Idempotency-Key contract: the same request again gets the first
// answer and creates nothing; another request with the key is refused; a
// key whose first request is still being handled is refused as in flight;
// keys are per tenant.
func TestCreateJobIdempotency(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.template("acme", "bf")
	f.template("globex", "bf")
	first := f.create("acme", newJob("k1", ""))
	before := f.jobsAndOutbox()

	t.Run("same request", func(t *testing.T) {
		f.t = t
		// A template added since does not change the answer.
		f.template("acme", "bf")
		again, err := f.s.CreateJob(ctx, "acme", newJob("k1", ""), func(JobStatus) ([]byte, error) {
			t.Error("respond called for a replayed request")
			return nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(Accepted{ID: first.ID, Response: first.Response, Replayed: true}, again); diff != "" {
			t.Errorf("replay (-want +got):\n%s", diff)
		}
		if got := f.jobsAndOutbox(); got != before {
			t.Errorf("jobs and outbox rows %v, want %v", got, before)
		}
	})
	t.Run("other request", func(t *testing.T) {
		f.t = t
		_, err := f.s.CreateJob(ctx, "acme", newJob("k1", "other"), respond)
		if !errors.Is(err, ErrIdempotencyMismatch) {
			t.Fatalf("err %v, want ErrIdempotencyMismatch", err)
		}
		if got := f.jobsAndOutbox(); got != before {
			t.Errorf("jobs and outbox rows %v, want %v", got, before)
		}
	})
	t.Run("in flight", func(t *testing.T) {
		f.t = t
		tx, err := f.db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		// What CreateJob holds while it handles the key.
		if _, err := tx.Exec(ctx, lockIdempotencyKeySQL, "acme", "k2"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.s.CreateJob(ctx, "acme", newJob("k2", ""), respond); !errors.Is(err, ErrIdempotencyInFlight) {
			t.Fatalf("err %v, want ErrIdempotencyInFlight", err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if acc := f.create("acme", newJob("k2", "")); acc.Replayed {
			t.Errorf("the first request to get through was answered as a replay")
		}
	})
	t.Run("keys are per tenant", func(t *testing.T) {
		f.t = t
		theirs := f.create("globex", newJob("k1", ""))
		if theirs.Replayed || theirs.ID == first.ID {
			t.Errorf("another tenant's key k1 answered %+v", theirs)
		}
	})
	t.Run("a partner key cannot pass for a catalog change's", func(t *testing.T) {
		f.t = t
		before := f.jobsAndOutbox()
		if _, err := f.s.CreateJob(ctx, "acme", newJob("catalog change 1", ""), respond); err == nil {
			t.Fatal("a partner job took a catalog change's key")
		}
		if got := f.jobsAndOutbox(); got != before {
			t.Errorf("jobs and outbox rows %v, want %v", got, before)
		}
	})
}

// A job the store refuses leaves nothing behind.
func TestCreateJobRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.template("acme", "bf")
	f.customers("acme", "c1", "c3")
	f.template("globex", "other")
	boom := errors.New("boom")
	tests := []struct {
		name    string
		tenant  string
		job     func(NewJob) NewJob
		respond func(JobStatus) ([]byte, error)
		check   func(error) bool
	}{
		{"unknown template", "acme", func(j NewJob) NewJob { j.TemplateID = "nope"; return j }, respond,
			func(err error) bool { return errors.Is(err, ErrUnknownTemplate) }},
		{"unknown template version", "acme", func(j NewJob) NewJob { j.TemplateVersion = 2; return j }, respond,
			func(err error) bool { return errors.Is(err, ErrUnknownTemplate) }},
		{"another tenant's template", "globex", func(j NewJob) NewJob { return j }, respond,
			func(err error) bool { return errors.Is(err, ErrUnknownTemplate) }},
		{"unknown customers", "acme", func(j NewJob) NewJob {
			j.Audience = Audience{CustomerIDs: []string{"c1", "c2", "c3", "c4"}}
			return j
		}, respond, func(err error) bool {
			var unknown *UnknownCustomersError
			return errors.As(err, &unknown) && cmp.Equal(unknown.IDs, []string{"c2", "c4"})
		}},
		{"the answer cannot be built", "acme", func(j NewJob) NewJob { return j }, func(JobStatus) ([]byte, error) { return nil, boom },
			func(err error) bool { return errors.Is(err, boom) }},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.t = t
			_, err := f.s.CreateJob(ctx, tc.tenant, tc.job(newJob(fmt.Sprint("k", i), "")), tc.respond)
			if !tc.check(err) {
				t.Fatalf("err %v", err)
			}
			if got := f.jobsAndOutbox(); got != [2]int{0, 0} {
				t.Errorf("jobs and outbox rows %v after a refusal, want none", got)
			}
		})
	}
}

// Job returns a job with its progress, the totals dispatch keeps; another
// tenant's job is not found.
func TestJobReadsTheJobAndItsProgress(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.template("acme", "bf")
	j := newJob("k1", "")
	j.Audience = Audience{Segment: json.RawMessage(`{"attribute":"tier","op":"eq","value":"gold"}`), SegmentPath: `$."tier" == "gold"`}
	acc := f.create("acme", j)
	f.exec(`INSERT INTO job_progress (tenant_id, job_id, shard, sent, failed, capped) VALUES ('acme', $1, 0, 5, 1, 0), ('acme', $1, 1, 2, 0, 3)`, acc.ID)
	f.exec(`UPDATE jobs SET planned = 11 WHERE id = $1`, acc.ID)
	got, err := f.s.Job(ctx, "acme", acc.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := j.Status()
	want.ID, want.TemplateVersion = acc.ID, 1
	want.Planned, want.Sent, want.Failed, want.Capped = 11, 7, 1, 3
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) }),
		cmp.FilterPath(func(p cmp.Path) bool {
			return p.Last().String() == ".FirstSentAt" || p.Last().String() == ".LastDoneAt"
		}, cmp.Ignore()),
		cmp.Comparer(func(a, b json.RawMessage) bool { return jsonEqual(a, b) })); diff != "" {
		t.Errorf("job (-want +got):\n%s", diff)
	}
	if got.Done() != 11 || got.State(testNow()) != "planning" {
		t.Errorf("done %d, state %q; want 11, planning (not planned to the end)", got.Done(), got.State(testNow()))
	}
	for _, tc := range []struct {
		tenant string
		id     uuid.UUID
	}{{"globex", acc.ID}, {"acme", uuid.New()}} {
		if _, err := f.s.Job(ctx, tc.tenant, tc.id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Job(%s, %s): %v, want ErrNotFound", tc.tenant, tc.id, err)
		}
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && cmp.Equal(x, y)
}

// Jobs pages through one tenant's jobs, newest first, before a cursor.
func TestJobsPagesNewestFirst(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.template("acme", "bf")
	f.template("globex", "bf")
	var ids []uuid.UUID
	for i := range 3 {
		ids = append(ids, f.create("acme", newJob(fmt.Sprint("k", i), "")).ID)
	}
	f.create("globex", newJob("k9", ""))
	page := func(before uuid.UUID, limit int) []uuid.UUID {
		t.Helper()
		jobs, err := f.s.Jobs(ctx, "acme", before, limit)
		if err != nil {
			t.Fatal(err)
		}
		var out []uuid.UUID
		for _, j := range jobs {
			out = append(out, j.ID)
		}
		return out
	}
	if diff := cmp.Diff([]uuid.UUID{ids[2], ids[1]}, page(uuid.Max, 2)); diff != "" {
		t.Errorf("first page (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]uuid.UUID{ids[0]}, page(ids[1], 2)); diff != "" {
		t.Errorf("second page (-want +got):\n%s", diff)
	}
	if got := page(ids[0], 2); len(got) != 0 {
		t.Errorf("after the oldest job: %v, want none", got)
	}
}

// ChangeJob walks a job through pause, resume and cancel: each action
// sets the state and does its work on the plan, repeating one changes
// nothing, and an action the state does not allow is a *TransitionError.
func TestChangeJob(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.template("acme", "bf")
	id := f.create("acme", newJob("k1", "")).ID
	// The planner has published two batches; dispatch finished one.
	f.exec(`INSERT INTO job_batches (tenant_id, job_id, seq, customer_ids, published_at, done_at)
		VALUES ('acme', $1, 0, '{c1}', now(), now()), ('acme', $1, 1, '{c2}', now(), NULL)`, id)
	state := func() (string, bool, int, int) {
		t.Helper()
		var s string
		var changed bool
		if err := f.db.QueryRow(ctx, `SELECT state, state_changed_at IS NOT NULL FROM jobs WHERE id = $1`, id).Scan(&s, &changed); err != nil {
			t.Fatal(err)
		}
		return s, changed, f.count(`SELECT count(*) FROM outbox WHERE job_id = $1`, id),
			f.count(`SELECT count(*) FROM job_batches WHERE job_id = $1 AND published_at IS NULL`, id)
	}
	type want struct {
		err                 error
		state               string
		outbox, unpublished int
	}
	steps := []struct {
		action string
		want   want
	}{
		{Pause, want{nil, StatePaused, 1, 0}},
		{Pause, want{nil, StatePaused, 1, 0}},
		// The unfinished batch is published again; the finished one is not.
		{Resume, want{nil, StateActive, 1, 1}},
		{Resume, want{nil, StateActive, 1, 1}},
		{Cancel, want{nil, StateCancelled, 0, 1}},
		{Cancel, want{nil, StateCancelled, 0, 1}},
		{Resume, want{&TransitionError{Action: Resume, State: StateCancelled}, StateCancelled, 0, 1}},
		{Pause, want{&TransitionError{Action: Pause, State: StateCancelled}, StateCancelled, 0, 1}},
	}
	for i, step := range steps {
		err := f.s.ChangeJob(ctx, "acme", id, step.action)
		if diff := cmp.Diff(step.want.err, err, cmp.Comparer(func(a, b error) bool { return fmt.Sprint(a) == fmt.Sprint(b) })); diff != "" {
			t.Fatalf("step %d %s: err (-want +got):\n%s", i, step.action, diff)
		}
		s, changed, outbox, unpublished := state()
		if s != step.want.state || !changed || outbox != step.want.outbox || unpublished != step.want.unpublished {
			t.Fatalf("step %d %s: state %s (changed %v), %d planning tasks, %d unpublished batches; want %+v",
				i, step.action, s, changed, outbox, unpublished, step.want)
		}
	}

	// Resuming a paused job whose planning task is gone (it was planned to
	// the end) gives it a new one, so its batches are published again.
	other := f.create("acme", newJob("k2", "")).ID
	if err := f.s.ChangeJob(ctx, "acme", other, Pause); err != nil {
		t.Fatal(err)
	}
	f.exec(`DELETE FROM outbox WHERE job_id = $1`, other)
	if err := f.s.ChangeJob(ctx, "acme", other, Resume); err != nil {
		t.Fatal(err)
	}
	if n := f.count(`SELECT count(*) FROM outbox WHERE job_id = $1 AND lease_owner = '' AND lease_until = '-infinity'`, other); n != 1 {
		t.Errorf("resume left %d planning tasks due now, want 1", n)
	}

	// A complete job can be neither paused nor cancelled.
	done := f.create("acme", newJob("k3", "")).ID
	f.exec(`UPDATE jobs SET planned = 1, planned_at = now() WHERE id = $1`, done)
	f.exec(`INSERT INTO job_progress (tenant_id, job_id, shard, sent) VALUES ('acme', $1, 0, 1)`, done)
	for _, action := range []string{Pause, Cancel} {
		var bad *TransitionError
		if err := f.s.ChangeJob(ctx, "acme", done, action); !errors.As(err, &bad) || bad.State != "complete" {
			t.Errorf("%s a complete job: %v, want a *TransitionError from complete", action, err)
		}
	}

	if err := f.s.ChangeJob(ctx, "globex", id, Pause); !errors.Is(err, ErrNotFound) {
		t.Errorf("another tenant's job: %v, want ErrNotFound", err)
	}
	var bad *TransitionError
	if err := f.s.ChangeJob(ctx, "acme", other, "explode"); err == nil || errors.As(err, &bad) {
		t.Errorf("unknown action: %v, want an error that is no *TransitionError", err)
	}
}

// EnsurePartitions makes today's and tomorrow's ledger partitions, and
// making them again is harmless.
func TestEnsurePartitions(t *testing.T) {
	f := newFixture(t)
	now := time.Date(2031, 3, 4, 23, 59, 0, 0, time.UTC)
	for range 2 {
		if err := f.s.EnsurePartitions(context.Background(), now); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"deliveries_20310304", "deliveries_20310305"} {
		if n := f.count(`SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relname = $1`, name); n != 1 {
			t.Errorf("partition %s: %d, want 1", name, n)
		}
	}
}

// DefaultDeadline is four hours until the tenant's profile says otherwise.
func TestDefaultDeadline(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	get := func() time.Duration {
		t.Helper()
		d, err := f.s.DefaultDeadline(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := get(); d != 4*time.Hour {
		t.Errorf("without a profile: %s, want 4h", d)
	}
	if err := f.s.PutProfile(ctx, "acme", Profile{Name: "Acme", DefaultDeadline: 90 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	if d := get(); d != 90*time.Minute {
		t.Errorf("with a profile: %s, want 1h30m", d)
	}
}
