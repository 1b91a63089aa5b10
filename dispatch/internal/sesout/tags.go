package sesout

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"

	"herald/dispatch/internal/provider"
	"herald/shared/event"
)

// The message tags every send carries. SES copies them into each event it
// publishes for the message (mail.tags in the event's JSON), which is how
// an event finds its delivery.
const (
	// TagTenant is the tenant id, base64url without padding: tag values may
	// hold only ASCII letters, digits, '_' and '-', and a tenant id may
	// also hold '.'.
	TagTenant = "herald-tenant"
	// TagJob is the job id, a UUID, as it is.
	TagJob = "herald-job"
	// TagDelivery is the delivery's hash: the 32 hex digits that are also
	// the local part of its Message-ID (event.DeliveryKey.MessageID). The
	// ledger key itself cannot be a tag value (it holds '/' and whatever a
	// customer id holds, and may be longer than 256 characters).
	TagDelivery = "herald-delivery"
)

// Tags are the message tags of m. An event maps back to its delivery by
// ParseTags: the tenant and job name the ledger's rows, and among them the
// one whose message_id is the delivery hash followed by '@' is the
// delivery — one row, since the hash is of the whole ledger key.
func Tags(m *provider.Message) []types.MessageTag {
	return []types.MessageTag{
		{Name: aws.String(TagTenant), Value: aws.String(base64.RawURLEncoding.EncodeToString([]byte(m.Tenant)))},
		{Name: aws.String(TagJob), Value: aws.String(m.JobID)},
		{Name: aws.String(TagDelivery), Value: aws.String(DeliveryHash(m))},
	}
}

// DeliveryHash is the hash of m's ledger key that TagDelivery carries.
func DeliveryHash(m *provider.Message) string {
	id := event.DeliveryKey{Tenant: m.Tenant, Job: m.JobID, Channel: event.ChannelEmail, Customer: m.CustomerID}.MessageID("")
	return strings.TrimSuffix(id, "@")
}

// Ref is what an SES event's tags say about its delivery.
type Ref struct {
	Tenant string
	Job    string
	// Hash is the delivery's hash: its Message-ID is Hash + "@" + the
	// sending domain.
	Hash string
}

// ParseTags reads the delivery from an event's tags (mail.tags, each tag
// with its values). An event without Herald's tags, or with more than one
// value of one, is an error: it is not a delivery Herald can name.
func ParseTags(tags map[string][]string) (Ref, error) {
	one := func(name string) (string, error) {
		v := tags[name]
		if len(v) != 1 || v[0] == "" {
			return "", fmt.Errorf("tag %s: want one value, have %q", name, v)
		}
		return v[0], nil
	}
	var errs []error
	enc, err := one(TagTenant)
	errs = append(errs, err)
	job, err := one(TagJob)
	errs = append(errs, err)
	hash, err := one(TagDelivery)
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return Ref{}, err
	}
	tenant, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return Ref{}, fmt.Errorf("tag %s: %w", TagTenant, err)
	}
	if _, err := event.ParseJobID(job); err != nil {
		return Ref{}, fmt.Errorf("tag %s: %w", TagJob, err)
	}
	if len(hash) != 32 || strings.Trim(hash, "0123456789abcdef") != "" {
		return Ref{}, fmt.Errorf("tag %s: %q is not 32 lower-case hex digits", TagDelivery, hash)
	}
	return Ref{Tenant: string(tenant), Job: job, Hash: hash}, nil
}
