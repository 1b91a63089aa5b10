package event

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
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

// ProviderKind is the kind of provider that delivers c; dispatch's router
// picks a provider of this kind for each of a tenant's batches. An ad goes
// to an ad platform, whose kind is "ads".
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
