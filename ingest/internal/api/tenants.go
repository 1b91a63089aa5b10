package api

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"herald/ingest/internal/ops"
	"herald/ingest/internal/store"
	"herald/shared/bodyrate"
	"herald/shared/tenantid"
)

// Bounds of an operator's tenant settings, checked before the database.
// PostgreSQL refuses a rate or cap that is not positive; the upper bounds
// are Herald's, far above any real sender, and the cap is a SQL integer.
const (
	maxSendRate = 100_000
	maxDailyCap = math.MaxInt32
	// maxTenantPage bounds GET /v1/ops/tenants's limit.
	maxTenantPage = 500
)

// channelProviders lists the provider kinds each channel may name, as
// herald_valid_providers (migrations 00008 and 00015) accepts them.
var channelProviders = map[string][]string{
	"email":  {"smtp", "esp", "ses", "sendgrid"},
	"onsite": {"onsite"},
	"ad":     {"ads"},
}

// tenantRequest is the body of PUT /v1/ops/tenants/{id}: the tenant's
// settings in full. A field left out or null is dispatch's default.
type tenantRequest struct {
	SendRate  *float64            `json:"send_rate"`
	DailyCap  *int64              `json:"daily_cap"`
	Providers map[string][]string `json:"providers"`
}

// settings checks the request and returns the settings it sets.
func (req tenantRequest) settings() (store.TenantSettings, fieldErrors) {
	var f fieldErrors
	var out store.TenantSettings
	if r := req.SendRate; r != nil {
		if !(*r > 0 && *r <= maxSendRate) {
			f.add("send_rate", "must be more than 0 and at most %d messages a second, or null for no limit of the tenant's own", maxSendRate)
		}
		out.SendRate = r
	}
	if c := req.DailyCap; c != nil {
		if *c < 1 || *c > maxDailyCap {
			f.add("daily_cap", "must be between 1 and %d messages a recipient a day, or null for no cap", maxDailyCap)
		} else {
			n := int(*c)
			out.DailyCap = &n
		}
	}
	if req.Providers != nil {
		channels := make([]string, 0, len(req.Providers))
		for ch := range req.Providers {
			channels = append(channels, ch)
		}
		slices.Sort(channels)
		for _, ch := range channels {
			kinds := req.Providers[ch]
			field := "providers." + ch
			allowed, known := channelProviders[ch]
			switch {
			case !known:
				f.add(field, "unknown channel; want one of email, onsite, ad")
				continue
			case len(kinds) == 0:
				f.add(field, "must name at least one provider; leave the channel out for dispatch's order")
				continue
			}
			for i, k := range kinds {
				switch {
				case !slices.Contains(allowed, k):
					f.add(fmt.Sprintf("%s[%d]", field, i), "%q is not a provider of %s; want one of %s", k, ch, strings.Join(allowed, ", "))
				case slices.Contains(kinds[:i], k):
					f.add(fmt.Sprintf("%s[%d]", field, i), "%q is named twice", k)
				}
			}
		}
		out.Providers = req.Providers
	}
	return out, f
}

// TenantView is the JSON form of a tenant.
type TenantView struct {
	ID             string              `json:"id"`
	State          string              `json:"state"`
	SendRate       *float64            `json:"send_rate"`
	DailyCap       *int                `json:"daily_cap"`
	Providers      map[string][]string `json:"providers"`
	CreatedAt      time.Time           `json:"created_at"`
	UpdatedAt      time.Time           `json:"updated_at"`
	StateChangedAt *time.Time          `json:"state_changed_at,omitempty"`
}

func tenantView(t store.Tenant) TenantView {
	return TenantView{
		ID: t.ID, State: t.State, SendRate: t.SendRate, DailyCap: t.DailyCap, Providers: t.Providers,
		CreatedAt: t.CreatedAt.UTC(), UpdatedAt: t.UpdatedAt.UTC(), StateChangedAt: utcOrNil(t.StateChangedAt),
	}
}

func utcOrNil(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// tenantSuspendView answers a suspension with the jobs it paused.
type tenantSuspendView struct {
	TenantView
	PausedJobs []string `json:"paused_jobs"`
}

type tenantPage struct {
	Tenants    []TenantView `json:"tenants"`
	NextCursor string       `json:"next_cursor,omitempty"`
}

// operatorHandler is a route of the operator API.
type operatorHandler func(w http.ResponseWriter, r *http.Request)

// operator serves a route for operators only: the edge lets through to
// /v1/ops/ only a token whose role claim is ops and copies that claim into
// ops.RoleHeader, which ingest checks again as the ops page does, so a
// partner's token is refused here whatever the edge's policy says.
func (a *API) operator(mux *http.ServeMux, pattern string, h operatorHandler) {
	a.routes = append(a.routes, pattern)
	params := pathParams(pattern)
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		defer func() {
			a.requests.WithLabelValues(pattern, strconv.Itoa(rec.code)).Inc()
			a.latency.WithLabelValues(pattern).Observe(time.Since(start).Seconds())
		}()
		if roles := r.Header.Values(ops.RoleHeader); len(roles) != 1 || roles[0] != "ops" {
			writeError(rec, http.StatusForbidden, "forbidden", "the operator API needs a token whose role claim is ops; a partner token never opens it")
			return
		}
		if storableParams(rec, r, params) {
			h(rec, bodyrate.Limit(rec, r, a.limits.Body))
		}
	})
}

