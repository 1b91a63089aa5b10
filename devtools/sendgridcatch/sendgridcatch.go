// Package sendgridcatch is a local SendGrid v3 Mail Send endpoint for
// tests, benchmarks and local runs of Herald's SendGrid adapter. It speaks
// the API as SendGrid documents it:
//
//	POST /v3/mail/send
//	Authorization: Bearer <API key>
//	Content-Type: application/json
//
//	{"personalizations": [{"to": [{"email": "ann@example.com"}],
//	                       "custom_args": {"herald_key": "…"}}],
//	 "from": {"email": "news@shop.example", "name": "Shop"},
//	 "subject": "…",
//	 "content": [{"type": "text/plain", "value": "…"}, {"type": "text/html", "value": "…"}],
//	 "headers": {"List-Unsubscribe": "<…>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}}
//
// answered 202 with an empty body and the message's id in X-Message-Id, or
// with a status and SendGrid's error body,
//
//	{"errors": [{"message": "…", "field": "…", "help": "…"}]}
//
// 401 for a missing or wrong key, 403 for a key that may not send, 400
// with one error per problem for a body that breaks the documented rules
// (the required fields, 1 to 1000 personalizations and recipients, text/plain
// before text/html, reserved headers, custom_args under 10,000 bytes),
// 413 for a body over Options.MaxBodyBytes, and 429 with the
// X-RateLimit-Limit, -Remaining and -Reset headers when the fault hook says
// so. It records every accepted personalization as a Message.
package sendgridcatch

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"herald/devtools/fakeapi"
)

// DefaultMaxBodyBytes bounds a request body unless Options.MaxBodyBytes
// says otherwise: SendGrid's limit of 30 MB per email.
const DefaultMaxBodyBytes = 30 << 20

// Options configures Start.
type Options struct {
	// Addr is the listen address. Empty means "127.0.0.1:0".
	Addr string
	// APIKey is the key that may send. Required.
	APIKey string
	// ForbiddenKeys are keys that authenticate but lack the mail.send
	// scope: answered 403.
	ForbiddenKeys []string
	// MaxBodyBytes overrides DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Now is the clock messages are stamped with. Nil means time.Now.
	Now func() time.Time
	// Log receives start, stop and error messages. Nil discards them.
	Log *slog.Logger
}

// Request describes a valid, authorized request to the fault hook.
type Request struct {
	// To are the first recipient of each personalization.
	To []string
	// Keys are each personalization's custom_args["herald_key"].
	Keys []string
}

// Fault is what the fault hook makes of a request. The zero Fault lets it
// through.
type Fault struct {
	// Delay holds the request this long before it is handled.
	Delay time.Duration
	// Status answers with this status instead of sending, with Errors (or
	// one generic error) as the body.
	Status int
	Errors []Error
	// RateLimitReset, with Status 429, is sent in X-RateLimit-Reset.
	RateLimitReset time.Time
	// Drop closes the connection without an answer and without sending.
	Drop bool
	// DropAfterAccept accepts the request, then closes the connection
	// without an answer.
	DropAfterAccept bool
}

// Error is one entry of an error body.
type Error struct {
	Message string  `json:"message"`
	Field   *string `json:"field"`
	Help    *string `json:"help"`
}

// Message is one accepted personalization: one email.
type Message struct {
	// MessageID is the X-Message-Id of its request.
	MessageID string
	From      Address
	To        []string
	Subject   string
	Text      string
	HTML      string
	// Headers are the request's and the personalization's headers.
	Headers map[string]string
	// CustomArgs are the request's and the personalization's custom_args.
	CustomArgs map[string]string
	// TrackingSettings is the request's tracking_settings, as sent.
	TrackingSettings string
	Received         time.Time
}

// Stats counts what the server saw.
type Stats struct {
	// Requests counts Mail Send requests, refused ones included.
	Requests int64 `json:"requests"`
	// Unauthorized counts requests refused 401 or 403.
	Unauthorized int64 `json:"unauthorized"`
	// Invalid counts requests refused 400 or 413.
	Invalid int64 `json:"invalid"`
	// Faulted counts requests the fault hook answered, delayed or dropped.
	Faulted int64 `json:"faulted"`
	// Messages counts accepted personalizations.
	Messages int64 `json:"messages"`
}

// Server is a running local Mail Send endpoint.
type Server struct {
	opts    Options
	log     *slog.Logger
	api     *fakeapi.Server
	handler http.Handler
	closing chan struct{}
	// inflight counts requests being handled; Close waits for them.
	inflight sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	fault    func(Request) Fault
	stats    Stats
	seq      int64
	messages []Message
}

// Start listens on opts.Addr and serves the API until Close.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.APIKey == "" {
		return nil, fmt.Errorf("start sendgridcatch: an API key is required")
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, log: log.With("component", "sendgridcatch"), closing: make(chan struct{})}
	s.handler = s.newHandler()
	hs, err := fakeapi.Listen(ctx, opts.Addr, s.handler, s.log)
	if err != nil {
		return nil, fmt.Errorf("start sendgridcatch: %w", err)
	}
	s.api = hs
	s.log.Info("sendgridcatch listening", "url", hs.URL)
	return s, nil
}

// URL is the API's base URL, "http://host:port".
func (s *Server) URL() string { return s.api.URL }

// Handler returns the API, for serving it elsewhere (httptest).
func (s *Server) Handler() http.Handler { return s.handler }

// SetFault installs f to be asked about every valid, authorized request;
// nil removes it.
func (s *Server) SetFault(f func(Request) Fault) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

// Stats returns the counters at this moment.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Messages returns the accepted messages in arrival order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.messages)
}

// Close stops the server, cuts requests held by a fault's delay short,
// and waits for requests being handled. Later calls do nothing.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.closing)
	err := s.api.Close()
	s.inflight.Wait()
	if err != nil {
		return fmt.Errorf("close sendgridcatch: %w", err)
	}
	return nil
}
