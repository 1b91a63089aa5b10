package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"herald/ingest/internal/ndjson"
	"herald/ingest/internal/store"
	"herald/shared/bodyrate"
)

// rowFunc validates one decoded line and turns it into a staging row (the
// line number first). Problems are returned as line errors.
type rowFunc[T any] func(line int64, v *T) ([]any, []ndjson.LineError)

// uploadRetryAfter is the Retry-After, in seconds, of an upload refused
// because the tenant has as many in progress as it may.
const uploadRetryAfter = 5

// bulk serves an NDJSON upload of dataset d. The whole body is read and
// every line checked first, the good rows staged (see store.Staging), and
// only then are they stored, in one short transaction: a bad line anywhere
// stores nothing and is reported by number, and a client slow to send
// holds no database connection. Each tenant has at most
// Limits.TenantUploads uploads in progress.
func bulk[T any](a *API, d store.Dataset, toRow rowFunc[T]) tenantHandler {
	return func(w http.ResponseWriter, r *http.Request, tenant string) {
		if !requireContentType(w, r, "application/x-ndjson", "application/jsonl") {
			return
		}
		if !a.uploads.acquire(tenant) {
			w.Header().Set("Retry-After", strconv.Itoa(uploadRetryAfter))
			writeError(w, http.StatusTooManyRequests, "too_many_uploads",
				fmt.Sprintf("this tenant has %d uploads in progress, as many as it may; retry when one has been answered", a.limits.TenantUploads))
			return
		}
		defer a.uploads.release(tenant)
		staged := store.NewStaging(d, a.cfg.UploadDir)
		defer staged.Close()
		body := ndjson.NewReader(http.MaxBytesReader(w, r.Body, a.limits.MaxBulkBytes), a.limits.MaxLineBytes)
		lines, err := stageLines(body, toRow, staged, a.limits.MaxLineErrors)
		var bad *lineErrors
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("upload larger than %d bytes; split it", tooBig.Limit))
			return
		case errors.Is(err, bodyrate.ErrTooSlow):
			writeTooSlow(w, err)
			return
		case errors.As(err, &bad):
			msg := fmt.Sprintf("%d bad lines, nothing stored; first: %v", len(bad.errs), bad.errs[0])
			if bad.truncated {
				msg = fmt.Sprintf("more than %d bad lines, nothing stored; first: %v", len(bad.errs), bad.errs[0])
			}
			writeErrorDetails(w, bad.status(), "invalid_lines", msg, bad.errs)
			return
		case err != nil:
			a.internalError(w, r, tenant, err)
			return
		}
		n, err := a.store.Load(r.Context(), tenant, staged)
		if err != nil {
			a.internalError(w, r, tenant, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"dataset": d.Name, "lines": lines, "upserted": n})
	}
}

// stageLines reads every line of an upload, checks it and stages its row.
// After the first bad line nothing more is staged, but reading goes on to
// report up to maxErrs bad lines, as *lineErrors. It returns the number of
// lines read.
func stageLines[T any](r *ndjson.Reader, toRow rowFunc[T], staged *store.Staging, maxErrs int) (int64, error) {
	var lines int64
	bad := &lineErrors{}
	add := func(errs ...ndjson.LineError) bool {
		for _, e := range errs {
			if len(bad.errs) >= maxErrs {
				bad.truncated = true
				return false
			}
			bad.errs = append(bad.errs, e)
		}
		return true
	}
	for {
		var v T
		err := r.Next(&v)
		var le ndjson.LineError
		switch {
		case errors.Is(err, io.EOF):
			if len(bad.errs) > 0 {
				return lines, bad
			}
			return lines, nil
		case errors.As(err, &le):
			lines++
			if !add(le) {
				return lines, bad
			}
			continue
		case err != nil:
			return lines, err
		}
		lines++
		row, problems := toRow(r.Line(), &v)
		if len(problems) > 0 {
			if !add(problems...) {
				return lines, bad
			}
			continue
		}
		if len(bad.errs) > 0 {
			continue // keep looking for bad lines, but stage nothing more
		}
		if err := staged.Add(row...); err != nil {
			return lines, err
		}
	}
}

type lineErrors struct {
	errs      []ndjson.LineError
	truncated bool
}

func (e *lineErrors) Error() string { return fmt.Sprintf("%d bad lines", len(e.errs)) }

// status is 400 if a line is malformed, as for a malformed JSON body, and
// 422 if every bad line is well formed with values that are refused.
func (e *lineErrors) status() int {
	for _, le := range e.errs {
		if le.Malformed {
			return http.StatusBadRequest
		}
	}
	return http.StatusUnprocessableEntity
}

// checker collects the problems of one line.
type checker struct {
	line int64
	errs []ndjson.LineError
}

