// Package sesout sends email through Amazon SES with the API v2 SendEmail
// operation, using the official SDK (github.com/aws/aws-sdk-go-v2/service/sesv2).
//
// Each message goes as raw content, byte for byte as render built it (and
// as dispatch signed it): its List-Unsubscribe, Feedback-ID and
// DKIM-Signature headers reach the receiver unchanged. Every send names
// the configuration set whose event destinations publish the message's
// deliveries, bounces and complaints, and carries three message tags that
// map each such event back to exactly one delivery (see Tags).
//
// SES takes no idempotency key, so Idempotent reports false: a request
// that may have been accepted — no answer after it was written — is
// Unknown, and dispatch records it ambiguous instead of sending it again.
// The SDK's own retries are off for the same reason. How each documented
// error of SendEmail maps onto an outcome is Classify's business.
package sesout

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"

	"herald/dispatch/internal/provider"
)

// Config describes the SES account and how hard to use it.
type Config struct {
	// Region is the AWS region whose SES endpoint is used, such as
	// "eu-west-1". Required.
	Region string
	// Endpoint replaces the region's endpoint, such as
	// "http://127.0.0.1:4566" for a local server. Empty means AWS's.
	Endpoint string
	// AccessKeyID and SecretAccessKey are the static credentials that sign
	// every request (SigV4); SessionToken goes with temporary ones.
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// ConfigurationSet names the configuration set every message is sent
	// with; its event destinations publish the message's events. Empty
	// sends without one (and without events).
	ConfigurationSet string
	// Concurrency is how many SendEmail calls one Send keeps in flight.
	// Zero means 8.
	Concurrency int
	// Timeout bounds one call, from connecting to the end of the
	// response. Zero means 30s.
	Timeout time.Duration
	// Name identifies the provider in logs, metrics and the ledger. Empty
	// means "ses:" and the region.
	Name string
	// Transport replaces the HTTP transport, for proxies and tests. Nil
	// means a transport of its own.
	Transport http.RoundTripper
}

// Client is a provider.Sender for one SES account in one region. It is
// safe for concurrent use.
type Client struct {
	cfg  Config
	name string
	api  *sesv2.Client
}

// New checks cfg and returns a client.
func New(cfg Config) (*Client, error) {
	if cfg.Region == "" {
		return nil, errors.New("sesout: a region is required")
	}
	if cfg.AccessKeyID == "" || cfg.SecretAccessKey == "" {
		return nil, errors.New("sesout: an access key id and a secret access key are required")
	}
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("sesout: endpoint %q is not an http(s) URL", cfg.Endpoint)
		}
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	name := cfg.Name
	if name == "" {
		name = "ses:" + cfg.Region
	}
	rt := cfg.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = max(16, cfg.Concurrency) // several Sends run at once
		rt = t
	}
	opts := sesv2.Options{
		Region:      cfg.Region,
		Credentials: credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken),
		HTTPClient:  &http.Client{Transport: rt},
		// A retried SendEmail may be a second copy of the message: every
		// attempt is dispatch's to decide.
		Retryer: aws.NopRetryer{},
	}
	if cfg.Endpoint != "" {
		opts.BaseEndpoint = aws.String(cfg.Endpoint)
	}
	return &Client{cfg: cfg, name: name, api: sesv2.New(opts)}, nil
}

// Name identifies the provider.
func (c *Client) Name() string { return c.name }

// Idempotent is false: SES has no idempotency key, and a repeated
// SendEmail sends the message again.
func (c *Client) Idempotent() bool { return false }

// Send calls SendEmail once per message, Concurrency calls at a time, and
// returns one result per message in order.
func (c *Client) Send(ctx context.Context, msgs []*provider.Message) []provider.Result {
	return provider.SendEach(ctx, msgs, c.cfg.Concurrency, c.send)
}

// send makes one SendEmail call.
func (c *Client) send(ctx context.Context, m *provider.Message) provider.Result {
	tags, err := Tags(m)
	if err != nil {
		// A message whose key cannot travel could never be matched to
		// its reports; it is refused before SES sees it.
		return provider.Result{Outcome: provider.Failed, Reason: "delivery tags: " + err.Error()}
	}
	in := &sesv2.SendEmailInput{
		FromEmailAddress: aws.String(m.From),
		Destination:      &types.Destination{ToAddresses: []string{m.To}},
		Content:          &types.EmailContent{Raw: &types.RawMessage{Data: m.Body}},
		EmailTags:        tags,
	}
	if c.cfg.ConfigurationSet != "" {
		in.ConfigurationSetName = aws.String(c.cfg.ConfigurationSet)
	}
	// Whether the whole request was written decides, on an error without
	// an answer, between Deferred (SES cannot have it) and Unknown.
	var wrote atomic.Bool
	trace := &httptrace.ClientTrace{WroteRequest: func(info httptrace.WroteRequestInfo) {
		if info.Err == nil {
			wrote.Store(true)
		}
	}}
	ctx, cancel := context.WithTimeout(httptrace.WithClientTrace(ctx, trace), c.cfg.Timeout)
	defer cancel()
	resp, err := c.api.SendEmail(ctx, in)
	if err != nil {
		return Classify(err, wrote.Load())
	}
	return provider.Result{Outcome: provider.Sent, Code: http.StatusOK, Reason: aws.ToString(resp.MessageId)}
}
