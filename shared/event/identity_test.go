package event

import (
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestParseChannel(t *testing.T) {
	for _, c := range Channels {
		got, err := ParseChannel(string(c))
		if err != nil || got != c {
			t.Errorf("ParseChannel(%q) = %q, %v", c, got, err)
		}
	}
	for _, s := range []string{"", "ads", "Email", "sms"} {
		if _, err := ParseChannel(s); err == nil {
			t.Errorf("ParseChannel(%q) accepted an unknown channel", s)
		}
	}
}

func TestProviderKind(t *testing.T) {
	want := map[Channel]string{ChannelEmail: "email", ChannelOnsite: "onsite", ChannelAd: "ads"}
	for c, k := range want {
		if got := c.ProviderKind(); got != k {
			t.Errorf("%s.ProviderKind() = %q, want %q", c, got, k)
		}
	}
}

func TestParseJobIDCanonicalOnly(t *testing.T) {
	const s = "0b9f5a4e-3c1d-4e8a-9f00-1234567890ab"
	id, err := ParseJobID(s)
	if err != nil || id.String() != s || id.UUID() != uuid.MustParse(s) {
		t.Fatalf("ParseJobID(%q) = %v, %v", s, id, err)
	}
	for _, bad := range []string{
		"", "0B9F5A4E-3C1D-4E8A-9F00-1234567890AB", "{" + s + "}", "urn:uuid:" + s,
		"0b9f5a4e3c1d4e8a9f001234567890ab", "not-a-uuid",
	} {
		if _, err := ParseJobID(bad); err == nil {
			t.Errorf("ParseJobID(%q) accepted a non-canonical id", bad)
		}
	}
}

// The derived identities are pinned to the values earlier releases
// computed: a delivery rendered by one release is reconciled (Message-ID)
// and locked (batch key) by the next.
func TestIdentitiesArePinned(t *testing.T) {
	k := DeliveryKey{Tenant: "acme", Job: "0b9f5a4e-3c1d-4e8a-9f00-1234567890ab", Channel: ChannelEmail, Customer: "cust-42"}
	if got, want := k.String(), "acme/0b9f5a4e-3c1d-4e8a-9f00-1234567890ab/email/cust-42"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := k.MessageID("mail.acme.example"), "055fddae3cb8441a4224ca0311d8fd04@mail.acme.example"; got != want {
		t.Errorf("MessageID() = %q, want %q", got, want)
	}
	b := BatchKey{Job: JobID(uuid.MustParse(k.Job)), Seq: 7, Channel: ChannelOnsite}
	if got, want := b.LockKey(), int64(5601931759206398774); got != want {
		t.Errorf("LockKey() = %d, want %d", got, want)
	}
}

// Keys that differ in any field differ in what is derived from them, even
// where a naive concatenation would collide.
func TestDeliveryKeyFieldsAreSeparated(t *testing.T) {
	a := DeliveryKey{Tenant: "ab", Job: "j", Channel: ChannelEmail, Customer: "c"}
	b := DeliveryKey{Tenant: "a", Job: "bj", Channel: ChannelEmail, Customer: "c"}
	if a.MessageID("d") == b.MessageID("d") {
		t.Error("keys that differ only in where a field ends share a Message-ID")
	}
	j := NewJobID()
	if (BatchKey{Job: j, Seq: 1, Channel: ChannelEmail}).LockKey() == (BatchKey{Job: j, Seq: 2, Channel: ChannelEmail}).LockKey() {
		t.Error("two batches of one job share a lock key")
	}
}

// The tags carry a key through a provider and back unchanged, within SES's
// rules for a tag value, for the longest ids the API accepts.
func TestTagsRoundTrip(t *testing.T) {
	tagChars := regexp.MustCompile(`^[A-Za-z0-9_-]{1,256}$`)
	for _, k := range []DeliveryKey{
		{Tenant: "acme", Job: NewJobID().String(), Channel: ChannelEmail, Customer: "c1"},
		{Tenant: strings.Repeat("t", 64), Job: NewJobID().String(), Channel: ChannelAd, Customer: strings.Repeat("c.:@-", 25) + "xyz"},
		{Tenant: "a.b", Job: NewJobID().String(), Channel: ChannelOnsite, Customer: "x"},
	} {
		tenant, delivery, err := k.Tags()
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if !tagChars.MatchString(tenant) || !tagChars.MatchString(delivery) {
			t.Errorf("%s: tags %q, %q break SES's rules for a tag value", k, tenant, delivery)
		}
		got, err := ParseTags(tenant, delivery)
		if err != nil || got != k {
			t.Errorf("ParseTags(Tags(%s)) = %s, %v", k, got, err)
		}
	}
}

func TestParseTagsRefusesGarbage(t *testing.T) {
	k := DeliveryKey{Tenant: "acme", Job: NewJobID().String(), Channel: ChannelEmail, Customer: "c1"}
	tenant, delivery, _ := k.Tags()
	for _, tc := range [][2]string{
		{"", delivery}, {tenant, ""}, {"!!", delivery}, {tenant, "abc"},
		{tenant, delivery[:len(delivery)-4]}, {tenant, strings.Repeat("A", 300)},
	} {
		if got, err := ParseTags(tc[0], tc[1]); err == nil && got == k {
			t.Errorf("ParseTags(%q, %q) gave back the key", tc[0], tc[1])
		} else if err == nil && tc[1] != delivery[:len(delivery)-4] {
			t.Errorf("ParseTags(%q, %q) = %s, want an error", tc[0], tc[1], got)
		}
	}
	if _, _, err := (DeliveryKey{Tenant: "acme", Job: "not-a-uuid", Channel: ChannelEmail, Customer: "c"}).Tags(); err == nil {
		t.Error("Tags accepted a job id that is not a UUID")
	}
}
