package sendgridout_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"herald/devtools/sendgridcatch"
	"herald/dispatch/internal/provider"
	"herald/dispatch/internal/sendgridout"
	"herald/shared/event"
)

const apiKey = "SG.herald-test.key"

func startSG(t *testing.T, opts sendgridcatch.Options) *sendgridcatch.Server {
	t.Helper()
	if opts.APIKey == "" {
		opts.APIKey = apiKey
	}
	s, err := sendgridcatch.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newClient(t *testing.T, s *sendgridcatch.Server, change func(*sendgridout.Config)) *sendgridout.Client {
	t.Helper()
	cfg := sendgridout.Config{BaseURL: s.URL(), APIKey: apiKey}
	if change != nil {
		change(&cfg)
	}
	c, err := sendgridout.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func message(t testing.TB, customer string) *provider.Message {
	return &provider.Message{
		Key: "acme.eu/0b7c6d2e-9f3a-4c1b-8e5d-2a6f7b8c9d0e/email/" + customer, MessageID: customer + "@herald.test",
		From: "news@shop.example", To: customer + "@example.com", Body: rendered(t),
		Tenant: "acme.eu", JobID: "0b7c6d2e-9f3a-4c1b-8e5d-2a6f7b8c9d0e", CustomerID: customer,
	}
}

func TestSendsEachMessageAsMailSend(t *testing.T) {
	s := startSG(t, sendgridcatch.Options{})
	c := newClient(t, s, nil)
	var msgs []*provider.Message
	for i := range 12 {
		msgs = append(msgs, message(t, fmt.Sprintf("c%d", i)))
	}
	res := c.Send(t.Context(), msgs)
	got := s.Messages()
	if len(got) != len(msgs) || s.Stats().Requests != int64(len(msgs)) {
		t.Fatalf("SendGrid has %d messages from %d requests, want %d of each", len(got), s.Stats().Requests, len(msgs))
	}
	byTo := map[string]sendgridcatch.Message{}
	for _, m := range got {
		byTo[m.To[0]] = m
	}
	for i, m := range msgs {
		sent := byTo[m.To]
		if res[i].Outcome != provider.Sent || res[i].Code != 202 || res[i].Reason != sent.MessageID {
			t.Errorf("message %d: result %+v, want sent with X-Message-Id %q", i, res[i], sent.MessageID)
		}
		tenantTag, deliveryTag, err := event.DeliveryKey{Tenant: m.Tenant, Job: m.JobID, Channel: event.ChannelEmail, Customer: m.CustomerID}.Tags()
		if err != nil {
			t.Fatal(err)
		}
		want := sendgridcatch.Message{
			MessageID: sent.MessageID, Received: sent.Received,
			From:    sendgridcatch.Address{Email: "news@shop.example", Name: "Shop – Black Friday"},
			To:      []string{m.To},
			Subject: "Zoë, your Black Friday picks ★",
			Text:    "Hi Zoë,\r\n\r\nour picks for you: a very long line of text that goes past seventy-six characters so that quoted-printable has to break it with soft line breaks = and an equals sign.\r\n",
			HTML:    `<p>Hi Zoë,</p><p>Our picks: <a href="https://shop.example/p/1?a=1&amp;b=2">Lamp</a> — 19,99&nbsp;€</p>`,
			Headers: map[string]string{
				"List-Unsubscribe":      "<https://shop.example/u/eyJ0IjoiYWNtZSIsImMiOiJhbm4iLCJqIjoiMGI3YzZkMmUtOWYzYS00YzFiLThlNWQtMmE2ZjdiOGM5ZDBlIn0.c2lnbmF0dXJl>",
				"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
				"Feedback-ID":           "black-friday:acme.eu:herald",
			},
			CustomArgs:       map[string]string{event.TagTenant: tenantTag, event.TagDelivery: deliveryTag, "herald_key": m.Key},
			TrackingSettings: `{"subscription_tracking":{"enable":false}}`,
		}
		if diff := cmp.Diff(want, sent); diff != "" {
			t.Errorf("message %d (-want +got):\n%s", i, diff)
		}
	}
	if c.Idempotent() {
		t.Error("Mail Send has no idempotency key, yet the client says it is idempotent")
	}
}

func TestMapsEachAnswer(t *testing.T) {
	field := "personalizations.0.to"
	tests := []struct {
		name     string
		fault    sendgridcatch.Fault
		want     provider.Outcome
		wantCode int
		reason   string
	}{
		{"400 with errors", sendgridcatch.Fault{Status: 400, Errors: []sendgridcatch.Error{{Message: "Does not contain a valid address.", Field: &field}}},
			provider.Failed, 400, "personalizations.0.to: Does not contain a valid address."},
		{"413", sendgridcatch.Fault{Status: 413}, provider.Failed, 413, "413 Request Entity Too Large"},
		{"401", sendgridcatch.Fault{Status: 401}, provider.Deferred, 401, "refused the API key"},
		{"403", sendgridcatch.Fault{Status: 403}, provider.Deferred, 403, "refused the API key"},
		{"500", sendgridcatch.Fault{Status: 500}, provider.Deferred, 500, "500 Internal Server Error"},
		{"503", sendgridcatch.Fault{Status: 503}, provider.Deferred, 503, "503 Service Unavailable"},
		{"429 without reset", sendgridcatch.Fault{Status: 429}, provider.Throttled, 429, "429 Too Many Requests"},
	}
	s := startSG(t, sendgridcatch.Options{})
	c := newClient(t, s, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.SetFault(func(sendgridcatch.Request) sendgridcatch.Fault { return tt.fault })
			res := c.Send(t.Context(), []*provider.Message{message(t, "ann")})[0]
			if res.Outcome != tt.want || res.Code != tt.wantCode || !strings.Contains(res.Reason, tt.reason) {
				t.Errorf("result %+v: want %v, code %d, a reason with %q", res, tt.want, tt.wantCode, tt.reason)
			}
		})
	}
	if st := s.Stats(); st.Requests != int64(len(tests)) || st.Messages != 0 {
		t.Errorf("stats %+v: want one request per answer (no retries) and no message", st)
	}
}

