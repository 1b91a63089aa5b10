// Package api is ingest's partner HTTP API: bulk NDJSON uploads of
// customers, catalog items, recommendations, events and suppressions, and
// their deletion; versioned templates; jobs and their lifecycle; and the
// public one-click unsubscribe and provider webhook endpoints; and the
// operators' tenant administration under /v1/ops/tenants. The tenant of
// every request is the X-Tenant-ID header that the edge sets from the
// partner's verified token; ingest trusts that header and nothing else,
// which is safe only because nothing but the edge can reach it. The tenant
// must be one an operator created and has not suspended (else 403).
package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"herald/ingest/internal/store"
	"herald/ingest/internal/strictjson"
	"herald/shared/bodyrate"
	"herald/shared/emailtemplate"
	"herald/shared/tenantid"
	"herald/shared/unsubscribe"
)

// TenantHeader carries the verified tenant from the edge.
const TenantHeader = "X-Tenant-ID"

// Limits bound every input.
type Limits struct {
	MaxBulkBytes   int64         // one NDJSON upload
	MaxJSONBytes   int64         // one JSON request
	MaxLineBytes   int           // one NDJSON line
	MaxLineErrors  int           // line errors reported before an upload is abandoned
	MaxAudienceIDs int           // explicit customer ids in one job
	MaxDeadline    time.Duration // furthest deadline after a job starts
	MaxSchedule    time.Duration // furthest send_at after submission
	// TenantRate and TenantBurst bound each tenant's requests per second
	// (per ingest replica); 0 disables the limit.
	TenantRate  float64
	TenantBurst int
	// TemplateBudget bounds every render of a partner template here: the
	// sample render at upload and previews. It is the one render sends
	// with; a zero Budget is emailtemplate.DefaultBudget.
	TemplateBudget emailtemplate.Budget
	// TenantUploads bounds each tenant's NDJSON uploads in progress at
	// once (per ingest replica); 0 disables the limit.
	TenantUploads int
	// Body is the slowest a request body may arrive.
	Body bodyrate.Rule
}

// DefaultLimits suit the partner API.
var DefaultLimits = Limits{
	MaxBulkBytes:   2 << 30,
	MaxJSONBytes:   1 << 20,
	MaxLineBytes:   64 << 10,
	MaxLineErrors:  100,
	MaxAudienceIDs: 10_000,
	MaxDeadline:    7 * 24 * time.Hour,
	MaxSchedule:    30 * 24 * time.Hour,
	TenantRate:     100,
	TenantBurst:    200,
	TemplateBudget: emailtemplate.DefaultBudget,
	TenantUploads:  4,
	Body:           bodyrate.Rule{BytesPerSecond: 1024, Grace: 10 * time.Second},
}

// Config is what the API needs besides the store.
type Config struct {
	Limits Limits
	// Unsubscribe verifies one-click unsubscribe tokens; without it the
	// public /u/ routes answer 404.
	Unsubscribe *unsubscribe.Signer
	// WebhookSecret authenticates the ESP's bounce and complaint webhook;
	// empty disables it.
	WebhookSecret string
	// UploadDir holds uploads' checked rows until they are stored, beyond
	// what is kept in memory; empty means the system's temporary directory.
	UploadDir string
	// Feedback turns on the providers' bounce and complaint endpoints.
	Feedback FeedbackConfig
}

// API serves the partner routes.
type API struct {
	store    *store.Store
	log      *slog.Logger
	limits   Limits
	cfg      Config
	now      func() time.Time
	limiter  *tenantLimiter
	uploads  *tenantSlots
	routes   []string
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// feedbackEvents counts providers' reports by what became of them.
	feedbackEvents *prometheus.CounterVec
}

// New returns the API over s, registering its metrics on reg.
func New(s *store.Store, log *slog.Logger, reg prometheus.Registerer, cfg Config) *API {
	f := promauto.With(reg)
	if cfg.Limits.TemplateBudget == (emailtemplate.Budget{}) {
		cfg.Limits.TemplateBudget = emailtemplate.DefaultBudget
	}
	return &API{
		store:   s,
		log:     log,
		limits:  cfg.Limits,
		cfg:     cfg,
		now:     time.Now,
		limiter: newTenantLimiter(cfg.Limits.TenantRate, cfg.Limits.TenantBurst),
		uploads: newTenantSlots(cfg.Limits.TenantUploads),
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_ingest_requests_total",
			Help: "Partner API requests by route and status code.",
		}, []string{"route", "code"}),
		latency: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_ingest_request_duration_seconds",
			Help:    "Partner API request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}, []string{"route"}),
		feedbackEvents: newFeedbackMetric(f),
	}
}

