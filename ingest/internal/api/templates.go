package api

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"herald/ingest/internal/store"
	"herald/shared/emailtemplate"
)

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

type templateView struct {
	templateResponse
	templateRequest
}

var templateIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// maxVersion is the largest template version: templates.version and the
// columns that name one are integer (int4).
const maxVersion = math.MaxInt32

// checkVersion checks a template version that a request names, 0 meaning
// the latest.
func checkVersion(f *fieldErrors, field string, v int) {
	if v < 0 || v > maxVersion {
		f.add(field, "must be between 1 and %d, or omitted for the latest", maxVersion)
	}
}

// headerProblems lists the template fields that end up in message headers
// and contain a line break or other control character: in a header, CR or
// LF would start a header of the partner's choosing.
func headerProblems(req templateRequest) fieldErrors {
	var f fieldErrors
	for _, h := range []struct{ field, v string }{
		{"from_name", req.FromName}, {"from_email", req.FromEmail}, {"subject", req.Subject}, {"preheader", req.Preheader},
	} {
		if strings.ContainsAny(h.v, "\r\n") {
			f.add(h.field, "must not contain CR or LF: it becomes a message header")
		} else if strings.ContainsFunc(h.v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			f.add(h.field, "must not contain control characters")
		}
	}
	return f
}

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
	if headerProblems(req).answer(w) {
		return
	}
	// Templates are untrusted code: the renderer's own checks (allow-listed
	// functions, bounded loops, no recursion) run here first, so a template
	// that would be refused at render time is refused at upload.
	var problems []templateProblem
	for _, part := range []struct{ name, src string }{
		{"subject", req.Subject}, {"preheader", req.Preheader}, {"html", req.HTML}, {"text", req.Text},
	} {
		for _, msg := range emailtemplate.Check(part.name, part.src) {
			problems = append(problems, templateProblem{Part: part.name, Message: strings.TrimPrefix(msg, part.name+": ")})
		}
	}
	if len(problems) > 0 {
		p := problems[0]
		writeErrorDetails(w, http.StatusUnprocessableEntity, "invalid_template", "invalid template: "+p.Part+": "+p.Message, problems)
		return
	}
	_, err := emailtemplate.Parse(sourceOf(req), a.limits.TemplateBudget)
	if budgetExceeded(w, err) {
		return
	}
	var bad *emailtemplate.ProblemError
	if errors.As(err, &bad) {
		writeErrorDetails(w, http.StatusUnprocessableEntity, "invalid_template", bad.Error(), bad.Problems)
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

// budgetProblem says which part of a template ran out of which budget
// (steps, bytes or time) when it rendered.
type budgetProblem struct {
	Part   string `json:"part"`
	Budget string `json:"budget"`
}

// budgetExceeded answers 422 if err is a render that ran out of its
// budget, and reports whether it did.
func budgetExceeded(w http.ResponseWriter, err error) bool {
	var be *emailtemplate.BudgetError
	if !errors.As(err, &be) {
		return false
	}
	writeErrorDetails(w, http.StatusUnprocessableEntity, "template_budget_exceeded", be.Error(),
		budgetProblem{Part: be.Part, Budget: be.Budget})
	return true
}

// templateProblem is one thing wrong with one part of a template.
type templateProblem struct {
	Part    string `json:"part"` // subject, preheader, html or text
	Message string `json:"message"`
}

func sourceOf(req templateRequest) emailtemplate.Source {
	return emailtemplate.Source{FromName: req.FromName, FromEmail: req.FromEmail,
		Subject: req.Subject, Preheader: req.Preheader, HTML: req.HTML, Text: req.Text}
}

// templateOf loads the template version the path names, answering 404
// itself when there is none.
func (a *API) templateOf(w http.ResponseWriter, r *http.Request, tenant string) (store.Template, bool) {
	id := r.PathValue("id")
	version, err := strconv.ParseInt(r.PathValue("version"), 10, 32)
	if errors.Is(err, strconv.ErrRange) {
		var f fieldErrors
		f.add("version", "must be between 1 and %d", maxVersion)
		f.answer(w)
		return store.Template{}, false
	}
	if !templateIDPattern.MatchString(id) || err != nil || version < 1 {
		writeError(w, http.StatusNotFound, "not_found", "no such template version")
		return store.Template{}, false
	}
	t, err := a.store.Template(r.Context(), tenant, id, int(version))
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such template version")
		return store.Template{}, false
	case err != nil:
		a.internalError(w, r, tenant, err)
		return store.Template{}, false
	}
	return t, true
}