func TestKeysRefused(t *testing.T) {
	s := startSG(t, sendgridcatch.Options{ForbiddenKeys: []string{"SG.read-only"}})
	for key, status := range map[string]int{"SG.wrong": 401, "SG.read-only": 403} {
		c := newClient(t, s, func(cfg *sendgridout.Config) { cfg.APIKey = key })
		res := c.Send(t.Context(), []*provider.Message{message(t, "ann")})[0]
		if res.Outcome != provider.Deferred || res.Code != status {
			t.Errorf("key %s: result %+v, want deferred with %d", key, res, status)
		}
	}
	if st := s.Stats(); st.Unauthorized != 2 || st.Messages != 0 {
		t.Errorf("stats %+v: want two unauthorized requests and no message", st)
	}
}

// TestRateLimitResetPauses: after a 429 the client asks nothing until
// X-RateLimit-Reset, then sends again.
func TestRateLimitResetPauses(t *testing.T) {
	s := startSG(t, sendgridcatch.Options{})
	c := newClient(t, s, nil)
	now := time.Unix(1_800_000_000, 0)
	sendgridout.SetNow(c, func() time.Time { return now })
	s.SetFault(func(sendgridcatch.Request) sendgridcatch.Fault {
		return sendgridcatch.Fault{Status: 429, RateLimitReset: now.Add(30 * time.Second)}
	})
	first := c.Send(t.Context(), []*provider.Message{message(t, "a")})[0]
	if first.Outcome != provider.Throttled || first.Code != 429 || !strings.Contains(first.Reason, "X-RateLimit-Reset") {
		t.Fatalf("first result %+v: want throttled until X-RateLimit-Reset", first)
	}
	s.SetFault(nil)
	now = now.Add(29 * time.Second)
	for i, r := range c.Send(t.Context(), []*provider.Message{message(t, "b"), message(t, "c")}) {
		if r.Outcome != provider.Throttled || r.Code != 429 {
			t.Errorf("paused result %d %+v: want throttled", i, r)
		}
	}
	if st := s.Stats(); st.Requests != 1 {
		t.Errorf("SendGrid got %d requests while paused, want only the first", st.Requests)
	}
	now = now.Add(time.Second)
	if r := c.Send(t.Context(), []*provider.Message{message(t, "d")})[0]; r.Outcome != provider.Sent {
		t.Errorf("result after the reset %+v: want sent", r)
	}
}

func TestNoAnswerAfterSendingIsUnknown(t *testing.T) {
	tests := []struct {
		name  string
		fault sendgridcatch.Fault
		cfg   func(*sendgridout.Config)
	}{
		{"connection dropped after accepting", sendgridcatch.Fault{DropAfterAccept: true}, nil},
		{"timeout", sendgridcatch.Fault{Delay: 5 * time.Second}, func(c *sendgridout.Config) { c.Timeout = 100 * time.Millisecond }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startSG(t, sendgridcatch.Options{})
			s.SetFault(func(sendgridcatch.Request) sendgridcatch.Fault { return tt.fault })
			res := newClient(t, s, tt.cfg).Send(t.Context(), []*provider.Message{message(t, "ann")})[0]
			if res.Outcome != provider.Unknown {
				t.Errorf("result %+v: want unknown", res)
			}
			if st := s.Stats(); st.Requests != 1 {
				t.Errorf("SendGrid got %d requests, want 1: the client must not retry", st.Requests)
			}
		})
	}
}

func TestUnreachableIsDeferred(t *testing.T) {
	s := startSG(t, sendgridcatch.Options{})
	c := newClient(t, s, nil)
	s.Close()
	if res := c.Send(t.Context(), []*provider.Message{message(t, "ann")})[0]; res.Outcome != provider.Deferred {
		t.Errorf("result %+v: want deferred, nothing was sent", res)
	}
}

func TestUnparsableMessageFailsUnsent(t *testing.T) {
	s := startSG(t, sendgridcatch.Options{})
	m := message(t, "ann")
	m.Body = []byte("no header at all")
	if res := newClient(t, s, nil).Send(t.Context(), []*provider.Message{m})[0]; res.Outcome != provider.Failed {
		t.Errorf("result %+v: want failed", res)
	}
	if st := s.Stats(); st.Requests != 0 {
		t.Errorf("SendGrid got %d requests, want none", st.Requests)
	}
}

func TestNewRefusesIncompleteConfig(t *testing.T) {
	for name, cfg := range map[string]sendgridout.Config{
		"no key":  {BaseURL: "https://api.sendgrid.com"},
		"bad URL": {BaseURL: "api.sendgrid.com", APIKey: apiKey},
	} {
		if _, err := sendgridout.New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
	c, err := sendgridout.New(sendgridout.Config{APIKey: apiKey})
	if err != nil {
		t.Fatal(err)
	}
	if c.Name() != "sendgrid:api.sendgrid.com" {
		t.Errorf("New without a URL: name %q, want SendGrid's global host", c.Name())
	}
}
