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

var testReturnPath = event.ReturnPath{Domain: "bounces.herald.test", Secret: []byte("0123456789abcdef-verp-test")}

const testJob = "6f1c2a4e-8d3b-4c7a-9e21-0b5d7f3a9c11"

// hashOf is what the ledger keys a delivery's email by: the part of its
// Message-ID before the @.
func hashOf(k event.DeliveryKey) string {
	h, _, _ := strings.Cut(k.MessageID("mail.herald.test"), "@")
	return h
}

// TestReturnPathValidate: a pool refuses a return path that could not be
// used (event.ReturnPath.Validate).
func TestReturnPathValidate(t *testing.T) {
	for name, rp := range map[string]event.ReturnPath{
		"no domain":    {Secret: testReturnPath.Secret},
		"an address":   {Domain: "bounce@herald.test", Secret: testReturnPath.Secret},
		"short secret": {Domain: "bounces.herald.test", Secret: []byte("short")},
	} {
		cfg := smtpout.Config{Addr: "relay.example.com:587", ReturnPath: &rp}
		if err := cfg.Validate(); !errors.Is(err, smtpout.ErrRelayConfig) {
			t.Errorf("%s: Config.Validate = %v, want a relay configuration error", name, err)
		}
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
		hash, err := rp.Parse(from)
		if err != nil || hash != hashOf(k) {
			t.Errorf("envelope sender %q reads as %q, %v; want %q", from, hash, err, hashOf(k))
		}
	}
	if from := got["keyless@herald"]; from != "news@acme.test" {
		t.Errorf("the message without a key went from %q, want its own sender", from)
	}
}
