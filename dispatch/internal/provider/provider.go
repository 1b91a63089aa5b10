// Package provider is the contract between dispatch and the services that
// actually deliver: SMTP relays, ESP HTTP APIs, ad platforms. Every attempt
// ends in one of a few outcomes, and the difference between them is what
// keeps a retry from becoming a duplicate.
package provider

import (
	"context"
	"fmt"
	"time"
)

// Outcome classifies one delivery attempt.
type Outcome int

// The outcomes of an attempt.
const (
	// Sent: the provider accepted the message.
	Sent Outcome = iota
	// Deferred: the provider refused for now, or the attempt failed before
	// the provider could have accepted anything. Retry later.
	Deferred
	// Throttled: the provider asked us to slow down (HTTP 429, SMTP 421 or
	// 4.7.x). Retry later, and slow down.
	Throttled
	// Failed: the provider refused for good (a 5xx about this message).
	Failed
	// Unknown: the attempt may or may not have been accepted (no answer
	// after the whole message went out). Never retried blindly unless the
	// provider is idempotent.
	Unknown
)

func (o Outcome) String() string {
	switch o {
	case Sent:
		return "sent"
	case Deferred:
		return "deferred"
	case Throttled:
		return "throttled"
	case Failed:
		return "failed"
	case Unknown:
		return "unknown"
	default:
		return fmt.Sprintf("outcome(%d)", int(o))
	}
}

// Result is the outcome of one attempt with the provider's words.
type Result struct {
	Outcome Outcome
	// Code is the provider's status (SMTP reply code or HTTP status), 0 if none.
	Code int
	// Enhanced is the SMTP enhanced status code ("5.1.1"), if given.
	Enhanced string
	// Reason is the provider's text or the transport error.
	Reason string
	// HardBounce marks a permanent failure that means the address does not
	// exist or refuses all mail; the address is then suppressed.
	HardBounce bool
}

// Message is one delivery.
type Message struct {
	// Key is the ledger key, unique per (tenant, job, channel, customer).
	// Providers that take an idempotency key are given this one, so that a
	// retry can never be delivered twice.
	Key string
	// MessageID is the Message-ID header value, without brackets.
	MessageID string
	// From is the envelope sender, To the recipient address.
	From string
	To   string
	// Body is the complete message (RFC 5322 for email), or the channel's
	// payload (JSON for onsite and ads).
	Body []byte
	// Tenant, CustomerID and JobID name the delivery for providers that
	// store per customer (onsite).
	Tenant     string
	CustomerID string
	JobID      string
	// ExpiresAt is when the message stops being worth showing (the job's
	// deadline unless the job says otherwise).
	ExpiresAt time.Time
}

// Sender delivers through one provider.
type Sender interface {
	// Name identifies the provider in logs, metrics and the ledger.
	Name() string
	// Send attempts every message and returns one result per message, in
	// order. It may send them concurrently or in one request.
	Send(ctx context.Context, msgs []*Message) []Result
	// Idempotent reports whether the provider deduplicates by Key, which
	// makes retrying an Unknown outcome safe.
	Idempotent() bool
}

// Reconciler asks a provider which Message-IDs it holds, to settle
// Unknown outcomes of providers that are not idempotent.
type Reconciler interface {
	Found(ctx context.Context, messageIDs []string) (map[string]bool, error)
}