// resolveTenant answers 403 for a tenant that no operator has created or
// that is suspended, and reports whether the request may go on.
func (a *API) resolveTenant(w http.ResponseWriter, r *http.Request, tenant string) bool {
	state, err := a.store.TenantState(r.Context(), tenant)
	if err == nil && state != store.TenantActive {
		err = store.ErrTenantSuspended
	}
	if err != nil {
		if !tenantRefused(w, tenant, err) {
			a.internalError(w, r, tenant, err)
		}
		return false
	}
	return true
}

// tenantRefused answers the 403 of an unknown or suspended tenant and
// reports whether err was one of those.
func tenantRefused(w http.ResponseWriter, tenant string, err error) bool {
	switch {
	case errors.Is(err, store.ErrTenantUnknown):
		writeError(w, http.StatusForbidden, "tenant_unknown",
			fmt.Sprintf("tenant %q does not exist: tenants are created by Herald's operators, ask them to create it", tenant))
	case errors.Is(err, store.ErrTenantSuspended):
		writeError(w, http.StatusForbidden, "tenant_suspended",
			fmt.Sprintf("tenant %q is suspended: its requests are refused and its jobs paused until an operator resumes it", tenant))
	default:
		return false
	}
	return true
}

// opsTenantID returns the {id} of an operator route, answering 422 if it
// is not a tenant id.
func opsTenantID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !tenantid.Valid(id) {
		var f fieldErrors
		f.add("id", "not a tenant id: want %s", tenantid.Syntax)
		f.answer(w)
		return "", false
	}
	return id, true
}

func (a *API) putTenant(w http.ResponseWriter, r *http.Request) {
	id, ok := opsTenantID(w, r)
	if !ok {
		return
	}
	var req tenantRequest
	if !decodeJSON(w, r, a.limits.MaxJSONBytes, &req) {
		return
	}
	set, problems := req.settings()
	if problems.answer(w) {
		return
	}
	t, created, err := a.store.PutTenant(r.Context(), id, set)
	if err != nil {
		a.internalError(w, r, id, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/ops/tenants/"+id)
	}
	a.log.InfoContext(r.Context(), "tenant put", "tenant_id", id, "created", created)
	writeJSON(w, status, tenantView(t))
}

func (a *API) getOpsTenant(w http.ResponseWriter, r *http.Request) {
	id, ok := opsTenantID(w, r)
	if !ok {
		return
	}
	a.writeTenant(w, r, id)
}

func (a *API) writeTenant(w http.ResponseWriter, r *http.Request, id string) {
	t, err := a.store.Tenant(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no tenant %q", id))
	case err != nil:
		a.internalError(w, r, id, err)
	default:
		writeJSON(w, http.StatusOK, tenantView(t))
	}
}

func (a *API) listTenants(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := defaultPageSize
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxTenantPage {
			writeError(w, http.StatusUnprocessableEntity, "invalid_request", fmt.Sprintf("limit must be between 1 and %d", maxTenantPage))
			return
		}
		limit = n
	}
	after := q.Get("cursor")
	if after != "" && !tenantid.Valid(after) {
		writeError(w, http.StatusUnprocessableEntity, "invalid_request", "cursor is not one this API returned")
		return
	}
	tenants, err := a.store.Tenants(r.Context(), after, limit+1)
	if err != nil {
		a.internalError(w, r, "", err)
		return
	}
	page := tenantPage{Tenants: make([]TenantView, 0, min(len(tenants), limit))}
	for i, t := range tenants {
		if i == limit {
			page.NextCursor = tenants[limit-1].ID
			break
		}
		page.Tenants = append(page.Tenants, tenantView(t))
	}
	writeJSON(w, http.StatusOK, page)
}

func (a *API) suspendTenant(w http.ResponseWriter, r *http.Request) {
	id, ok := opsTenantID(w, r)
	if !ok {
		return
	}
	t, paused, err := a.store.SuspendTenant(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no tenant %q", id))
		return
	case err != nil:
		a.internalError(w, r, id, err)
		return
	}
	out := tenantSuspendView{TenantView: tenantView(t), PausedJobs: make([]string, len(paused))}
	for i, j := range paused {
		out.PausedJobs[i] = j.String()
	}
	a.log.InfoContext(r.Context(), "tenant suspended", "tenant_id", id, "paused_jobs", len(paused))
	writeJSON(w, http.StatusOK, out)
}

func (a *API) resumeTenant(w http.ResponseWriter, r *http.Request) {
	id, ok := opsTenantID(w, r)
	if !ok {
		return
	}
	t, err := a.store.ResumeTenant(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no tenant %q", id))
		return
	case err != nil:
		a.internalError(w, r, id, err)
		return
	}
	a.log.InfoContext(r.Context(), "tenant resumed", "tenant_id", id)
	writeJSON(w, http.StatusOK, tenantView(t))
}

// getOwnTenant serves GET /v1/tenant: a partner reads its own settings.
func (a *API) getOwnTenant(w http.ResponseWriter, r *http.Request, tenant string) {
	a.writeTenant(w, r, tenant)
}
