package store

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"regexp"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"herald/shared/event"
)

// FeedbackKind is what a provider reported about a delivery after the send.
type FeedbackKind string

// The kinds of feedback, from the least to the gravest: a delivery keeps the
// gravest it was ever reported.
const (
	SoftBounce FeedbackKind = "soft_bounce" // refused for now: mailbox full, greylisted
	Delivered  FeedbackKind = "delivered"   // the receiving server took it
	Bounced    FeedbackKind = "bounced"     // refused for good: no such mailbox
	Complained FeedbackKind = "complained"  // the recipient marked it as spam
)

// FeedbackResult says what applying a report did.
type FeedbackResult string

// What ApplyFeedback did with a report.
const (
	// FeedbackApplied: recorded and acted on.
	FeedbackApplied FeedbackResult = "applied"
	// FeedbackDuplicate: the provider's event id was applied before.
	FeedbackDuplicate FeedbackResult = "duplicate"
	// FeedbackUnknown: no delivery has the key, or it was never handed
	// to a provider.
	FeedbackUnknown FeedbackResult = "unknown"
)

// ErrInvalidFeedback marks a report that cannot be applied as given.
var ErrInvalidFeedback = errors.New("invalid feedback")

// Feedback is one provider report about one delivery.
type Feedback struct {
	// Provider names the provider ("ses", "sendgrid", "smtp"); with
	// EventID it identifies the report.
	Provider string
	// EventID is the provider's id of the report, the same on each retry
	// of its delivery.
	EventID string
	// Key is the delivery's ledger key, recovered from the report (its
	// tags, custom args or return path), never taken from the report's
	// own claims about a tenant.
	Key  event.DeliveryKey
	Kind FeedbackKind
}

// Bounds of a report's fields, checked before the database sees them.
const (
	maxProviderLen = 32
	maxEventIDLen  = 255
	maxKeyPartLen  = 255
)

func (f Feedback) validate(softLimit int) error {
	var problems []string
	if f.Provider == "" || len(f.Provider) > maxProviderLen {
		problems = append(problems, fmt.Sprintf("provider must be 1 to %d bytes", maxProviderLen))
	}
	if f.EventID == "" || len(f.EventID) > maxEventIDLen {
		problems = append(problems, fmt.Sprintf("event id must be 1 to %d bytes", maxEventIDLen))
	}
	if f.Key.Tenant == "" || len(f.Key.Tenant) > maxKeyPartLen || f.Key.Customer == "" || len(f.Key.Customer) > maxKeyPartLen {
		problems = append(problems, fmt.Sprintf("the key's tenant and customer must be 1 to %d bytes", maxKeyPartLen))
	}
	if _, err := event.ParseJobID(f.Key.Job); err != nil {
		problems = append(problems, err.Error())
	}
	if _, err := event.ParseChannel(string(f.Key.Channel)); err != nil {
		problems = append(problems, err.Error())
	}
	switch f.Kind {
	case SoftBounce, Delivered, Bounced, Complained:
	default:
		problems = append(problems, fmt.Sprintf("unknown kind %q", f.Kind))
	}
	if softLimit < 1 {
		problems = append(problems, "the soft-bounce limit must be at least 1")
	}
	for _, s := range []string{f.Provider, f.EventID, f.Key.Tenant, f.Key.Customer} {
		for i := 0; i < len(s); i++ {
			if s[i] == 0 {
				problems = append(problems, "fields must not contain NUL")
				break
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %v", ErrInvalidFeedback, problems)
	}
	return nil
}

// ApplyFeedback applies one provider report to its delivery through
// dispatch's herald_apply_feedback: an ambiguous delivery is settled as
// sent, a hard bounce or a complaint suppresses the address, softLimit soft
// bounces in a row do too. The same report twice changes nothing.
func (s *Store) ApplyFeedback(ctx context.Context, f Feedback, softLimit int) (FeedbackResult, error) {
	if err := f.validate(softLimit); err != nil {
		return "", err
	}
	job, _ := event.ParseJobID(f.Key.Job)
	var res FeedbackResult
	err := s.db.QueryRow(ctx, `SELECT herald_apply_feedback(@provider, @event_id, @tenant, @job, @channel, @customer, @kind, @soft_limit)`,
		pgx.StrictNamedArgs{
			"provider": f.Provider, "event_id": f.EventID, "kind": string(f.Kind), "soft_limit": softLimit,
			"tenant": f.Key.Tenant, "job": job.UUID(), "channel": string(f.Key.Channel), "customer": f.Key.Customer,
		}).Scan(&res)
	if err != nil {
		return "", fmt.Errorf("apply %s feedback %s: %w", f.Provider, f.EventID, err)
	}
	return res, nil
}

//go:embed sql/delivery_by_message_hash.sql
var deliveryByMessageHashSQL string

// messageHash is the spelling of the hash in a Message-ID
// (event.DeliveryKey.MessageID) and of what event.ReturnPath.Parse returns.
var messageHash = regexp.MustCompile(`^[0-9a-f]{32}$`)

// DeliveryByMessageHash returns the key of the delivery whose Message-ID
// starts with hash, the 32 hex digits a VERP return path carries, through
// dispatch's herald_delivery_by_message_id. It is ErrNotFound when no
// delivery has it. The caller has checked the return path's MAC: only
// addresses Herald sent from get this far.
func (s *Store) DeliveryByMessageHash(ctx context.Context, hash string) (event.DeliveryKey, error) {
	if !messageHash.MatchString(hash) {
		return event.DeliveryKey{}, fmt.Errorf("%w: message hash %q is not 32 lower-case hex digits", ErrInvalidFeedback, hash)
	}
	var (
		k   event.DeliveryKey
		job uuid.UUID
		ch  string
	)
	err := s.db.QueryRow(ctx, deliveryByMessageHashSQL, pgx.StrictNamedArgs{"hash": hash}).Scan(&k.Tenant, &job, &ch, &k.Customer)
	if errors.Is(err, pgx.ErrNoRows) {
		return event.DeliveryKey{}, fmt.Errorf("delivery of message hash %s: %w", hash, ErrNotFound)
	}
	if err != nil {
		return event.DeliveryKey{}, fmt.Errorf("find delivery of message hash %s: %w", hash, err)
	}
	k.Job, k.Channel = event.JobID(job).String(), event.Channel(ch)
	return k, nil
}
