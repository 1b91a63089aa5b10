package api

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"time"

	"github.com/google/uuid"

	"herald/ingest/internal/store"
	"herald/shared/emailtemplate"
)

type profileRequest struct {
	Name            string `json:"name"`
	WebsiteURL      string `json:"website_url"`
	LogoURL         string `json:"logo_url"`
	HeroURL         string `json:"hero_url"`
	PostalAddress   string `json:"postal_address"`
	DefaultDeadline string `json:"default_deadline"`
}

func (a *API) putProfile(w http.ResponseWriter, r *http.Request, tenant string) {
	var req profileRequest
	if !decodeJSON(w, r, a.limits.MaxJSONBytes, &req) {
		return
	}
	c := checker{}
	c.text("name", req.Name, 200, true)
	c.url("website_url", req.WebsiteURL, true)
	c.url("logo_url", req.LogoURL, false)
	c.url("hero_url", req.HeroURL, false)
	c.text("postal_address", req.PostalAddress, 500, true)
	p := store.Profile{Name: req.Name, WebsiteURL: req.WebsiteURL, LogoURL: req.LogoURL, HeroURL: req.HeroURL,
		PostalAddress: req.PostalAddress, DefaultDeadline: 4 * time.Hour}
	if req.DefaultDeadline != "" {
		d, err := time.ParseDuration(req.DefaultDeadline)
		if err != nil || d < time.Minute || d > a.limits.MaxDeadline {
			c.add("default_deadline", "must be a duration between 1m and %s, like \"4h\"", a.limits.MaxDeadline)
		}
		p.DefaultDeadline = d
	}
	if fieldsOf(c).answer(w) {
		return
	}
	if err := a.store.PutProfile(r.Context(), tenant, p); err != nil {
		a.internalError(w, r, tenant, err)
		return
	}
	writeJSON(w, http.StatusOK, req)
}

// fieldsOf turns a checker's line errors (line 0) into field errors.
func fieldsOf(c checker) fieldErrors {
	var f fieldErrors
	for _, e := range c.errs {
		f.add(e.Field, "%s", e.Message)
	}
	return f
}

type templateRequest struct {
	FromName  string `json:"from_name"`
	FromEmail string `json:"from_email"`
	Subject   string `json:"subject"`
	Preheader string `json:"preheader"`
	HTML      string `json:"html"`
	Text      string `json:"text"`
}

