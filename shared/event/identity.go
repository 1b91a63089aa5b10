package event

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/google/uuid"
)

// Channel is how a job reaches its recipients. Its string is the value the
// API accepts, the wire contract carries and the ledger stores.
type Channel string

// The channels a job can send on.
const (
	ChannelEmail  Channel = "email"
	ChannelOnsite Channel = "onsite"
	ChannelAd     Channel = "ad"
)

// Channels lists every channel, in the order the API documents them.
var Channels = []Channel{ChannelEmail, ChannelOnsite, ChannelAd}

// ParseChannel returns the channel named s, or an error naming the known
// ones.
func ParseChannel(s string) (Channel, error) {
	for _, c := range Channels {
		if string(c) == s {
			return c, nil
		}
	}
	return "", fmt.Errorf("unknown channel %q (known: %v)", s, Channels)
}

// ProviderKind names the provider of a channel that has a single one: the
// onsite inbox is "onsite", the ad platform "ads" (tenants name it so in
// their provider lists). Email has several, each named by what it speaks
// (smtp, esp…), so its kind is only the channel's name.
func (c Channel) ProviderKind() string {
	if c == ChannelAd {
		return "ads"
	}
	return string(c)
}

// JobID identifies a job: a UUID, which the wire contract carries as its
// canonical string (36 characters, lower-case hex and hyphens).
type JobID uuid.UUID

// NewJobID returns a new random job id.
func NewJobID() JobID { return JobID(uuid.New()) }

// ParseJobID parses a job id from its canonical form only, so that one job
// has exactly one spelling everywhere it is a key (uuid.Parse alone would
// also accept braces, a urn: prefix and upper case).
func ParseJobID(s string) (JobID, error) {
	id, err := uuid.Parse(s)
	if err != nil || id.String() != s {
		return JobID{}, fmt.Errorf("job id %q is not a canonical UUID", s)
	}
	return JobID(id), nil
}

// String is the canonical form of the id.
func (j JobID) String() string { return uuid.UUID(j).String() }

// UUID is the id as a uuid.UUID, the type pgx encodes as a PostgreSQL uuid.
func (j JobID) UUID() uuid.UUID { return uuid.UUID(j) }

// DeliveryKey identifies one delivery: a job sends on its channel at most
// once to each customer. The ledger's primary key, the provider's
// idempotency key and the email's Message-ID are all derived from it, so a
// send whose outcome is unknown can be found again at the provider.
type DeliveryKey struct {
	Tenant   string
	Job      string // the job id in its canonical form
	Channel  Channel
	Customer string
}

// String is the key as providers see it, tenant/job/channel/customer: the
// idempotency key of an API send and the external id of an ad audience
// member.
func (k DeliveryKey) String() string {
	return k.Tenant + "/" + k.Job + "/" + string(k.Channel) + "/" + k.Customer
}

// MessageID is the Message-ID (without angle brackets) of the delivery's
// email at domain: 32 hex digits of a hash of the key, then @domain. The
// hash is fixed: a delivery rendered by one release and reconciled by the
// next must carry the same id.
func (k DeliveryKey) MessageID(domain string) string {
	h := sha256.New()
	for _, s := range []string{k.Tenant, k.Job, string(k.Channel), k.Customer} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16]) + "@" + domain
}

// BatchKey identifies one batch of a job's channel.
type BatchKey struct {
	Job     JobID
	Seq     int64
	Channel Channel
}

// LockKey is the PostgreSQL advisory lock key that lets one dispatcher at a
// time work the batch. It is fixed like MessageID: two releases running
// side by side during a canary must lock the same key for the same batch.
func (b BatchKey) LockKey() int64 {
	h := fnv.New64a()
	h.Write([]byte("herald-batch\x00"))
	h.Write(b.Job[:])
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], uint64(b.Seq))
	h.Write(seq[:])
	h.Write([]byte(b.Channel))
	return int64(h.Sum64())
}

// The names of the two tags that carry a delivery's key through a provider
// and back in its reports (SES message tags, SendGrid custom args).
const (
	TagTenant   = "herald_tenant"
	TagDelivery = "herald_delivery"
)

// Tags encodes k as the values of TagTenant and TagDelivery. SES allows
// only ASCII letters, digits, '_' and '-' in a tag value, at most 256 of
// them, so both are unpadded base64url; the delivery tag packs the job's 16
// bytes, the channel and the customer, which fits for every key the API
// accepts (a customer id of up to 128 characters).
func (k DeliveryKey) Tags() (tenant, delivery string, err error) {
	job, err := ParseJobID(k.Job)
	if err != nil {
		return "", "", err
	}
	var ch byte
	switch k.Channel {
	case ChannelEmail:
		ch = 'e'
	case ChannelOnsite:
		ch = 'o'
	case ChannelAd:
		ch = 'a'
	default:
		return "", "", fmt.Errorf("unknown channel %q", k.Channel)
	}
	if k.Tenant == "" || k.Customer == "" {
		return "", "", errors.New("a delivery key needs a tenant and a customer")
	}
	b := make([]byte, 0, 17+len(k.Customer))
	b = append(b, job[:]...)
	b = append(b, ch)
	b = append(b, k.Customer...)
	tenant = base64.RawURLEncoding.EncodeToString([]byte(k.Tenant))
	delivery = base64.RawURLEncoding.EncodeToString(b)
	if len(tenant) > maxTagLen || len(delivery) > maxTagLen {
		return "", "", fmt.Errorf("delivery key %s is too long for a provider tag", k)
	}
	return tenant, delivery, nil
}

// maxTagLen is the longest tag value SES accepts.
const maxTagLen = 256

// ParseTags is the inverse of Tags.
func ParseTags(tenant, delivery string) (DeliveryKey, error) {
	if len(tenant) > maxTagLen || len(delivery) > maxTagLen {
		return DeliveryKey{}, errors.New("delivery tags too long")
	}
	t, err := base64.RawURLEncoding.DecodeString(tenant)
	if err != nil || len(t) == 0 {
		return DeliveryKey{}, fmt.Errorf("tenant tag %q is not a base64url tenant id", tenant)
	}
	b, err := base64.RawURLEncoding.DecodeString(delivery)
	if err != nil || len(b) < 18 {
		return DeliveryKey{}, fmt.Errorf("delivery tag %q is not a base64url delivery", delivery)
	}
	k := DeliveryKey{Tenant: string(t), Job: JobID(b[:16]).String(), Customer: string(b[17:])}
	switch b[16] {
	case 'e':
		k.Channel = ChannelEmail
	case 'o':
		k.Channel = ChannelOnsite
	case 'a':
		k.Channel = ChannelAd
	default:
		return DeliveryKey{}, fmt.Errorf("delivery tag %q names no channel", delivery)
	}
	return k, nil
}