// Handler returns the routes.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	a.routes = nil
	a.public(mux, "GET /v1/openapi.json", serveOpenAPI)
	a.handle(mux, "GET /v1/profile", a.getProfile)
	a.handle(mux, "PUT /v1/profile", a.putProfile)
	a.handle(mux, "POST /v1/customers", bulk(a, store.Customers, customerRow))
	a.handle(mux, "GET /v1/customers/{id}", a.getCustomer)
	a.handle(mux, "DELETE /v1/customers/{id}", a.eraseCustomer)
	a.handle(mux, "POST /v1/catalog/items", bulk(a, store.CatalogItems, catalogRow))
	a.handle(mux, "DELETE /v1/catalog/items/{id}", a.deleteCatalogItem)
	a.handle(mux, "POST /v1/recommendations", bulk(a, store.Recommendations, recommendationRow))
	a.handle(mux, "POST /v1/events", bulk(a, store.Events, a.eventRow))
	a.handle(mux, "POST /v1/suppressions", bulk(a, store.Suppressions, suppressionRow))
	a.handle(mux, "DELETE /v1/suppressions/{email}", a.deleteSuppression)
	a.handle(mux, "POST /v1/templates/{id}/versions", a.addTemplate)
	a.handle(mux, "GET /v1/templates/{id}/versions", a.listTemplateVersions)
	a.handle(mux, "GET /v1/templates/{id}/versions/{version}", a.getTemplate)
	a.handle(mux, "POST /v1/templates/{id}/versions/{version}/preview", a.previewTemplate)
	a.handle(mux, "GET /v1/catalog-triggers", a.listCatalogTriggers)
	a.handle(mux, "PUT /v1/catalog-triggers/{kind}", a.putCatalogTrigger)
	a.handle(mux, "DELETE /v1/catalog-triggers/{kind}", a.deleteCatalogTrigger)
	a.handle(mux, "POST /v1/jobs", a.createJob)
	a.handle(mux, "GET /v1/jobs", a.listJobs)
	a.handle(mux, "GET /v1/jobs/{id}", a.getJob)
	a.handle(mux, "POST /v1/jobs/{id}/pause", a.jobAction(store.Pause))
	a.handle(mux, "POST /v1/jobs/{id}/resume", a.jobAction(store.Resume))
	a.handle(mux, "POST /v1/jobs/{id}/cancel", a.jobAction(store.Cancel))
	a.handle(mux, "POST /v1/jobs/{id}/redrive", a.redriveJob)
	a.handle(mux, "GET /v1/onsite/{customer}", a.getOnsite)
	a.handle(mux, "GET /v1/tenant", a.getOwnTenant)
	a.operator(mux, "GET /v1/ops/tenants", a.listTenants)
	a.operator(mux, "GET /v1/ops/tenants/{id}", a.getOpsTenant)
	a.operator(mux, "PUT /v1/ops/tenants/{id}", a.putTenant)
	a.operator(mux, "POST /v1/ops/tenants/{id}/suspend", a.suspendTenant)
	a.operator(mux, "POST /v1/ops/tenants/{id}/resume", a.resumeTenant)
	a.public(mux, "GET /u/{token}", a.unsubscribePage)
	a.public(mux, "POST /u/{token}", a.unsubscribe)
	a.public(mux, "POST /v1/webhooks/esp", a.espWebhook)
	a.public(mux, "POST /v1/webhooks/ses", a.sesFeedback)
	a.public(mux, "POST /v1/webhooks/sendgrid", a.sendGridFeedback)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// Routes lists the method and path of every route Handler serves, as
// "METHOD /path/{param}".
func (a *API) Routes() []string {
	if a.routes == nil {
		a.Handler()
	}
	return slices.Clone(a.routes)
}

// tenantHandler is a route that runs for a known tenant.
type tenantHandler func(w http.ResponseWriter, r *http.Request, tenant string)

// public serves a route that needs no tenant: the edge lets it through
// without a partner token, so it makes its own checks.
func (a *API) public(mux *http.ServeMux, pattern string, h http.HandlerFunc) {
	a.routes = append(a.routes, pattern)
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		defer func() {
			a.requests.WithLabelValues(pattern, strconv.Itoa(rec.code)).Inc()
			a.latency.WithLabelValues(pattern).Observe(time.Since(start).Seconds())
		}()
		h(rec, bodyrate.Limit(rec, r, a.limits.Body))
	})
}

