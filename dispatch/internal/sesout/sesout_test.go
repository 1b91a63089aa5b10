package sesout_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"herald/devtools/sescatch"
	"herald/dispatch/internal/provider"
	"herald/dispatch/internal/sesout"
	"herald/shared/event"
)

const (
	keyID  = "AKIAHERALDTEST000001"
	secret = "c2VjcmV0LWFjY2Vzcy1rZXktZm9yLXRlc3Rz"
	jobID  = "0b7c6d2e-9f3a-4c1b-8e5d-2a6f7b8c9d0e"
)

func startSES(t *testing.T, opts sescatch.Options) *sescatch.Server {
	t.Helper()
	opts.AccessKeyID, opts.SecretAccessKey = keyID, secret
	s, err := sescatch.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newClient(t *testing.T, s *sescatch.Server, change func(*sesout.Config)) *sesout.Client {
	t.Helper()
	cfg := sesout.Config{Region: s.Region(), Endpoint: s.URL(), AccessKeyID: keyID, SecretAccessKey: secret, ConfigurationSet: "herald"}
	if change != nil {
		change(&cfg)
	}
	c, err := sesout.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// message is a rendered email to customer c of tenant acme.eu.
func message(c string) *provider.Message {
	key := event.DeliveryKey{Tenant: "acme.eu", Job: jobID, Channel: event.ChannelEmail, Customer: c}
	id := key.MessageID("herald.test")
	return &provider.Message{
		Key: key.String(), MessageID: id, From: "news@shop.example", To: c + "@example.com",
		Tenant: "acme.eu", JobID: jobID, CustomerID: c,
		Body: []byte("From: Shop <news@shop.example>\r\nTo: " + c + "@example.com\r\nSubject: hi\r\nMessage-ID: <" + id + ">\r\n" +
			"List-Unsubscribe: <https://shop.example/u/" + c + ">\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" +
			"DKIM-Signature: v=1; a=rsa-sha256; d=shop.example; s=herald; b=AAAA\r\n\r\nhello " + c + "\r\n"),
	}
}

func TestSendsRawWithConfigurationSetAndTags(t *testing.T) {
	s := startSES(t, sescatch.Options{Region: "eu-west-1", KeepRaw: true, Identities: []string{"shop.example"}, ConfigurationSets: []string{"herald"}})
	c := newClient(t, s, nil)
	var msgs []*provider.Message
	for i := range 20 {
		msgs = append(msgs, message(fmt.Sprintf("c%d", i)))
	}
	res := c.Send(t.Context(), msgs)
	got := s.Messages()
	if len(got) != len(msgs) {
		t.Fatalf("SES has %d messages, want %d", len(got), len(msgs))
	}
	byTo := map[string]sescatch.Message{}
	for _, m := range got {
		byTo[m.To[0]] = m
	}
	for i, m := range msgs {
		sent := byTo[m.To]
		if res[i].Outcome != provider.Sent || res[i].Reason != sent.MessageID {
			t.Errorf("message %d: result %+v, want sent with SES's id %q", i, res[i], sent.MessageID)
		}
		if string(sent.Raw) != string(m.Body) {
			t.Errorf("message %d: SES got\n%s\nwant the message as rendered\n%s", i, sent.Raw, m.Body)
		}
		tenantTag, deliveryTag, err := event.DeliveryKey{Tenant: m.Tenant, Job: m.JobID, Channel: event.ChannelEmail, Customer: m.CustomerID}.Tags()
		if err != nil {
			t.Fatal(err)
		}
		wantTags := map[string]string{event.TagTenant: tenantTag, event.TagDelivery: deliveryTag}
		if diff := cmp.Diff(wantTags, sent.Tags); diff != "" {
			t.Errorf("message %d: tags (-want +got):\n%s", i, diff)
		}
		if sent.ConfigurationSet != "herald" || sent.From != "news@shop.example" {
			t.Errorf("message %d: configuration set %q, from %q", i, sent.ConfigurationSet, sent.From)
		}
	}
	if c.Idempotent() {
		t.Error("SES has no idempotency key, yet the client says it is idempotent")
	}
}

// TestMapsEachError injects every error SendEmail documents, and the
// common ones, and checks the outcome each becomes.
func TestMapsEachError(t *testing.T) {
	tests := []struct {
		code     string
		want     provider.Outcome
		wantCode int
		reason   string
	}{
		{"MessageRejected", provider.Failed, 400, "SES rejected the message"},
		{"BadRequestException", provider.Failed, 400, "invalid"},
		{"AccountSuspendedException", provider.Deferred, 400, "suspended"},
		{"SendingPausedException", provider.Deferred, 400, "paused"},
		{"MailFromDomainNotVerifiedException", provider.Deferred, 400, "MAIL FROM domain is not verified"},
		{"NotFoundException", provider.Deferred, 404, "configuration set or identity"},
		{"TooManyRequestsException", provider.Throttled, 429, "slow down"},
		{"LimitExceededException", provider.Throttled, 429, "sending limit"},
		{"ThrottlingException", provider.Throttled, 429, "slow down"},
		{"AccessDeniedException", provider.Deferred, 403, "may not send"},
		{"InternalFailure", provider.Deferred, 500, "SES failed"},
		{"ServiceUnavailable", provider.Deferred, 503, "unavailable"},
		{"SomethingNew", provider.Failed, 400, "SomethingNew"},
	}
	s := startSES(t, sescatch.Options{})
	c := newClient(t, s, nil)
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			s.SetFault(func(sescatch.Request) sescatch.Fault { return sescatch.Fault{Error: tt.code, Message: "told so"} })
			res := c.Send(t.Context(), []*provider.Message{message("ann")})[0]
			if res.Outcome != tt.want || res.Code != tt.wantCode || !strings.Contains(res.Reason, tt.reason) || !strings.Contains(res.Reason, "told so") {
				t.Errorf("result %+v: want %v, code %d, a reason with %q and SES's message", res, tt.want, tt.wantCode, tt.reason)
			}
		})
	}
	if st := s.Stats(); st.Requests != int64(len(tests)) || st.Messages != 0 {
		t.Errorf("stats %+v: want one request per error (no retries) and no message", st)
	}
}

