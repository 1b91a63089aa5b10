package smtpout_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"herald/devtools/mailcatch"
	"herald/dispatch/internal/provider"
	"herald/dispatch/internal/smtpout"
	"herald/shared/event"
)

var testReturnPath = smtpout.ReturnPath{Domain: "bounces.herald.test", Secret: []byte("0123456789abcdef-verp-test")}

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
			addr := testReturnPath.VERP(key)
			local, domain, _ := strings.Cut(addr, "@")
			if len(local) > 64 {
				t.Errorf("local part %q has %d octets, RFC 5321 allows 64", local, len(local))
			}
			if domain != testReturnPath.Domain || !strings.HasPrefix(local, "bounce+") {
				t.Errorf("address %q is not bounce+…@%s", addr, testReturnPath.Domain)
			}
			for _, variant := range []string{addr, strings.ToUpper(addr), "<" + addr + ">"} {
				got, err := testReturnPath.ParseVERP(variant)
				if err != nil {
					t.Fatalf("ParseVERP(%q): %v", variant, err)
				}
				if got != hashOf(key) {
					t.Errorf("ParseVERP(%q) = %q, want the Message-ID hash %q", variant, got, hashOf(key))
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
	addr := testReturnPath.VERP(key)
	local, _, _ := strings.Cut(addr, "@")
	token := strings.TrimPrefix(local, "bounce+")
	other := testReturnPath.VERP(event.DeliveryKey{Tenant: "acme", Job: testJob, Channel: event.ChannelEmail, Customer: "c2"})
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
		{"hash changed", flip(0), smtpout.ErrForgedVERP},
		{"mac changed", flip(len(token) - 2), smtpout.ErrForgedVERP},
		{"another delivery's mac", "bounce+" + token[:26] + otherToken[26:] + "@bounces.herald.test", smtpout.ErrForgedVERP},
		{"other secret", smtpout.ReturnPath{Domain: testReturnPath.Domain, Secret: []byte("another secret, 16+ bytes")}.VERP(key), smtpout.ErrForgedVERP},
		{"other domain", "bounce+" + token + "@bounces.example.com", smtpout.ErrNotVERP},
		{"other prefix", "return+" + token + "@bounces.herald.test", smtpout.ErrNotVERP},
		{"no token", "bounce+@bounces.herald.test", smtpout.ErrNotVERP},
		{"short token", "bounce+" + token[:40] + "@bounces.herald.test", smtpout.ErrNotVERP},
		{"long token", "bounce+" + token + "aa@bounces.herald.test", smtpout.ErrNotVERP},
		{"over 64 octets", "bounce+" + strings.Repeat("a", 60) + "@bounces.herald.test", smtpout.ErrNotVERP},
		{"not base32", "bounce+" + strings.Repeat("1", 42) + "@bounces.herald.test", smtpout.ErrNotVERP},
		{"no domain", "bounce+" + token, smtpout.ErrNotVERP},
		{"empty", "", smtpout.ErrNotVERP},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := testReturnPath.ParseVERP(tc.addr)
			if !errors.Is(err, tc.want) {
				t.Errorf("ParseVERP(%q) = %q, %v; want %v", tc.addr, got, err, tc.want)
			}
		})
	}
}

func TestReturnPathValidate(t *testing.T) {
	for name, rp := range map[string]smtpout.ReturnPath{
		"no domain":    {Secret: testReturnPath.Secret},
		"an address":   {Domain: "bounce@herald.test", Secret: testReturnPath.Secret},
		"short secret": {Domain: "bounces.herald.test", Secret: []byte("short")},
	} {
		if err := rp.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, rp)
		}
		cfg := smtpout.Config{Addr: "relay.example.com:587", ReturnPath: &rp}
		if err := cfg.Validate(); !errors.Is(err, smtpout.ErrRelayConfig) {
			t.Errorf("%s: Config.Validate = %v, want a relay configuration error", name, err)
		}
	}
	if err := testReturnPath.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v", testReturnPath, err)
	}
}

// TestPoolSendsFromTheVERPAddress: with a return path, the envelope sender
// the relay sees is the delivery's VERP address, which reads back as the
// hash of the message's own Message-ID; a message without a ledger key
// keeps its sender.
func TestPoolSendsFromTheVERPAddress(t *testing.T) {
	mc := startCatcher(t, mailcatch.Options{})
	rp := testReturnPath
	pool := newPool(t, smtpout.Config{Addr: mc.SMTPAddr(), ReturnPath: &rp, Conns: 2})
	keys := []event.DeliveryKey{
		{Tenant: "acme", Job: testJob, Channel: event.ChannelEmail, Customer: "c1"},
		{Tenant: "acme", Job: testJob, Channel: event.ChannelEmail, Customer: strings.Repeat("long/", 30)},
	}
	var msgs []*provider.Message
	for _, k := range keys {
		id := k.MessageID("mail.herald.test")
		msgs = append(msgs, &provider.Message{Key: k.String(), MessageID: id, From: "news@acme.test", To: "r@example.com", Body: message(id)})
	}
	msgs = append(msgs, &provider.Message{From: "news@acme.test", To: "r@example.com", Body: message("keyless@herald")})
	for i, r := range pool.Send(context.Background(), msgs) {
		if r.Outcome != provider.Sent {
			t.Fatalf("message %d: %v %q", i, r.Outcome, r.Reason)
		}
	}
	if msgs[0].From != "news@acme.test" {
		t.Errorf("Send changed the caller's message: From %q", msgs[0].From)
	}
	got := map[string]string{} // Message-ID to envelope sender
	for _, m := range mc.Messages() {
		got[m.MessageID] = m.From
	}
	for _, k := range keys {
		from := got[k.MessageID("mail.herald.test")]
		hash, err := rp.ParseVERP(from)
		if err != nil || hash != hashOf(k) {
			t.Errorf("envelope sender %q reads as %q, %v; want %q", from, hash, err, hashOf(k))
		}
	}
	if from := got["keyless@herald"]; from != "news@acme.test" {
		t.Errorf("the message without a key went from %q, want its own sender", from)
	}
}