func (a *API) getTemplate(w http.ResponseWriter, r *http.Request, tenant string) {
	t, ok := a.templateOf(w, r, tenant)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, templateView{
		templateResponse: templateResponse{ID: t.ID, Version: t.Version, CreatedAt: t.CreatedAt},
		templateRequest: templateRequest{FromName: t.FromName, FromEmail: t.FromEmail, Subject: t.Subject,
			Preheader: t.Preheader, HTML: t.HTML, Text: t.Text},
	})
}

func (a *API) listTemplateVersions(w http.ResponseWriter, r *http.Request, tenant string) {
	id := r.PathValue("id")
	if !templateIDPattern.MatchString(id) {
		writeError(w, http.StatusNotFound, "not_found", "no such template")
		return
	}
	vs, err := a.store.TemplateVersions(r.Context(), tenant, id, 1000)
	if err != nil {
		a.internalError(w, r, tenant, err)
		return
	}
	if len(vs) == 0 {
		writeError(w, http.StatusNotFound, "not_found", "no such template")
		return
	}
	out := make([]templateResponse, len(vs))
	for i, v := range vs {
		out[i] = templateResponse{ID: id, Version: v.Version, CreatedAt: v.CreatedAt}
	}
	writeJSON(w, http.StatusOK, map[string]any{"versions": out})
}

type previewRequest struct {
	// CustomerID names a customer whose name and address fill the
	// preview; without it a sample customer does.
	CustomerID string `json:"customer_id,omitempty"`
}

type previewResponse struct {
	Subject string `json:"subject"`
	HTML    string `json:"html"`
	Text    string `json:"text"`
}

// previewTemplate renders a template version for one customer of the
// tenant (or a sample one) with the tenant's brand and sample products.
func (a *API) previewTemplate(w http.ResponseWriter, r *http.Request, tenant string) {
	var req previewRequest
	if !decodeJSON(w, r, a.limits.MaxJSONBytes, &req) {
		return
	}
	t, ok := a.templateOf(w, r, tenant)
	if !ok {
		return
	}
	data := emailtemplate.Sample()
	if req.CustomerID != "" {
		c, err := a.store.Customer(r.Context(), tenant, req.CustomerID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			writeError(w, http.StatusNotFound, "not_found", "no such customer")
			return
		case err != nil:
			a.internalError(w, r, tenant, err)
			return
		}
		data.Customer = emailtemplate.Customer{ID: c.ID, FirstName: c.FirstName, LastName: c.LastName, Email: c.Email, Locale: c.Locale}
	}
	if p, err := a.store.Profile(r.Context(), tenant); err == nil {
		data.Brand = emailtemplate.Brand{Name: p.Name, URL: p.WebsiteURL, LogoURL: p.LogoURL, HeroURL: p.HeroURL, Address: p.PostalAddress}
		data.Job.HeroAlt = p.Name
	} else if !errors.Is(err, store.ErrNotFound) {
		a.internalError(w, r, tenant, err)
		return
	}
	// A stored template passed at upload, but possibly under a larger
	// budget than today's.
	parsed, err := emailtemplate.Parse(emailtemplate.Source{FromName: t.FromName, FromEmail: t.FromEmail, Subject: t.Subject,
		Preheader: t.Preheader, HTML: t.HTML, Text: t.Text}, a.limits.TemplateBudget)
	if budgetExceeded(w, err) {
		return
	}
	if err != nil {
		a.internalError(w, r, tenant, fmt.Errorf("parse stored template: %w", err))
		return
	}
	var out emailtemplate.Rendered
	err = parsed.Render(data, &out)
	if budgetExceeded(w, err) {
		return
	}
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, "render_failed", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, previewResponse{Subject: out.Subject, HTML: out.HTML.String(), Text: out.Text.String()})
}
