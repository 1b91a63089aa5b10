package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"herald/ingest/internal/feedback"
	"herald/ingest/internal/store"
	"herald/shared/bodyrate"
)

// FeedbackConfig turns on the endpoints providers report bounces,
// complaints and deliveries to. Each is off (404) until configured.
type FeedbackConfig struct {
	// SNS verifies the messages of the SNS subscription that SES event
	// publishing posts to POST /v1/webhooks/ses.
	SNS *feedback.SNS
	// SendGrid verifies the Event Webhook's posts to POST
	// /v1/webhooks/sendgrid.
	SendGrid *feedback.SendGrid
	// SoftBounceLimit is how many soft bounces in a row suppress an
	// address; 0 is DefaultSoftBounceLimit.
	SoftBounceLimit int
}

// DefaultSoftBounceLimit suppresses an address after three soft bounces
// in a row: one is a full mailbox, three are a mailbox no one reads.
const DefaultSoftBounceLimit = 3

// Bounds of a provider's request. SNS delivers at most 256 KiB of message,
// which JSON escaping can double; SendGrid posts its events in batches of
// well under a megabyte.
const (
	maxSNSBytes      = 1 << 20
	maxSendGridBytes = 4 << 20
)

// feedbackCounts is the answer to a provider's request: what became of
// its reports. Providers only look at the status; the counts are for
// whoever reads the logs of a replay.
type feedbackCounts struct {
	Applied   int `json:"applied"`
	Duplicate int `json:"duplicate"`
	Unknown   int `json:"unknown"`
	Ignored   int `json:"ignored"`
}

func newFeedbackMetric(f promauto.Factory) *prometheus.CounterVec {
	return f.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_ingest_feedback_events_total",
		Help: "Provider reports (bounces, complaints, deliveries) by provider and what became of them: applied, duplicate, unknown (names no delivery) or ignored (a kind Herald does not act on).",
	}, []string{"provider", "result"})
}

// sesFeedback takes the messages of the SNS subscription SES event
// publishing posts to. Every message, confirmations included, must be
// signed by SNS for a configured topic; a SubscriptionConfirmation is
// confirmed, a Notification's SES event applied.
func (a *API) sesFeedback(w http.ResponseWriter, r *http.Request) {
	sns := a.cfg.Feedback.SNS
	if sns == nil {
		writeError(w, http.StatusNotFound, "not_found", "SES feedback is not configured")
		return
	}
	body, ok := readFeedback(w, r, maxSNSBytes)
	if !ok {
		return
	}
	m, err := sns.Verify(r.Context(), body)
	if err != nil {
		a.feedbackError(w, r, feedback.ProviderSES, err)
		return
	}
	switch m.Type {
	case feedback.SNSSubscriptionConfirmation:
		if err := sns.Confirm(r.Context(), m); err != nil {
			a.feedbackError(w, r, feedback.ProviderSES, err)
			return
		}
		a.log.InfoContext(r.Context(), "sns subscription confirmed", "topic_arn", m.TopicArn)
		writeJSON(w, http.StatusOK, feedbackCounts{})
	case feedback.SNSUnsubscribeConfirmation:
		// Nothing to do: resubscribing is for an operator to decide.
		a.log.WarnContext(r.Context(), "sns subscription ended", "topic_arn", m.TopicArn)
		writeJSON(w, http.StatusOK, feedbackCounts{})
	default:
		b, err := feedback.ParseSES(m.MessageID, m.Message)
		if err != nil {
			a.feedbackError(w, r, feedback.ProviderSES, err)
			return
		}
		a.applyFeedback(w, r, feedback.ProviderSES, b)
	}
}

