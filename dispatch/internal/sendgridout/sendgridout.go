// Package sendgridout sends email through SendGrid's v3 Mail Send API
// (POST /v3/mail/send, a bearer API key), with the official Go library's
// request builder and REST client (github.com/sendgrid/sendgrid-go).
//
// Mail Send takes no raw MIME: each rendered message is taken apart
// (Parse) into its sender, subject, text and HTML bodies and the headers
// that must survive (List-Unsubscribe and List-Unsubscribe-Post among
// them), and SendGrid builds the message again. So Herald's DKIM signature
// is not sent; the message is signed by SendGrid for the domain
// authenticated in the SendGrid account, which must be the sending domain
// for DMARC to pass. SendGrid's own subscription tracking is turned off for
// every send, since it would add its own unsubscribe header and footer.
//
// A request may carry up to 1000 personalizations, but only of one content;
// Herald's messages are personalized, so each goes in a request of its own,
// Concurrency at a time. Each personalization carries custom_args naming
// its delivery (CustomArgs), which SendGrid's Event Webhook returns with
// every event for it.
//
// Outcomes: 2xx is Sent (X-Message-Id is the provider's id); 429 is
// Throttled and pauses this client until X-RateLimit-Reset; 401 and 403
// are Deferred — the API key is wrong or may not send, which counts
// against the provider's breaker — and 400, 413 and other 4xx Failed with
// SendGrid's errors as the reason; 5xx Deferred. SendGrid takes no
// idempotency key, so Idempotent is false and no answer after the request
// went out is Unknown; a failure before it went out is Deferred.
package sendgridout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sendgrid/rest"
	"github.com/sendgrid/sendgrid-go"
	"github.com/sendgrid/sendgrid-go/helpers/mail"

	"herald/dispatch/internal/provider"
	"herald/shared/event"
)

// DefaultBaseURL is SendGrid's global API host.
const DefaultBaseURL = "https://api.sendgrid.com"

// Config describes the SendGrid account and how hard to use it.
type Config struct {
	// BaseURL is the API's root. Empty means DefaultBaseURL;
	// "https://api.eu.sendgrid.com" is the EU region's.
	BaseURL string
	// APIKey is sent as a bearer token. Required.
	APIKey string
	// Concurrency is how many requests one Send keeps in flight. Zero
	// means 8.
	Concurrency int
	// Timeout bounds one request, from connecting to the end of the
	// response. Zero means 30s.
	Timeout time.Duration
	// Name identifies the provider in logs, metrics and the ledger. Empty
	// means "sendgrid:" and BaseURL's host.
	Name string
	// Transport replaces the HTTP transport, for proxies and tests. Nil
	// means a transport of its own.
	Transport http.RoundTripper
}

// The custom_args of every send, returned with each of its events.
const (
	// ArgTenant and ArgDelivery carry the ledger key as event.DeliveryKey.Tags
	// encodes it, the same values SES tags carry, so one decoder
	// (event.ParseTags) maps every provider's reports to their delivery.
	ArgTenant   = event.TagTenant
	ArgDelivery = event.TagDelivery
	// ArgKey is the ledger key as people read it, tenant/job/channel/customer,
	// for searching SendGrid's activity feed; reports are not routed by it.
	ArgKey = "herald_key"
)

// Client is a provider.Sender for one SendGrid account. It is safe for
// concurrent use.
type Client struct {
	cfg  Config
	name string
	rest *rest.Client
	// base is the request every send copies, with its own body; its
	// headers are shared and never written.
	base rest.Request
	// pausedUntil is when the last 429's X-RateLimit-Reset comes, in Unix
	// nanoseconds; until then Send answers Throttled without asking.
	pausedUntil atomic.Int64
	now         func() time.Time
}

// New checks cfg and returns a client.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("sendgridout: base URL %q is not an http(s) URL", cfg.BaseURL)
	}
	if cfg.APIKey == "" {
		return nil, errors.New("sendgridout: an API key is required")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	name := cfg.Name
	if name == "" {
		name = "sendgrid:" + u.Host
	}
	rt := cfg.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = max(16, cfg.Concurrency) // several Sends run at once
		rt = t
	}
	base := sendgrid.GetRequest(cfg.APIKey, "/v3/mail/send", strings.TrimSuffix(cfg.BaseURL, "/"))
	base.Method = rest.Post
	return &Client{
		cfg:  cfg,
		name: name,
		// No redirects: a POST that is redirected would be sent again.
		rest: &rest.Client{HTTPClient: &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}},
		base: base,
		now:  time.Now,
	}, nil
}

// Name identifies the provider.
func (c *Client) Name() string { return c.name }

// Idempotent is false: Mail Send has no idempotency key.
func (c *Client) Idempotent() bool { return false }

// Send sends each message in a request of its own, Concurrency at a time,
// and returns one result per message in order.
func (c *Client) Send(ctx context.Context, msgs []*provider.Message) []provider.Result {
	return provider.SendEach(ctx, msgs, c.cfg.Concurrency, c.send)
}