func TestWrongSecretIsAConfigurationError(t *testing.T) {
	s := startSES(t, sescatch.Options{})
	c := newClient(t, s, func(cfg *sesout.Config) { cfg.SecretAccessKey = "not-the-secret" })
	res := c.Send(t.Context(), []*provider.Message{message("ann")})[0]
	if res.Outcome != provider.Deferred || res.Code != 403 || !strings.Contains(res.Reason, "SignatureDoesNotMatch") {
		t.Errorf("result %+v: want deferred with 403 SignatureDoesNotMatch", res)
	}
	if st := s.Stats(); st.Unauthorized != 1 || st.Messages != 0 {
		t.Errorf("stats %+v: want one unauthorized request and no message", st)
	}
}

// TestNoAnswerAfterSendingIsUnknown: SES may have the message, so it is
// never sent again by the client itself.
func TestNoAnswerAfterSendingIsUnknown(t *testing.T) {
	tests := []struct {
		name  string
		fault sescatch.Fault
		cfg   func(*sesout.Config)
	}{
		{"connection dropped after accepting", sescatch.Fault{DropAfterAccept: true}, nil},
		{"connection dropped", sescatch.Fault{Drop: true}, nil},
		{"timeout", sescatch.Fault{Delay: 5 * time.Second}, func(c *sesout.Config) { c.Timeout = 100 * time.Millisecond }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startSES(t, sescatch.Options{})
			s.SetFault(func(sescatch.Request) sescatch.Fault { return tt.fault })
			res := newClient(t, s, tt.cfg).Send(t.Context(), []*provider.Message{message("ann")})[0]
			if res.Outcome != provider.Unknown {
				t.Errorf("result %+v: want unknown", res)
			}
			if st := s.Stats(); st.Requests != 1 {
				t.Errorf("SES got %d requests, want 1: the client must not retry", st.Requests)
			}
		})
	}
}

func TestUnreachableIsDeferred(t *testing.T) {
	s := startSES(t, sescatch.Options{})
	c := newClient(t, s, nil)
	s.Close()
	res := c.Send(t.Context(), []*provider.Message{message("ann")})[0]
	if res.Outcome != provider.Deferred {
		t.Errorf("result %+v: want deferred, nothing was sent", res)
	}
}

func TestTagsMapBackToTheDelivery(t *testing.T) {
	m := message("cust/with spaces+ü")
	tags := map[string]string{}
	list, err := sesout.Tags(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range list {
		tags[*tag.Name] = *tag.Value
	}
	got, err := event.ParseTags(tags[event.TagTenant], tags[event.TagDelivery])
	if err != nil {
		t.Fatal(err)
	}
	want := event.DeliveryKey{Tenant: "acme.eu", Job: jobID, Channel: event.ChannelEmail, Customer: "cust/with spaces+ü"}
	if got != want {
		t.Errorf("the tags map back to %s, want %s", got, want)
	}
}

// A message whose key cannot travel as tags is refused before SES sees it.
func TestMessageWithoutAKeyIsRefused(t *testing.T) {
	m := message("ann")
	m.JobID = "not-a-uuid"
	if _, err := sesout.Tags(m); err == nil {
		t.Fatal("Tags accepted a job id that is not a UUID")
	}
}

func TestNewRefusesIncompleteConfig(t *testing.T) {
	for name, cfg := range map[string]sesout.Config{
		"no region":    {AccessKeyID: keyID, SecretAccessKey: secret},
		"no secret":    {Region: "eu-west-1", AccessKeyID: keyID},
		"bad endpoint": {Region: "eu-west-1", AccessKeyID: keyID, SecretAccessKey: secret, Endpoint: "localhost:4566"},
	} {
		if _, err := sesout.New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

// TestUnreadableAcceptanceIsUnknown: a 200 whose body cannot be read may
// still mean the message was taken.
func TestUnreadableAcceptanceIsUnknown(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"MessageId": 42`)
	}))
	defer srv.Close()
	c, err := sesout.New(sesout.Config{Region: "eu-west-1", Endpoint: srv.URL, AccessKeyID: keyID, SecretAccessKey: secret})
	if err != nil {
		t.Fatal(err)
	}
	res := c.Send(t.Context(), []*provider.Message{message("ann")})[0]
	if res.Outcome != provider.Unknown || res.Code != http.StatusOK {
		t.Errorf("result %+v: want unknown with status 200", res)
	}
}
