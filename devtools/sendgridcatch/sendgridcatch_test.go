package sendgridcatch_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sendgrid/rest"
	"github.com/sendgrid/sendgrid-go"
	"github.com/sendgrid/sendgrid-go/helpers/mail"

	"herald/devtools/sendgridcatch"
)

const apiKey = "SG.herald-test.key"

func start(t *testing.T, opts sendgridcatch.Options) *sendgridcatch.Server {
	t.Helper()
	if opts.APIKey == "" {
		opts.APIKey = apiKey
	}
	s, err := sendgridcatch.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// send sends m with the SendGrid library, as its README shows.
func send(t *testing.T, s *sendgridcatch.Server, key string, m *mail.SGMailV3) *rest.Response {
	t.Helper()
	c := &sendgrid.Client{Request: sendgrid.GetRequest(key, "/v3/mail/send", s.URL())}
	c.Method = rest.Post
	resp, err := c.SendWithContext(t.Context(), m)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func email() *mail.SGMailV3 {
	m := mail.NewSingleEmail(mail.NewEmail("Shop", "news@shop.example"), "Your picks", mail.NewEmail("Ann", "ann@example.com"), "text", "<p>html</p>")
	m.Personalizations[0].SetCustomArg("herald_key", "acme/job/email/ann")
	m.SetHeader("List-Unsubscribe", "<https://shop.example/u/1>")
	return m
}

func TestAcceptsWhatTheLibrarySends(t *testing.T) {
	s := start(t, sendgridcatch.Options{})
	resp := send(t, s, apiKey, email())
	id := http.Header(resp.Headers).Get("X-Message-Id")
	if resp.StatusCode != http.StatusAccepted || id == "" || resp.Body != "" {
		t.Fatalf("answer %d %q, X-Message-Id %q: want 202, an empty body and an id", resp.StatusCode, resp.Body, id)
	}
	got := s.Messages()
	want := []sendgridcatch.Message{{
		MessageID: id, From: sendgridcatch.Address{Email: "news@shop.example", Name: "Shop"}, To: []string{"ann@example.com"},
		Subject: "Your picks", Text: "text", HTML: "<p>html</p>",
		Headers: map[string]string{"List-Unsubscribe": "<https://shop.example/u/1>"}, CustomArgs: map[string]string{"herald_key": "acme/job/email/ann"},
	}}
	if diff := cmp.Diff(want, got, cmpIgnoreReceived); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
}

var cmpIgnoreReceived = cmp.Transformer("noReceived", func(m sendgridcatch.Message) sendgridcatch.Message {
	m.Received = time.Time{}
	return m
})

func TestRefusesKeys(t *testing.T) {
	s := start(t, sendgridcatch.Options{ForbiddenKeys: []string{"SG.read-only"}})
	for key, status := range map[string]int{"SG.wrong": 401, "": 401, "SG.read-only": 403} {
		resp := send(t, s, key, email())
		if resp.StatusCode != status || !strings.Contains(resp.Body, `"errors":[{"message":`) {
			t.Errorf("key %q: answer %d %s, want %d with an errors body", key, resp.StatusCode, resp.Body, status)
		}
	}
	if st := s.Stats(); st.Unauthorized != 3 || st.Messages != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestValidatesTheDocumentedRules(t *testing.T) {
	tests := []struct {
		name   string
		change func(*mail.SGMailV3)
		fields []string
	}{
		{"no personalizations", func(m *mail.SGMailV3) { m.Personalizations = nil }, []string{"personalizations"}},
		{"no to", func(m *mail.SGMailV3) { m.Personalizations[0].To = nil }, []string{"personalizations.0.to"}},
		{"bad address", func(m *mail.SGMailV3) { m.Personalizations[0].To[0].Address = "ann at example" }, []string{"personalizations.0.to.0.email"}},
		{"no from", func(m *mail.SGMailV3) { m.From = nil }, []string{"from.email"}},
		{"no subject", func(m *mail.SGMailV3) { m.Subject = "" }, []string{"subject"}},
		{"no content", func(m *mail.SGMailV3) { m.Content = nil }, []string{"content"}},
		{"html before text", func(m *mail.SGMailV3) { m.Content[0], m.Content[1] = m.Content[1], m.Content[0] }, []string{"content.1.type"}},
		{"reserved header", func(m *mail.SGMailV3) { m.SetHeader("DKIM-Signature", "v=1") }, []string{"headers"}},
		{"custom_args too large", func(m *mail.SGMailV3) {
			m.Personalizations[0].SetCustomArg("big", strings.Repeat("x", 10000))
		}, []string{"personalizations.0.custom_args"}},
		{"too many recipients", func(m *mail.SGMailV3) {
			for i := range 1000 {
				m.Personalizations[0].AddTos(mail.NewEmail("", "u"+strconv.Itoa(i)+"@example.com"))
			}
		}, []string{"personalizations"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, sendgridcatch.Options{})
			m := email()
			tt.change(m)
			resp := send(t, s, apiKey, m)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("answer %d %s, want 400", resp.StatusCode, resp.Body)
			}
			var fields []string
			for _, e := range parseErrors(t, resp.Body) {
				if e.Field == nil || e.Message == "" {
					t.Errorf("error %+v: want a field and a message", e)
					continue
				}
				fields = append(fields, *e.Field)
			}
			if diff := cmp.Diff(tt.fields, fields); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
			if st := s.Stats(); st.Invalid != 1 || st.Messages != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestTooLarge(t *testing.T) {
	s := start(t, sendgridcatch.Options{MaxBodyBytes: 1024})
	m := email()
	m.Content[1].Value = strings.Repeat("x", 2048)
	if resp := send(t, s, apiKey, m); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("answer %d %s, want 413", resp.StatusCode, resp.Body)
	}
}

func TestRateLimitFault(t *testing.T) {
	s := start(t, sendgridcatch.Options{})
	reset := time.Unix(1_800_000_000, 0)
	var seen sendgridcatch.Request
	s.SetFault(func(r sendgridcatch.Request) sendgridcatch.Fault {
		seen = r
		return sendgridcatch.Fault{Status: http.StatusTooManyRequests, RateLimitReset: reset}
	})
	resp := send(t, s, apiKey, email())
	h := http.Header(resp.Headers)
	if resp.StatusCode != 429 || h.Get("X-RateLimit-Reset") != "1800000000" || h.Get("X-RateLimit-Remaining") != "0" {
		t.Errorf("answer %d, headers %v: want 429 with the reset", resp.StatusCode, h)
	}
	if diff := cmp.Diff(sendgridcatch.Request{To: []string{"ann@example.com"}, Keys: []string{"acme/job/email/ann"}}, seen); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	if st := s.Stats(); st.Faulted != 1 || st.Messages != 0 {
		t.Errorf("stats %+v", st)
	}
}

func parseErrors(t *testing.T, body string) []sendgridcatch.Error {
	t.Helper()
	var e struct {
		Errors []sendgridcatch.Error `json:"errors"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return e.Errors
}
