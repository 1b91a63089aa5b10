package event_test

import (
	"errors"
	"strings"
	"testing"

	"herald/shared/event"
)

var testReturnPath = event.ReturnPath{Domain: "bounces.herald.test", Secret: []byte("0123456789abcdef-verp-test")}

const testJob = "6f1c2a4e-8d3b-4c7a-9e21-0b5d7f3a9c11"

// hashOf is what the ledger keys a delivery's email by: the part of its
// Message-ID before the @.
func hashOf(k event.DeliveryKey) string {
	h, _, _ := strings.Cut(k.MessageID("mail.herald.test"), "@")
	return h
}

func TestVERPRoundTrip(t *testing.T) {
	keys := map[string]event.DeliveryKey{
		"short":         {Tenant: "acme", Job: testJob, Channel: event.ChannelEmail, Customer: "c1"},
		"long ids":      {Tenant: strings.Repeat("t", 64), Job: testJob, Channel: event.ChannelEmail, Customer: strings.Repeat("customer-", 40)},
		"slash, utf-8":  {Tenant: "acme", Job: testJob, Channel: event.ChannelEmail, Customer: "eu/zürich/4711"},
		"other tenant":  {Tenant: "globex", Job: testJob, Channel: event.ChannelEmail, Customer: "c1"},
		"other channel": {Tenant: "acme", Job: testJob, Channel: event.ChannelOnsite, Customer: "c1"},
	}
	seen := map[string]string{}
	for name, key := range keys {
		t.Run(name, func(t *testing.T) {
			addr := testReturnPath.Address(key)
			local, domain, _ := strings.Cut(addr, "@")
			if len(local) > 64 {
				t.Errorf("local part %q has %d octets, RFC 5321 allows 64", local, len(local))
			}
			if domain != testReturnPath.Domain || !strings.HasPrefix(local, "bounce+") {
				t.Errorf("address %q is not bounce+…@%s", addr, testReturnPath.Domain)
			}
			for _, variant := range []string{addr, strings.ToUpper(addr), "<" + addr + ">"} {
				got, err := testReturnPath.Parse(variant)
				if err != nil {
					t.Fatalf("Parse(%q): %v", variant, err)
				}
				if got != hashOf(key) {
					t.Errorf("Parse(%q) = %q, want the Message-ID hash %q", variant, got, hashOf(key))
				}
			}
			if other, dup := seen[addr]; dup {
				t.Errorf("%s and %s share the return path %q", name, other, addr)
			}
			seen[addr] = name
		})
	}
}

func TestVERPRefusesForgedAndForeignAddresses(t *testing.T) {
	key := event.DeliveryKey{Tenant: "acme", Job: testJob, Channel: event.ChannelEmail, Customer: "c1"}
	addr := testReturnPath.Address(key)
	local, _, _ := strings.Cut(addr, "@")
	token := strings.TrimPrefix(local, "bounce+")
	other := testReturnPath.Address(event.DeliveryKey{Tenant: "acme", Job: testJob, Channel: event.ChannelEmail, Customer: "c2"})
	otherToken := strings.TrimPrefix(strings.Split(other, "@")[0], "bounce+")
	// flip changes the token's character at i to another base32 one.
	flip := func(i int) string {
		b := []byte(token)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return "bounce+" + string(b) + "@bounces.herald.test"
	}
	tests := []struct {
		name string
		addr string
		want error
	}{
		{"hash changed", flip(0), event.ErrForgedVERP},
		{"mac changed", flip(len(token) - 2), event.ErrForgedVERP},
		{"another delivery's mac", "bounce+" + token[:26] + otherToken[26:] + "@bounces.herald.test", event.ErrForgedVERP},
		{"other secret", event.ReturnPath{Domain: testReturnPath.Domain, Secret: []byte("another secret, 16+ bytes")}.Address(key), event.ErrForgedVERP},
		{"other domain", "bounce+" + token + "@bounces.example.com", event.ErrNotVERP},
		{"other prefix", "return+" + token + "@bounces.herald.test", event.ErrNotVERP},
		{"no token", "bounce+@bounces.herald.test", event.ErrNotVERP},
		{"short token", "bounce+" + token[:40] + "@bounces.herald.test", event.ErrNotVERP},
		{"long token", "bounce+" + token + "aa@bounces.herald.test", event.ErrNotVERP},
		{"over 64 octets", "bounce+" + strings.Repeat("a", 60) + "@bounces.herald.test", event.ErrNotVERP},
		{"not base32", "bounce+" + strings.Repeat("1", 42) + "@bounces.herald.test", event.ErrNotVERP},
		{"no domain", "bounce+" + token, event.ErrNotVERP},
		{"empty", "", event.ErrNotVERP},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := testReturnPath.Parse(tc.addr)
			if !errors.Is(err, tc.want) {
				t.Errorf("Parse(%q) = %q, %v; want %v", tc.addr, got, err, tc.want)
			}
		})
	}
}

func TestReturnPathValidate(t *testing.T) {
	for name, rp := range map[string]event.ReturnPath{
		"no domain":    {Secret: testReturnPath.Secret},
		"an address":   {Domain: "bounce@herald.test", Secret: testReturnPath.Secret},
		"short secret": {Domain: "bounces.herald.test", Secret: []byte("short")},
	} {
		if err := rp.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, rp)
		}
	}
	if err := testReturnPath.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v", testReturnPath, err)
	}
}