// sendGridFeedback takes the SendGrid Event Webhook's posts, signed with
// the account's key.
func (a *API) sendGridFeedback(w http.ResponseWriter, r *http.Request) {
	v := a.cfg.Feedback.SendGrid
	if v == nil {
		writeError(w, http.StatusNotFound, "not_found", "SendGrid feedback is not configured")
		return
	}
	body, ok := readFeedback(w, r, maxSendGridBytes)
	if !ok {
		return
	}
	if err := v.Verify(r.Header.Get(feedback.SendGridSignatureHeader), r.Header.Get(feedback.SendGridTimestampHeader), body); err != nil {
		a.feedbackError(w, r, feedback.ProviderSendGrid, err)
		return
	}
	b, err := feedback.ParseSendGrid(body)
	if err != nil {
		a.feedbackError(w, r, feedback.ProviderSendGrid, err)
		return
	}
	a.applyFeedback(w, r, feedback.ProviderSendGrid, b)
}

// readFeedback reads a provider's request body of at most limit bytes,
// answering the error itself.
func readFeedback(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return body, true
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body larger than %d bytes", tooBig.Limit))
	case errors.Is(err, bodyrate.ErrTooSlow):
		writeTooSlow(w, err)
	default:
		writeError(w, http.StatusBadRequest, "invalid_feedback", "could not read the body")
	}
	return nil, false
}

// feedbackError answers a request that was refused: a provider retries
// 5xx answers, so only what may succeed later (a certificate that could
// not be fetched) is one.
func (a *API) feedbackError(w http.ResponseWriter, r *http.Request, provider string, err error) {
	switch {
	case errors.Is(err, feedback.ErrSignature):
		a.log.WarnContext(r.Context(), "feedback refused", "provider", provider, "error", err)
		writeError(w, http.StatusUnauthorized, "invalid_signature", err.Error())
	case errors.Is(err, feedback.ErrTopic):
		a.log.WarnContext(r.Context(), "feedback refused", "provider", provider, "error", err)
		writeError(w, http.StatusForbidden, "topic_not_allowed", err.Error())
	case errors.Is(err, feedback.ErrMalformed):
		writeError(w, http.StatusBadRequest, "invalid_feedback", err.Error())
	case errors.Is(err, feedback.ErrUnavailable):
		a.log.WarnContext(r.Context(), "feedback not checked", "provider", provider, "error", err)
		w.Header().Set("Retry-After", "30")
		writeError(w, http.StatusServiceUnavailable, "provider_unavailable", err.Error())
	default:
		a.internalError(w, r, "", err)
	}
}

// applyFeedback applies a verified request's reports one by one. A report
// that names no delivery changes nothing; an error stops the request with
// a 500, and the provider's retry finds what was applied duplicate.
func (a *API) applyFeedback(w http.ResponseWriter, r *http.Request, provider string, b feedback.Batch) {
	ctx := r.Context()
	limit := a.cfg.Feedback.SoftBounceLimit
	if limit == 0 {
		limit = DefaultSoftBounceLimit
	}
	c := feedbackCounts{Ignored: b.Ignored, Unknown: len(b.Unkeyed)}
	for _, u := range b.Unkeyed {
		a.log.DebugContext(ctx, "feedback names no delivery", "provider", provider, "event_id", u.EventID, "reason", u.Reason)
	}
	for _, f := range b.Events {
		res, err := a.store.ApplyFeedback(ctx, f, limit)
		switch {
		case errors.Is(err, store.ErrInvalidFeedback):
			a.log.DebugContext(ctx, "feedback names no delivery", "provider", provider, "event_id", f.EventID, "reason", err.Error())
			res = store.FeedbackUnknown
		case err != nil:
			a.internalError(w, r, f.Key.Tenant, err)
			return
		}
		switch res {
		case store.FeedbackApplied:
			c.Applied++
		case store.FeedbackDuplicate:
			c.Duplicate++
		default:
			c.Unknown++
		}
	}
	for result, n := range map[string]int{"applied": c.Applied, "duplicate": c.Duplicate, "unknown": c.Unknown, "ignored": c.Ignored} {
		a.feedbackEvents.WithLabelValues(provider, result).Add(float64(n))
	}
	a.log.InfoContext(ctx, "feedback received", "provider", provider,
		"applied", c.Applied, "duplicate", c.Duplicate, "unknown", c.Unknown, "ignored", c.Ignored)
	writeJSON(w, http.StatusOK, c)
}