// Body is the Mail Send request for m, or an error if m cannot be taken
// apart.
func Body(m *provider.Message) ([]byte, error) {
	p, err := Parse(m.Body)
	if err != nil {
		return nil, err
	}
	v3 := mail.NewV3Mail()
	v3.SetFrom(mail.NewEmail(p.From.Name, p.From.Address))
	if p.ReplyTo != nil {
		v3.SetReplyTo(mail.NewEmail(p.ReplyTo.Name, p.ReplyTo.Address))
	}
	v3.Subject = p.Subject
	per := mail.NewPersonalization()
	per.AddTos(mail.NewEmail("", m.To))
	tenantTag, deliveryTag, err := event.DeliveryKey{Tenant: m.Tenant, Job: m.JobID, Channel: event.ChannelEmail, Customer: m.CustomerID}.Tags()
	if err != nil {
		return nil, fmt.Errorf("delivery tags: %w", err)
	}
	per.SetCustomArg(ArgTenant, tenantTag)
	per.SetCustomArg(ArgDelivery, deliveryTag)
	per.SetCustomArg(ArgKey, m.Key)
	v3.AddPersonalizations(per)
	// Mail Send wants text/plain first.
	if p.Text != "" {
		v3.AddContent(mail.NewContent("text/plain", p.Text))
	}
	if p.HTML != "" {
		v3.AddContent(mail.NewContent("text/html", p.HTML))
	}
	for k, v := range p.Headers {
		v3.SetHeader(k, v)
	}
	v3.SetTrackingSettings(mail.NewTrackingSettings().SetSubscriptionTracking(mail.NewSubscriptionTrackingSetting().SetEnable(false)))
	return json.Marshal(v3)
}

// maxPause caps how long a 429 can stop this client.
const maxPause = 10 * time.Minute

// send makes one request.
func (c *Client) send(ctx context.Context, m *provider.Message) provider.Result {
	if until := c.pausedUntil.Load(); until != 0 {
		if wait := time.Unix(0, until).Sub(c.now()); wait > 0 {
			return provider.Result{Outcome: provider.Throttled, Code: http.StatusTooManyRequests,
				Reason: "paused until SendGrid's X-RateLimit-Reset, " + wait.Round(100*time.Millisecond).String() + " left"}
		}
	}
	body, err := Body(m)
	if err != nil {
		return provider.Result{Outcome: provider.Failed, Reason: "take the rendered message apart: " + err.Error()}
	}
	req := c.base
	req.Body = body
	var wrote atomic.Bool
	trace := &httptrace.ClientTrace{WroteRequest: func(info httptrace.WroteRequestInfo) {
		if info.Err == nil {
			wrote.Store(true)
		}
	}}
	ctx, cancel := context.WithTimeout(httptrace.WithClientTrace(ctx, trace), c.cfg.Timeout)
	defer cancel()
	resp, err := c.rest.SendWithContext(ctx, req)
	if resp == nil || resp.StatusCode == 0 {
		if wrote.Load() {
			return provider.Result{Outcome: provider.Unknown, Reason: "await answer: " + err.Error()}
		}
		return provider.Result{Outcome: provider.Deferred, Reason: "send request: " + err.Error()}
	}
	// An answer whose body broke off still has its status, which is all a
	// 202 says.
	return c.answer(resp.StatusCode, http.Header(resp.Headers), resp.Body)
}

// answer maps SendGrid's answer onto a result.
func (c *Client) answer(status int, header http.Header, body string) provider.Result {
	switch {
	case status >= 200 && status < 300:
		return provider.Result{Outcome: provider.Sent, Code: status, Reason: header.Get("X-Message-Id")}
	case status == http.StatusTooManyRequests:
		res := provider.Result{Outcome: provider.Throttled, Code: status, Reason: errorText(status, body)}
		if reset, ok := rateLimitReset(header.Get("X-RateLimit-Reset")); ok {
			if d := min(reset.Sub(c.now()), maxPause); d > 0 {
				c.pause(c.now().Add(d))
				res.Reason += "; paused until X-RateLimit-Reset " + reset.UTC().Format(time.RFC3339)
			}
		}
		return res
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return provider.Result{Outcome: provider.Deferred, Code: status, Reason: "SendGrid refused the API key (wrong, revoked, or without the mail.send scope): " + errorText(status, body)}
	case status >= 500:
		return provider.Result{Outcome: provider.Deferred, Code: status, Reason: errorText(status, body)}
	case status >= 400:
		return provider.Result{Outcome: provider.Failed, Code: status, Reason: errorText(status, body)}
	default:
		// A redirect or an informational status: whether the message went
		// is not known.
		return provider.Result{Outcome: provider.Unknown, Code: status, Reason: errorText(status, body)}
	}
}

// pause stops requests until t, unless a longer pause is on.
func (c *Client) pause(t time.Time) {
	until := t.UnixNano()
	for {
		cur := c.pausedUntil.Load()
		if cur >= until || c.pausedUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

// rateLimitReset parses X-RateLimit-Reset: when the limit resets, in Unix
// seconds.
func rateLimitReset(v string) (time.Time, bool) {
	secs, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || secs <= 0 {
		return time.Time{}, false
	}
	return time.Unix(secs, 0), true
}

// errorText is the status and SendGrid's errors, each with its field:
// {"errors": [{"message": "…", "field": "…", "help": "…"}]}.
func errorText(status int, body string) string {
	text := strconv.Itoa(status) + " " + http.StatusText(status)
	var e struct {
		Errors []struct {
			Message string `json:"message"`
			Field   string `json:"field"`
		} `json:"errors"`
	}
	if json.Unmarshal([]byte(body), &e) != nil || len(e.Errors) == 0 {
		return text
	}
	var b strings.Builder
	b.WriteString(text)
	for i, x := range e.Errors {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		if x.Field != "" {
			b.WriteString(x.Field + ": ")
		}
		b.WriteString(x.Message)
	}
	return b.String()
}
