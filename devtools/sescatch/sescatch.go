// Package sescatch is a local Amazon SES API v2 endpoint for tests,
// benchmarks and local runs of Herald's SES adapter, with the official SDK
// as its client. It implements SendEmail as the API reference documents it:
//
//	POST /v2/email/outbound-emails
//	Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…
//	X-Amz-Date: 20261204T200000Z
//	Content-Type: application/json
//
//	{"FromEmailAddress": "news@shop.example",
//	 "Destination": {"ToAddresses": ["ann@example.com"]},
//	 "Content": {"Raw": {"Data": "<the MIME message, base64>"}},
//	 "ConfigurationSetName": "herald",
//	 "EmailTags": [{"Name": "herald-job", "Value": "…"}, …]}
//
// answered 200 {"MessageId": "…"}, or with an error: the status SES uses,
// the error code in the X-Amzn-ErrorType header (and __type), and
// {"message": "…"} — which the SDK turns into its typed errors
// (*types.MessageRejected and so on).
//
// Every request's SigV4 signature is verified: the server signs the request
// it received again with the secret access key it was given and compares.
// A request signed with another secret, for another region or service, too
// far from the server's clock, or changed after signing (its body
// included) is refused 403, as SES refuses it.
//
// Like SES, it checks what it can: exactly one kind of content, a raw
// message that parses, tag names and values made only of ASCII letters,
// digits, '_' and '-' (at most 256), at most 50 recipients; with
// Options.Identities, that the sender is a verified identity; with
// Options.ConfigurationSets, that the configuration set exists. Unlike SES
// it records every accepted message where a test can read it, and it can
// be told to answer any error SES answers, late, or not at all.
package sescatch

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"herald/devtools/fakeapi"
)

// signingName is SES's name in SigV4 credential scopes.
const signingName = "ses"

// DefaultMaxMessageBytes is the largest raw message SES API v2 takes.
const DefaultMaxMessageBytes = 40 << 20

// Options configures Start.
type Options struct {
	// Addr is the listen address. Empty means "127.0.0.1:0".
	Addr string
	// Region is the region requests must be signed for. Empty means
	// "us-east-1".
	Region string
	// AccessKeyID and SecretAccessKey are the only credentials accepted.
	// Required.
	AccessKeyID     string
	SecretAccessKey string
	// Identities, when set, are the verified identities: addresses, or
	// domains that verify every address at them. A sender that is none of
	// them is refused with MessageRejected, as SES refuses it.
	Identities []string
	// ConfigurationSets, when set, are the configuration sets that exist;
	// a send naming another is refused with NotFoundException.
	ConfigurationSets []string
	// MaxMessageBytes bounds a raw message. Zero means
	// DefaultMaxMessageBytes.
	MaxMessageBytes int
	// KeepRaw keeps every accepted message's content for Messages.
	KeepRaw bool
	// Now is the clock a signature's date is checked against. Nil means
	// time.Now.
	Now func() time.Time
	// Log receives start, stop and error messages. Nil discards them.
	Log *slog.Logger
}

// Request describes a SendEmail call to the fault hook, once its signature
// has been verified and its body read.
type Request struct {
	From string
	// To are the Destination's addresses, To, Cc and Bcc.
	To []string
	// Tags are the EmailTags, by name.
	Tags map[string]string
}

// Fault is what the fault hook makes of a request. The zero Fault lets it
// through.
type Fault struct {
	// Delay holds the request this long before it is handled.
	Delay time.Duration
	// Error answers with this SES error code instead of sending: one of
	// SendEmail's ("MessageRejected", "TooManyRequestsException", …) or a
	// common AWS error ("ThrottlingException", "InternalFailure", …), with
	// the status SES gives it (Status).
	Error string
	// Message is the error's message. Empty means a generic one.
	Message string
	// Drop closes the connection without an answer and without sending.
	Drop bool
	// DropAfterAccept accepts the message, then closes the connection
	// without an answer: the client cannot know it was sent.
	DropAfterAccept bool
}

// Message is an accepted message.
type Message struct {
	// MessageID is the id the server answered with.
	MessageID        string
	From             string
	To               []string
	ConfigurationSet string
	Tags             map[string]string
	Size             int
	Received         time.Time
	// Raw is the content, kept with Options.KeepRaw.
	Raw []byte
}

// Stats counts what the server saw.
type Stats struct {
	// Requests counts SendEmail requests, refused ones included.
	Requests int64 `json:"requests"`
	// Unauthorized counts requests whose signature was refused.
	Unauthorized int64 `json:"unauthorized"`
	// Faulted counts requests the fault hook answered, delayed or dropped.
	Faulted int64 `json:"faulted"`
	// Messages counts accepted messages.
	Messages int64 `json:"messages"`
	// Rejected counts requests refused for their content.
	Rejected int64 `json:"rejected"`
}

// Server is a running local SES endpoint.
type Server struct {
	opts    Options
	creds   aws.Credentials
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
	if opts.AccessKeyID == "" || opts.SecretAccessKey == "" {
		return nil, fmt.Errorf("start sescatch: an access key id and a secret access key are required")
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:    opts,
		creds:   aws.Credentials{AccessKeyID: opts.AccessKeyID, SecretAccessKey: opts.SecretAccessKey},
		log:     log.With("component", "sescatch"),
		closing: make(chan struct{}),
	}
	s.handler = s.newHandler()
	hs, err := fakeapi.Listen(ctx, opts.Addr, s.handler, s.log)
	if err != nil {
		return nil, fmt.Errorf("start sescatch: %w", err)
	}
	s.api = hs
	s.log.Info("sescatch listening", "url", hs.URL, "region", opts.Region)
	return s, nil
}

// URL is the endpoint, "http://host:port": the SDK's BaseEndpoint.
func (s *Server) URL() string { return s.api.URL }

// Region is the region requests must be signed for.
func (s *Server) Region() string { return s.opts.Region }

// Handler returns the API, for serving it elsewhere (httptest).
func (s *Server) Handler() http.Handler { return s.handler }

// SetFault installs f to be asked about every verified, well-formed
// request; nil removes it.
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
		return fmt.Errorf("close sescatch: %w", err)
	}
	return nil
}
