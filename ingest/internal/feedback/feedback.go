// Package feedback reads what providers report after a send — bounces,
// complaints, deliveries — in the formats they really send them: Amazon
// SES event publishing through an SNS HTTPS subscription, the SendGrid
// Event Webhook, and RFC 3464 delivery status notifications and RFC 5965
// ARF complaint reports for mail sent over SMTP. Each report becomes one
// store.Feedback per recipient, keyed by the delivery's ledger key that
// Herald put into the message (SES tags, SendGrid custom args, the VERP
// return path), never by what the report says about a tenant.
//
// Verifying a request and parsing it are apart: the verifiers (SNS, the
// SendGrid signature) decide whether a request came from the provider, the
// parsers only read bytes. Neither touches the database; the HTTP handler
// or the SMTP listener applies what they return.
package feedback

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"herald/ingest/internal/store"
	"herald/shared/event"
	"herald/shared/tenantid"
)

// The providers' names in store.Feedback.Provider: with the event id they
// identify a report, so each provider's ids are a namespace of their own.
const (
	ProviderSES      = "ses"
	ProviderSendGrid = "sendgrid"
	ProviderSMTP     = "smtp"
)

// Errors a request can be refused with; the HTTP handler maps each to a
// status code.
var (
	// ErrMalformed: the request is not what the provider sends (400).
	ErrMalformed = errors.New("malformed feedback")
	// ErrSignature: the request is unsigned, its signature is wrong or
	// expired, or it cannot be checked against a certificate Herald
	// trusts (401).
	ErrSignature = errors.New("feedback signature not valid")
	// ErrTopic: a correctly signed SNS message from a topic Herald was
	// not configured to take (403).
	ErrTopic = errors.New("SNS topic not allowed")
	// ErrUnavailable: the provider could not be reached to check or
	// confirm the request; the provider retries it (503).
	ErrUnavailable = errors.New("provider unavailable")
)

// Batch is what one request reported.
type Batch struct {
	// Events are the reports whose delivery key was recovered, ready for
	// store.ApplyFeedback.
	Events []store.Feedback
	// Unkeyed are reports of a kind Herald acts on whose delivery could
	// not be named: no Herald tags (mail sent through the same account by
	// something else), tags that do not decode, or a return path that is
	// not Herald's. They change nothing.
	Unkeyed []Unkeyed
	// Ignored counts reports of kinds Herald does not act on (opens,
	// clicks, sends, relays…).
	Ignored int
}

// Unkeyed is a report that names no delivery, and why.
type Unkeyed struct {
	EventID string
	Reason  string
}

func (b *Batch) add(provider, id string, key event.DeliveryKey, keyErr error, kind store.FeedbackKind) {
	id = eventID(id)
	if keyErr != nil {
		b.Unkeyed = append(b.Unkeyed, Unkeyed{EventID: id, Reason: keyErr.Error()})
		return
	}
	b.Events = append(b.Events, store.Feedback{Provider: provider, EventID: id, Key: key, Kind: kind})
}

// keyFromTags recovers a delivery key from the two tags the sender put on
// the message (event.TagTenant, event.TagDelivery). A tenant that is not a
// tenant id is refused here: no delivery could have it.
func keyFromTags(tenant, delivery string) (event.DeliveryKey, error) {
	if tenant == "" || delivery == "" {
		return event.DeliveryKey{}, fmt.Errorf("no %s and %s tags", event.TagTenant, event.TagDelivery)
	}
	k, err := event.ParseTags(tenant, delivery)
	if err != nil {
		return event.DeliveryKey{}, err
	}
	if !tenantid.Valid(k.Tenant) {
		return event.DeliveryKey{}, fmt.Errorf("tenant tag %q does not hold a tenant id", tenant)
	}
	return k, nil
}

// maxEventID is the longest event id the ledger stores.
const maxEventID = 255

// eventID keeps a provider's event id as it is if the ledger can store it,
// and otherwise stands in a hash of it, which is as stable across the
// provider's retries as the id itself.
func eventID(id string) string {
	if len(id) <= maxEventID {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "sha256:" + hex.EncodeToString(sum[:])
}
