package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/google/uuid"

	"herald/ingest/internal/sla"
	"herald/ingest/internal/store"
	"herald/shared/telemetry"
)

// createJob accepts a job: parseJob decides whether the request is one,
// the store commits it, and the answer says what became of it.
func (a *API) createJob(w http.ResponseWriter, r *http.Request, tenant string) {
	key := r.Header.Get("Idempotency-Key")
	if !idempotencyKeyPattern.MatchString(key) {
		writeError(w, http.StatusBadRequest, "idempotency_key_required",
			"Idempotency-Key header is required: 1-255 printable ASCII characters, unique per job")
		return
	}
	var req jobRequest
	if !decodeJSON(w, r, a.limits.MaxJSONBytes, &req) {
		return
	}
	if req.Strategy != nil {
		writeError(w, http.StatusBadRequest, "invalid_json", strategyRemoved)
		return
	}
	now := a.now().UTC()
	job, problems := parseJob(req, now, a.limits)
	if problems.answer(w) {
		return
	}
	job.IdempotencyKey, job.Traceparent = key, traceparent(r)
	if job.Deadline.IsZero() {
		d, err := a.store.DefaultDeadline(r.Context(), tenant)
		if err != nil {
			a.internalError(w, r, tenant, err)
			return
		}
		job.Deadline = job.Start().Add(d)
	}
	acc, err := a.store.CreateJob(r.Context(), tenant, job, func(j store.JobStatus) ([]byte, error) {
		return json.MarshalIndent(jobView(j, now), "", "  ")
	})
	if err != nil {
		a.createJobError(w, r, tenant, job, err)
		return
	}
	if acc.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	} else {
		a.log.InfoContext(r.Context(), "job accepted", "tenant_id", tenant, "job_id", acc.ID, "deadline", job.Deadline)
	}
	w.Header().Set("Location", "/v1/jobs/"+acc.ID.String())
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(append(bytes.TrimRight(acc.Response, "\n"), '\n'))
}

// createJobError answers a job the store did not accept.
func (a *API) createJobError(w http.ResponseWriter, r *http.Request, tenant string, job store.NewJob, err error) {
	var unknown *store.UnknownCustomersError
	switch {
	case tenantRefused(w, tenant, err):
		// Suspended while the request was in flight.
	case errors.Is(err, store.ErrUnknownTemplate):
		writeError(w, http.StatusNotFound, "not_found",
			fmt.Sprintf("template %q (version %d) does not exist", job.TemplateID, job.TemplateVersion))
	case errors.Is(err, store.ErrIdempotencyMismatch):
		writeError(w, http.StatusUnprocessableEntity, "idempotency_key_reused",
			"this Idempotency-Key was used for a different request; use a new key for a new job")
	case errors.Is(err, store.ErrIdempotencyInFlight):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusConflict, "idempotency_key_in_flight",
			"a request with this Idempotency-Key is being handled; retry when it has been answered")
	case errors.As(err, &unknown):
		writeErrorDetails(w, http.StatusUnprocessableEntity, "unknown_customers",
			fmt.Sprintf("audience names customers that do not exist, e.g. %q", unknown.IDs[0]), unknown.IDs)
	default:
		a.internalError(w, r, tenant, err)
	}
}

// jobID parses the {id} of the path; a malformed id is as unknown as an
// id of another tenant.
func jobID(w http.ResponseWriter, r *http.Request) (uuid.UUID, bool) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusNotFound, "not_found", "no such job")
		return uuid.Nil, false
	}
	return id, true
}

func (a *API) getJob(w http.ResponseWriter, r *http.Request, tenant string) {
	id, ok := jobID(w, r)
	if !ok {
		return
	}
	job, err := a.store.Job(r.Context(), tenant, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such job")
	case err != nil:
		a.internalError(w, r, tenant, err)
	default:
		writeJSON(w, http.StatusOK, jobView(job, a.now()))
	}
}