func (a *API) handle(mux *http.ServeMux, pattern string, h tenantHandler) {
	a.routes = append(a.routes, pattern)
	params := pathParams(pattern)
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		defer func() {
			a.requests.WithLabelValues(pattern, strconv.Itoa(rec.code)).Inc()
			a.latency.WithLabelValues(pattern).Observe(time.Since(start).Seconds())
		}()
		// Exactly one header, exactly a tenant id: the edge sets one from
		// the token and refuses a claim that is not an id, so anything
		// else did not come from the edge.
		tenants := r.Header.Values(TenantHeader)
		if len(tenants) == 0 {
			writeError(rec, http.StatusUnauthorized, "unauthenticated", "missing "+TenantHeader+": requests must come through the edge, which sets it from the partner's token")
			return
		}
		tenant := tenants[0]
		if len(tenants) > 1 || !tenantid.Valid(tenant) {
			writeError(rec, http.StatusUnauthorized, "unauthenticated", "malformed "+TenantHeader+": want one, of "+tenantid.Syntax)
			return
		}
		if wait, ok := a.limiter.allow(tenant, a.now()); !ok {
			rec.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			writeError(rec, http.StatusTooManyRequests, "rate_limited",
				fmt.Sprintf("more than %g requests a second for this tenant; retry after %s", a.limits.TenantRate, wait.Round(time.Millisecond)))
			return
		}
		if !a.resolveTenant(rec, r, tenant) {
			return
		}
		if storableParams(rec, r, params) {
			h(rec, bodyrate.Limit(rec, r, a.limits.Body), tenant)
		}
	})
}

var wildcard = regexp.MustCompile(`\{([A-Za-z_]+)(?:\.\.\.)?\}`)

// pathParams lists the names of a route pattern's wildcards.
func pathParams(pattern string) []string {
	var names []string
	for _, m := range wildcard.FindAllStringSubmatch(pattern, -1) {
		names = append(names, m[1])
	}
	return names
}

// storableParams answers 422 for a path parameter that no text column can
// hold (invalid UTF-8 or NUL, which PostgreSQL refuses) and reports
// whether every parameter is fine. Each handler then checks its own
// parameters' syntax.
func storableParams(w http.ResponseWriter, r *http.Request, params []string) bool {
	var f fieldErrors
	for _, name := range params {
		switch v := r.PathValue(name); {
		case !utf8.ValidString(v):
			f.add(name, "path parameter is not valid UTF-8")
		case strings.IndexByte(v, 0) >= 0:
			f.add(name, "path parameter contains NUL, which PostgreSQL cannot store")
		}
	}
	return !f.answer(w)
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (bodyrate sets
// its read deadline).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// errorBody is every error response: a stable code for programs, a message
// for people, and per-line or per-field details where there are some.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details any    `json:"details,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeErrorDetails(w, status, code, message, nil)
}

func writeErrorDetails(w http.ResponseWriter, status int, code, message string, details any) {
	writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: message, Details: details}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// requireContentType answers 415 unless the request body has one of the
// given media types.
func requireContentType(w http.ResponseWriter, r *http.Request, types ...string) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err == nil {
		for _, t := range types {
			if mt == t {
				return true
			}
		}
	}
	writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type",
		fmt.Sprintf("Content-Type must be %s", types[0]))
	return false
}

// decodeJSON reads one JSON object of at most limit bytes into v, strictly
// (see strictjson): malformed JSON, duplicate keys, unknown fields and
// trailing data are 400; a value PostgreSQL could not store is 422 naming
// the field. It answers the error itself and reports whether decoding
// succeeded.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	if !requireContentType(w, r, "application/json") {
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err == nil {
		err = strictjson.Decode(body, v)
	}
	if err == nil {
		return true
	}
	var tooBig *http.MaxBytesError
	var refused *strictjson.ValueError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body larger than %d bytes", tooBig.Limit))
	case errors.Is(err, bodyrate.ErrTooSlow):
		writeTooSlow(w, err)
	case errors.As(err, &refused):
		var f fieldErrors
		f.add(refused.Path, "%s", refused.Reason)
		f.answer(w)
	default:
		writeError(w, http.StatusBadRequest, "invalid_json", describeJSONError(err))
	}
	return false
}

// writeTooSlow answers a request whose body fell behind the minimum rate.
func writeTooSlow(w http.ResponseWriter, err error) {
	w.Header().Set("Connection", "close")
	writeError(w, http.StatusRequestTimeout, "body_too_slow", err.Error())
}

func describeJSONError(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("invalid JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q must be %s, not %s", typ.Field, typ.Type, typ.Value)
	default:
		return err.Error()
	}
}

// fieldError is one problem with one field of a JSON request.
type fieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

type fieldErrors []fieldError

func (f *fieldErrors) add(field, format string, args ...any) {
	*f = append(*f, fieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (f fieldErrors) answer(w http.ResponseWriter) bool {
	if len(f) == 0 {
		return false
	}
	writeErrorDetails(w, http.StatusUnprocessableEntity, "invalid_request", fmt.Sprintf("%s: %s", f[0].Field, f[0].Message), f)
	return true
}

func (a *API) internalError(w http.ResponseWriter, r *http.Request, tenant string, err error) {
	a.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "tenant_id", tenant, "error", err)
	writeError(w, http.StatusInternalServerError, "internal", "internal error; the request may be retried")
}