type templateResponse struct {
	ID        string    `json:"id"`
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"created_at"`
}

var templateIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func (a *API) addTemplate(w http.ResponseWriter, r *http.Request, tenant string) {
	id := r.PathValue("id")
	if !templateIDPattern.MatchString(id) {
		writeError(w, http.StatusUnprocessableEntity, "invalid_request", "template id must be 1-64 letters, digits, _ . -")
		return
	}
	var req templateRequest
	if !decodeJSON(w, r, a.limits.MaxJSONBytes, &req) {
		return
	}
	_, err := emailtemplate.Parse(emailtemplate.Source{FromName: req.FromName, FromEmail: req.FromEmail,
		Subject: req.Subject, Preheader: req.Preheader, HTML: req.HTML, Text: req.Text})
	var problems *emailtemplate.ProblemError
	if errors.As(err, &problems) {
		writeErrorDetails(w, http.StatusUnprocessableEntity, "invalid_template", problems.Error(), problems.Problems)
		return
	}
	if err != nil {
		a.internalError(w, r, tenant, err)
		return
	}
	t, err := a.store.AddTemplate(r.Context(), tenant, store.Template{ID: id, FromName: req.FromName, FromEmail: req.FromEmail,
		Subject: req.Subject, Preheader: req.Preheader, HTML: req.HTML, Text: req.Text})
	if err != nil {
		a.internalError(w, r, tenant, err)
		return
	}
	w.Header().Set("Location", fmt.Sprintf("/v1/templates/%s/versions/%d", id, t.Version))
	writeJSON(w, http.StatusCreated, templateResponse{ID: id, Version: t.Version, CreatedAt: t.CreatedAt})
}

type jobRequest struct {
	Channel  string `json:"channel"`
	Template struct {
		ID      string `json:"id"`
		Version int    `json:"version,omitempty"`
	} `json:"template"`
	Audience struct {
		AllSubscribed bool     `json:"all_subscribed,omitempty"`
		CustomerIDs   []string `json:"customer_ids,omitempty"`
	} `json:"audience"`
	Products *int       `json:"products,omitempty"`
	Campaign string     `json:"campaign,omitempty"`
	Deadline *time.Time `json:"deadline,omitempty"`
}

// Defaults and bounds of a job request.
const (
	defaultProducts = 6
	maxProducts     = 24
	minLead         = time.Minute
)

var idempotencyKeyPattern = regexp.MustCompile(`^[\x21-\x7e]{1,255}$`)

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
	now := a.now().UTC()
	var f fieldErrors
	if req.Channel != "email" {
		f.add("channel", "must be \"email\"")
	}
	if !templateIDPattern.MatchString(req.Template.ID) {
		f.add("template.id", "must name a template")
	}
	if req.Template.Version < 0 {
		f.add("template.version", "must be positive, or omitted for the latest")
	}
	ids := req.Audience.CustomerIDs
	switch {
	case req.Audience.AllSubscribed == (len(ids) > 0):
		f.add("audience", "set exactly one of all_subscribed: true or customer_ids")
	case len(ids) > a.limits.MaxAudienceIDs:
		f.add("audience.customer_ids", "more than %d ids; use all_subscribed", a.limits.MaxAudienceIDs)
	}
	for i, id := range ids {
		if !idPattern.MatchString(id) {
			f.add(fmt.Sprintf("audience.customer_ids[%d]", i), "is not a valid customer id")
			break
		}
	}
	products := defaultProducts
	if req.Products != nil {
		products = *req.Products
		if products < 0 || products > maxProducts {
			f.add("products", "must be between 0 and %d", maxProducts)
		}
	}
	if len(req.Campaign) > 100 {
		f.add("campaign", "longer than 100 bytes")
	}
	if req.Deadline != nil {
		switch d := req.Deadline.Sub(now); {
		case d < minLead:
			f.add("deadline", "must be at least %s in the future", minLead)
		case d > a.limits.MaxDeadline:
			f.add("deadline", "must be within %s", a.limits.MaxDeadline)
		}
	}
	if f.answer(w) {
		return
	}
	// The hash covers the request as understood, so whitespace or key order
	// does not make a retry look like a different request.
	canonical, err := json.Marshal(req)
	if err != nil {
		a.internalError(w, r, tenant, err)
		return
	}
	hash := sha256.Sum256(canonical)
	deadline := now
	if req.Deadline != nil {
		deadline = req.Deadline.UTC()
	} else {
		d, err := a.store.DefaultDeadline(r.Context(), tenant)
		if err != nil {
			a.internalError(w, r, tenant, err)
			return
		}
		deadline = now.Add(d)
	}
	id, created, err := a.store.CreateJob(r.Context(), tenant, store.NewJob{
		IdempotencyKey:     key,
		RequestHash:        hash[:],
		Channel:            req.Channel,
		TemplateID:         req.Template.ID,
		TemplateVersion:    req.Template.Version,
		Audience:           store.Audience{AllSubscribed: req.Audience.AllSubscribed, CustomerIDs: sortedUnique(ids)},
		ProductsPerMessage: products,
		Campaign:           req.Campaign,
		SubmittedAt:        now,
		Deadline:           deadline,
		Traceparent:        r.Header.Get("Traceparent"),
	})
	var unknown *store.UnknownCustomersError
	switch {
	case errors.Is(err, store.ErrUnknownTemplate):
		writeError(w, http.StatusUnprocessableEntity, "unknown_template",
			fmt.Sprintf("template %q (version %d) does not exist", req.Template.ID, req.Template.Version))
		return
	case errors.Is(err, store.ErrIdempotencyMismatch):
		writeError(w, http.StatusUnprocessableEntity, "idempotency_key_reused",
			"this Idempotency-Key was used for a different request; use a new key for a new job")
		return
	case errors.As(err, &unknown):
		writeErrorDetails(w, http.StatusUnprocessableEntity, "unknown_customers",
			fmt.Sprintf("audience names customers that do not exist, e.g. %q", unknown.IDs[0]), unknown.IDs)
		return
	case err != nil:
		a.internalError(w, r, tenant, err)
		return
	}
	job, err := a.store.Job(r.Context(), tenant, id)
	if err != nil {
		a.internalError(w, r, tenant, err)
		return
	}
	if created {
		a.log.InfoContext(r.Context(), "job accepted", "tenant_id", tenant, "job_id", id, "deadline", job.Deadline)
	} else {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	w.Header().Set("Location", "/v1/jobs/"+id.String())
	writeJSON(w, http.StatusAccepted, jobView(job, a.now()))
}

func sortedUnique(ids []string) []string {
	if len(ids) == 0 {
		return nil
	}
	seen := make(map[string]struct{}, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if _, dup := seen[id]; !dup {
			seen[id] = struct{}{}
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

func (a *API) getJob(w http.ResponseWriter, r *http.Request, tenant string) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusNotFound, "not_found", "no such job")
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
		AllSubscribed bool `json:"all_subscribed,omitempty"`
		CustomerIDs   int  `json:"customer_ids,omitempty"`
	} `json:"audience"`
	Products     int        `json:"products"`
	Campaign     string     `json:"campaign,omitempty"`
	SubmittedAt  time.Time  `json:"submitted_at"`
	Deadline     time.Time  `json:"deadline"`
	Planned      int64      `json:"planned"`
	PlanningDone bool       `json:"planning_done"`
	Counts       Counts     `json:"counts"`
	FirstSentAt  *time.Time `json:"first_sent_at,omitempty"`
	LastDoneAt   *time.Time `json:"last_done_at,omitempty"`
	// PerSecond is the rate of final outcomes since the first one.
	PerSecond float64 `json:"per_second"`
}

// Counts are recipients by state.
type Counts struct {
	Pending    int64 `json:"pending"`
	Sent       int64 `json:"sent"`
	Failed     int64 `json:"failed"`
	Suppressed int64 `json:"suppressed"`
	Expired    int64 `json:"expired"`
	Ambiguous  int64 `json:"ambiguous"`
}

func jobView(j store.JobStatus, now time.Time) JobView {
	v := JobView{
		ID: j.ID.String(), State: j.State(), Channel: j.Channel, Products: j.ProductsPerMessage, Campaign: j.Campaign,
		SubmittedAt: j.SubmittedAt.UTC(), Deadline: j.Deadline.UTC(), Planned: j.Planned, PlanningDone: j.PlannedAt != nil,
		FirstSentAt: j.FirstSentAt, LastDoneAt: j.LastDoneAt,
		Counts: Counts{Sent: j.Sent, Failed: j.Failed, Suppressed: j.Suppressed, Expired: j.Expired, Ambiguous: j.Ambiguous,
			Pending: max(j.Planned-j.Done(), 0)},
	}
	v.Template.ID, v.Template.Version = j.TemplateID, j.TemplateVersion
	v.Audience.AllSubscribed, v.Audience.CustomerIDs = j.Audience.AllSubscribed, len(j.Audience.CustomerIDs)
	if j.FirstSentAt != nil {
		end := now
		if v.State == "complete" && j.LastDoneAt != nil {
			end = *j.LastDoneAt
		}
		if secs := end.Sub(*j.FirstSentAt).Seconds(); secs > 0 {
			v.PerSecond = float64(j.Done()) / secs
		}
	}
	return v
}