// jobAction serves pause, resume and cancel.
func (a *API) jobAction(action string) tenantHandler {
	return func(w http.ResponseWriter, r *http.Request, tenant string) {
		id, ok := jobID(w, r)
		if !ok {
			return
		}
		err := a.store.ChangeJob(r.Context(), tenant, id, action)
		var bad *store.TransitionError
		switch {
		case errors.Is(err, store.ErrNotFound):
			writeError(w, http.StatusNotFound, "not_found", "no such job")
			return
		case errors.As(err, &bad):
			writeError(w, http.StatusConflict, "invalid_state", bad.Error())
			return
		case tenantRefused(w, tenant, err):
			return
		case err != nil:
			a.internalError(w, r, tenant, err)
			return
		}
		a.log.InfoContext(r.Context(), "job "+action, "tenant_id", tenant, "job_id", id)
		a.getJob(w, r, tenant)
	}
}

// redriveJob gives an active job's failed recipients another go.
func (a *API) redriveJob(w http.ResponseWriter, r *http.Request, tenant string) {
	id, ok := jobID(w, r)
	if !ok {
		return
	}
	now := a.now()
	got, err := a.store.RedriveJob(r.Context(), tenant, id, now)
	var bad *store.TransitionError
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such job")
		return
	case errors.As(err, &bad):
		writeError(w, http.StatusConflict, "invalid_state", bad.Error()+"; resume a paused job first")
		return
	case errors.Is(err, store.ErrDeadlinePassed):
		writeError(w, http.StatusConflict, "deadline_passed", "the job's deadline has passed: submit a new job for its failed recipients")
		return
	case err != nil:
		a.internalError(w, r, tenant, err)
		return
	}
	a.log.InfoContext(r.Context(), "job re-driven", "tenant_id", tenant, "job_id", id,
		"recipients", got.Recipients, "batches", got.Batches)
	job, err := a.store.Job(r.Context(), tenant, id)
	if err != nil {
		a.internalError(w, r, tenant, err)
		return
	}
	writeJSON(w, http.StatusOK, redriveView{Recipients: got.Recipients, Batches: got.Batches, Job: jobView(job, now)})
}

// redriveView answers a re-drive.
type redriveView struct {
	// Recipients is how many failed recipients will be tried again.
	Recipients int64 `json:"redriven_recipients"`
	// Batches is how many batches will be published again.
	Batches int64   `json:"republished_batches"`
	Job     JobView `json:"job"`
}

// Job listing bounds.
const (
	defaultPageSize = 50
	maxPageSize     = 200
)

type jobPage struct {
	Jobs []JobView `json:"jobs"`
	// NextCursor fetches the next (older) page; absent on the last one.
	NextCursor string `json:"next_cursor,omitempty"`
}

// listJobs pages through the tenant's jobs, newest first. The cursor is
// opaque to partners (it is the last job id of the page, encoded).
func (a *API) listJobs(w http.ResponseWriter, r *http.Request, tenant string) {
	q := r.URL.Query()
	limit := defaultPageSize
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPageSize {
			writeError(w, http.StatusUnprocessableEntity, "invalid_request", fmt.Sprintf("limit must be between 1 and %d", maxPageSize))
			return
		}
		limit = n
	}
	before := uuid.Max
	if c := q.Get("cursor"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		id, perr := uuid.FromBytes(b)
		if err != nil || perr != nil {
			writeError(w, http.StatusUnprocessableEntity, "invalid_request", "cursor is not one this API returned")
			return
		}
		before = id
	}
	jobs, err := a.store.Jobs(r.Context(), tenant, before, limit+1)
	if err != nil {
		a.internalError(w, r, tenant, err)
		return
	}
	page := jobPage{Jobs: make([]JobView, 0, min(len(jobs), limit))}
	now := a.now()
	for i, j := range jobs {
		if i == limit {
			last := jobs[limit-1].ID
			page.NextCursor = base64.RawURLEncoding.EncodeToString(last[:])
			break
		}
		page.Jobs = append(page.Jobs, jobView(j, now))
	}
	writeJSON(w, http.StatusOK, page)
}