func (c *checker) add(field, format string, args ...any) {
	c.errs = append(c.errs, ndjson.LineError{Line: c.line, Field: field, Message: fmt.Sprintf(format, args...)})
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$`)

func (c *checker) id(field, v string) {
	if !idPattern.MatchString(v) {
		c.add(field, "must be 1-128 characters of letters, digits and _ . : @ -, starting with a letter or digit")
	}
}

func (c *checker) text(field, v string, max int, required bool) {
	switch {
	case required && strings.TrimSpace(v) == "":
		c.add(field, "is required")
	case len(v) > max:
		c.add(field, "longer than %d bytes", max)
	case !utf8.ValidString(v):
		c.add(field, "is not valid UTF-8")
	case strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		c.add(field, "contains control characters")
	}
}

func (c *checker) url(field, v string, required bool) {
	if v == "" {
		if required {
			c.add(field, "is required")
		}
		return
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || len(v) > 2048 {
		c.add(field, "must be an absolute http(s) URL of at most 2048 bytes")
	}
}

// email checks an address and returns its normalized (lower-cased) form.
func (c *checker) email(field, v string) string {
	addr, err := mail.ParseAddress(v)
	if err != nil || addr.Address != v || len(v) > 254 || !strings.Contains(v, "@") {
		c.add(field, "%q is not a valid email address", v)
		return ""
	}
	return strings.ToLower(v)
}

type customerLine struct {
	ID         string          `json:"id"`
	Email      string          `json:"email"`
	FirstName  string          `json:"first_name"`
	LastName   string          `json:"last_name"`
	Locale     string          `json:"locale"`
	Timezone   string          `json:"timezone"`
	Subscribed *bool           `json:"subscribed"`
	Consent    *consent        `json:"consent"`
	Attributes json.RawMessage `json:"attributes"`
}

// consent is a customer's consent per channel; "email" is the same as
// "subscribed".
type consent struct {
	Email  *bool `json:"email,omitempty"`
	Onsite *bool `json:"onsite,omitempty"`
	Ads    *bool `json:"ads,omitempty"`
}

var localePattern = regexp.MustCompile(`^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$`)

// knownZones caches time zone names already found valid: loading a zone
// reads the zone database, too slow to repeat for every line.
var knownZones sync.Map

func validZone(name string) bool {
	if _, ok := knownZones.Load(name); ok {
		return true
	}
	if len(name) > 64 || strings.HasPrefix(name, "/") || strings.Contains(name, "..") {
		return false
	}
	if _, err := time.LoadLocation(name); err != nil {
		return false
	}
	knownZones.Store(name, true)
	return true
}

func customerRow(line int64, v *customerLine) ([]any, []ndjson.LineError) {
	c := checker{line: line}
	c.id("id", v.ID)
	email := c.email("email", v.Email)
	c.text("first_name", v.FirstName, 200, false)
	c.text("last_name", v.LastName, 200, false)
	if v.Locale == "" {
		v.Locale = "en"
	} else if !localePattern.MatchString(v.Locale) || len(v.Locale) > 35 {
		c.add("locale", "must be a language tag like en or en-GB")
	}
	if v.Timezone == "" {
		v.Timezone = "UTC"
	} else if v.Timezone == "Local" || !validZone(v.Timezone) {
		c.add("timezone", "must be an IANA time zone like Europe/Paris")
	}
	subscribed := v.Subscribed == nil || *v.Subscribed
	consentJSON := []byte("{}")
	if v.Consent != nil {
		if v.Consent.Email != nil {
			if v.Subscribed != nil && *v.Subscribed != *v.Consent.Email {
				c.add("consent.email", "contradicts subscribed")
			}
			subscribed = *v.Consent.Email
		}
		consentJSON, _ = json.Marshal(v.Consent)
	}
	attrs := []byte("{}")
	if len(v.Attributes) > 0 && string(v.Attributes) != "null" {
		if v.Attributes[0] != '{' {
			c.add("attributes", "must be a JSON object")
		} else if len(v.Attributes) > 16<<10 {
			c.add("attributes", "larger than 16 KiB")
		}
		attrs = v.Attributes
	}
	return []any{line, v.ID, email, v.FirstName, v.LastName, v.Locale, v.Timezone, subscribed, string(consentJSON), string(attrs)}, c.errs
}

type catalogLine struct {
	ID             string   `json:"id"`
	Title          string   `json:"title"`
	Brand          string   `json:"brand"`
	URL            string   `json:"url"`
	ImageURL       string   `json:"image_url"`
	PriceCents     *int64   `json:"price_cents"`
	CompareAtCents int64    `json:"compare_at_cents"`
	Currency       string   `json:"currency"`
	InStock        *bool    `json:"in_stock"`
	Sales30d       int64    `json:"sales_30d"`
	Rating         float32  `json:"rating"`
	Reviews        int32    `json:"reviews"`
	Categories     []string `json:"categories"`
}

var currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)

// maxCategories bounds one item's categories.
const maxCategories = 20

func catalogRow(line int64, v *catalogLine) ([]any, []ndjson.LineError) {
	c := checker{line: line}
	c.id("id", v.ID)
	c.text("title", v.Title, 500, true)
	c.text("brand", v.Brand, 200, false)
	c.url("url", v.URL, true)
	c.url("image_url", v.ImageURL, false)
	if v.PriceCents == nil || *v.PriceCents < 0 {
		c.add("price_cents", "is required and must not be negative")
	}
	if v.CompareAtCents < 0 {
		c.add("compare_at_cents", "must not be negative")
	}
	if v.Currency == "" {
		v.Currency = "USD"
	} else if !currencyPattern.MatchString(v.Currency) {
		c.add("currency", "must be an ISO 4217 code like USD")
	}
	if v.Sales30d < 0 {
		c.add("sales_30d", "must not be negative")
	}
	if v.Rating < 0 || v.Rating > 5 {
		c.add("rating", "must be between 0 and 5")
	}
	if v.Reviews < 0 {
		c.add("reviews", "must not be negative")
	}
	if len(v.Categories) > maxCategories {
		c.add("categories", "more than %d categories", maxCategories)
	}
	for i, cat := range v.Categories {
		c.text(fmt.Sprintf("categories[%d]", i), cat, 100, true)
	}
	if len(c.errs) > 0 {
		return nil, c.errs
	}
	if v.Categories == nil {
		v.Categories = []string{}
	}
	inStock := v.InStock == nil || *v.InStock
	return []any{line, v.ID, v.Title, v.Brand, v.URL, v.ImageURL, *v.PriceCents, v.CompareAtCents, v.Currency,
		inStock, v.Sales30d, v.Rating, v.Reviews, v.Categories}, nil
}

type recommendationLine struct {
	CustomerID   string    `json:"customer_id"`
	ItemIDs      []string  `json:"item_ids"`
	Scores       []float32 `json:"scores"`
	ModelVersion string    `json:"model_version"`
}

// maxRecommended bounds one customer's ranked list.
const maxRecommended = 100

func recommendationRow(line int64, v *recommendationLine) ([]any, []ndjson.LineError) {
	c := checker{line: line}
	c.id("customer_id", v.CustomerID)
	if len(v.ItemIDs) > maxRecommended {
		c.add("item_ids", "more than %d items", maxRecommended)
	}
	for i, id := range v.ItemIDs {
		if !idPattern.MatchString(id) {
			c.add(fmt.Sprintf("item_ids[%d]", i), "is not a valid item id")
			break
		}
	}
	if v.Scores != nil && len(v.Scores) != len(v.ItemIDs) {
		c.add("scores", "must have one score per item id (%d), or be omitted", len(v.ItemIDs))
	}
	c.text("model_version", v.ModelVersion, 100, false)
	if v.ItemIDs == nil {
		v.ItemIDs = []string{}
	}
	if v.Scores == nil {
		v.Scores = []float32{}
	}
	return []any{line, v.CustomerID, v.ItemIDs, v.Scores, v.ModelVersion}, c.errs
}

type suppressionLine struct {
	Email  string `json:"email"`
	Reason string `json:"reason"`
}

func suppressionRow(line int64, v *suppressionLine) ([]any, []ndjson.LineError) {
	c := checker{line: line}
	email := c.email("email", v.Email)
	if v.Reason == "" {
		v.Reason = "partner"
	}
	c.text("reason", v.Reason, 200, false)
	return []any{line, email, v.Reason}, c.errs
}

type eventLine struct {
	CustomerID string     `json:"customer_id"`
	Kind       string     `json:"kind"`
	ItemID     string     `json:"item_id"`
	Quantity   *int32     `json:"quantity"`
	OccurredAt *time.Time `json:"occurred_at"`
}

// Bounds of an event.
const (
	maxEventAge    = 400 * 24 * time.Hour
	maxEventFuture = time.Hour
	maxQuantity    = 10_000
)

var eventKinds = []string{"view", "add_to_cart", "purchase"}

// eventRow validates one customer event. Its time must be within the
// retention window and not ahead of the clock (by more than a little
// skew): the events table is partitioned by month of occurrence.
func (a *API) eventRow(line int64, v *eventLine) ([]any, []ndjson.LineError) {
	c := checker{line: line}
	c.id("customer_id", v.CustomerID)
	c.id("item_id", v.ItemID)
	if !slices.Contains(eventKinds, v.Kind) {
		c.add("kind", "must be one of %s", strings.Join(eventKinds, ", "))
	}
	qty := int32(1)
	if v.Quantity != nil {
		qty = *v.Quantity
		if qty < 1 || qty > maxQuantity {
			c.add("quantity", "must be between 1 and %d", maxQuantity)
		}
	}
	now := a.now()
	switch {
	case v.OccurredAt == nil:
		c.add("occurred_at", "is required (RFC 3339, like 2026-11-27T09:30:00Z)")
	case v.OccurredAt.Before(now.Add(-maxEventAge)):
		c.add("occurred_at", "is older than %d days", int(maxEventAge.Hours()/24))
	case v.OccurredAt.After(now.Add(maxEventFuture)):
		c.add("occurred_at", "is in the future")
	}
	if len(c.errs) > 0 {
		return nil, c.errs
	}
	return []any{line, v.CustomerID, v.Kind, v.ItemID, qty, v.OccurredAt.UTC()}, nil
}