// JobView is the JSON form of a job and its progress.
type JobView struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Channel  string `json:"channel"`
	Template struct {
		ID      string `json:"id"`
		Version int    `json:"version"`
	} `json:"template"`
	Audience struct {
		AllSubscribed bool            `json:"all_subscribed,omitempty"`
		CustomerIDs   int             `json:"customer_ids,omitempty"`
		Segment       json.RawMessage `json:"segment,omitempty"`
	} `json:"audience"`
	Products       int        `json:"products"`
	Campaign       string     `json:"campaign,omitempty"`
	SubmittedAt    time.Time  `json:"submitted_at"`
	SendAt         *time.Time `json:"send_at,omitempty"`
	Deadline       time.Time  `json:"deadline"`
	StateChangedAt *time.Time `json:"state_changed_at,omitempty"`
	Planned        int64      `json:"planned"`
	PlanningDone   bool       `json:"planning_done"`
	Counts         Counts     `json:"counts"`
	FirstSentAt    *time.Time `json:"first_sent_at,omitempty"`
	LastDoneAt     *time.Time `json:"last_done_at,omitempty"`
	// PerSecond is the rate of final outcomes since the first one.
	PerSecond float64 `json:"per_second"`
	// ETA is when the last recipient is expected to have an outcome at
	// the current rate; absent before the first outcome and once complete.
	ETA *time.Time `json:"eta,omitempty"`
	// SLA is the job against its deadline (package sla): waiting (nothing
	// final yet), on_track, at_risk (the ETA falls in the last tenth of the
	// job's window or later) or breached while it runs; met or missed once
	// it is complete.
	SLA string `json:"sla"`
}

// Counts are recipients by state.
type Counts struct {
	Pending    int64 `json:"pending"`
	Sent       int64 `json:"sent"`
	Failed     int64 `json:"failed"`
	Suppressed int64 `json:"suppressed"`
	Expired    int64 `json:"expired"`
	Ambiguous  int64 `json:"ambiguous"`
	Capped     int64 `json:"capped"`
	Skipped    int64 `json:"skipped"`
}

func jobView(j store.JobStatus, now time.Time) JobView {
	v := JobView{
		ID: j.ID.String(), State: j.State(now), Channel: j.Channel, Products: j.ProductsPerMessage,
		Campaign: j.Campaign, SubmittedAt: j.SubmittedAt.UTC(), Deadline: j.Deadline.UTC(), Planned: j.Planned,
		PlanningDone: j.PlannedAt != nil, FirstSentAt: j.FirstSentAt, LastDoneAt: j.LastDoneAt, StateChangedAt: j.StateChangedAt,
		Counts: Counts{Sent: j.Sent, Failed: j.Failed, Suppressed: j.Suppressed, Expired: j.Expired, Ambiguous: j.Ambiguous, Capped: j.Capped, Skipped: j.Skipped,
			Pending: max(j.Planned-j.Done(), 0)},
	}
	if j.SendAt != nil {
		s := j.SendAt.UTC()
		v.SendAt = &s
	}
	v.Template.ID, v.Template.Version = j.TemplateID, j.TemplateVersion
	v.Audience.AllSubscribed, v.Audience.CustomerIDs = j.Audience.AllSubscribed, len(j.Audience.CustomerIDs)
	v.Audience.Segment = j.Audience.Segment
	// The ops page judges jobs with the same function, so the two never
	// disagree about a job.
	verdict := sla.Judge(sla.Progress{SubmittedAt: j.SubmittedAt, Deadline: j.Deadline, Planned: j.Planned,
		PlanningDone: j.PlannedAt != nil, Done: j.Done(), FirstDoneAt: j.FirstSentAt, LastDoneAt: j.LastDoneAt}, now)
	v.PerSecond, v.SLA = verdict.PerSecond, verdict.State
	if !verdict.ETA.IsZero() && !j.Complete() && j.JobState == store.StateActive {
		eta := verdict.ETA.UTC().Truncate(time.Second)
		v.ETA = &eta
	}
	return v
}

// traceparent is the trace context the job's work continues: the span of
// this request (the edge's or the partner's trace, continued), or what the
// caller sent if tracing is off and it is a well-formed W3C traceparent
// (anything else is ignored, as Trace Context says).
func traceparent(r *http.Request) string {
	if tp := telemetry.Traceparent(r.Context()); tp != "" {
		return tp
	}
	if tp := r.Header.Get("Traceparent"); traceparentPattern.MatchString(tp) {
		return tp
	}
	return ""
}

var traceparentPattern = regexp.MustCompile(`^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)
