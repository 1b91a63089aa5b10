// Package espcatch is a fake email service provider (ESP) with an HTTP
// batch-send API, for tests, benchmarks and local runs of Herald's ESP
// adapter. Like a real ESP it deduplicates by idempotency key, so a
// client may resend a batch whose answer it never got; unlike one it
// records every message where a test can count it, and it can be told to
// fail: answer a request with 5xx or 429, answer late, or drop the
// connection before or after accepting the messages.
//
// The API:
//
//	POST /v1/send      SendRequest in, SendResponse out (status 200), or a
//	                   whole-request error: 400 malformed, 401 bad key,
//	                   413 too large, 429 slow down (Retry-After), 5xx
//	GET  /api/stats    Stats
//	GET  /api/messages?to=ADDR&limit=N   the newest N accepted messages
//	POST /api/lookup   {"message_ids":[...]} in, {"found":[...]} out
//
// The lookup speaks the same protocol as mailcatch's, so a sender can
// reconcile against either.
package espcatch

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"herald/devtools/fakeapi"
)

// Limits of the API.
const (
	// DefaultMaxBatch is the most messages one request may carry unless
	// Options.MaxBatch says otherwise.
	DefaultMaxBatch = 1000
	// DefaultMaxRequestBytes bounds a request body unless
	// Options.MaxRequestBytes says otherwise; larger requests get 413.
	DefaultMaxRequestBytes = 32 << 20
	// MaxKeyBytes bounds an idempotency key.
	MaxKeyBytes = 255
)

// SendRequest is the body of POST /v1/send.
type SendRequest struct {
	Messages []SendMessage `json:"messages"`
}

// SendMessage is one message of a request, to one recipient.
type SendMessage struct {
	// IdempotencyKey identifies the message for good: a message whose key
	// was accepted before is not sent again, and its earlier result is
	// returned with Duplicate set. Required, at most MaxKeyBytes bytes.
	IdempotencyKey string `json:"idempotency_key"`
	// From is the envelope sender (the bounce address), To the recipient.
	From string `json:"from"`
	To   string `json:"to"`
	// MessageID is the message's Message-ID without angle brackets; the
	// lookup API finds messages by it. Optional.
	MessageID string `json:"message_id,omitempty"`
	// Raw is the complete RFC 5322 message, base64 in JSON.
	Raw []byte `json:"raw"`
}

// SendResponse is the answer to a request that was read: one result per
// message, in the request's order.
type SendResponse struct {
	Results []Result `json:"results"`
}

// Result is one message's outcome. Status is an HTTP status code: 202
// accepted; 4xx refused for good (400 invalid, 409 key reused for another
// recipient, 422 refused recipient); 429 and 5xx refused for now.
type Result struct {
	IdempotencyKey string `json:"idempotency_key"`
	Status         int    `json:"status"`
	// ID is the provider's id of an accepted message.
	ID string `json:"id,omitempty"`
	// Duplicate marks a result recorded for an earlier request with the
	// same key.
	Duplicate bool   `json:"duplicate,omitempty"`
	Error     string `json:"error,omitempty"`
	// HardBounce marks a refusal because the address does not exist or
	// refuses all mail; the sender should stop mailing it.
	HardBounce bool `json:"hard_bounce,omitempty"`
}

// Options configures Start.
type Options struct {
	// Addr is the listen address. Empty means "127.0.0.1:0".
	Addr string
	// APIKey, when set, must come as "Authorization: Bearer <APIKey>".
	APIKey string
	// MaxBatch and MaxRequestBytes override the defaults.
	MaxBatch        int
	MaxRequestBytes int64
	// KeepRaw keeps every accepted message's content for Messages.
	// Without it only metadata is kept.
	KeepRaw bool
	// Log receives start, stop and error messages. Nil discards them.
	Log *slog.Logger
}

// Request describes a send request to the fault hook.
type Request struct {
	// Keys are the idempotency keys of its messages, in order.
	Keys []string
}

// Fault is what the fault hook makes of a request. The zero Fault lets it
// through.
type Fault struct {
	// Delay holds the request this long before it is handled.
	Delay time.Duration
	// Status answers the whole request with this status, handling none of
	// its messages: 5xx, 429 and so on.
	Status int
	// RetryAfter is sent in the Retry-After header (whole seconds, rounded
	// up) with Status.
	RetryAfter time.Duration
	// Drop closes the connection without an answer and without handling
	// the messages.
	Drop bool
	// DropAfterAccept handles the messages, then closes the connection
	// without an answer: the client cannot know they were accepted.
	DropAfterAccept bool
}

// Rejection refuses one message; see Result for the meaning of Status.
type Rejection struct {
	Status     int
	Error      string
	HardBounce bool
}

// Message is an accepted message.
type Message struct {
	IdempotencyKey string    `json:"idempotency_key"`
	ID             string    `json:"id"`
	MessageID      string    `json:"message_id,omitempty"`
	From           string    `json:"from"`
	To             string    `json:"to"`
	Size           int       `json:"size"`
	Received       time.Time `json:"received"`
	// Raw is the content, kept with Options.KeepRaw.
	Raw []byte `json:"-"`
}

// Stats counts what the server saw.
type Stats struct {
	// Requests counts send requests, faulted ones included.
	Requests int64 `json:"requests"`
	// Faulted counts requests the fault hook answered, delayed or dropped.
	Faulted int64 `json:"faulted"`
	// Messages counts distinct accepted messages: keys accepted once.
	Messages int64 `json:"messages"`
	// Duplicates counts messages answered from an earlier result of their
	// key, accepted or refused.
	Duplicates int64 `json:"duplicates"`
	// Rejected counts messages refused: invalid, by the rejection hook, or
	// for a key reused with another recipient.
	Rejected int64 `json:"rejected"`
}

// Server is a running fake ESP.
type Server struct {
	opts    Options
	log     *slog.Logger
	api     *fakeapi.Server
	handler http.Handler
	closing chan struct{}
	// inflight counts send requests being handled; Close waits for them.
	inflight sync.WaitGroup

	fault  func(Request) Fault
	reject func(SendMessage) *Rejection

	mu       sync.Mutex
	closed   bool
	stats    Stats
	done     map[string]*entry // idempotency key to its recorded result
	byMsgID  map[string]bool
	messages []Message
}

// entry is a key's final result: accepted, or refused for good.
type entry struct {
	to     string
	result Result
}

// Start listens on opts.Addr and serves the API until Close.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:    opts,
		log:     log.With("component", "espcatch"),
		closing: make(chan struct{}),
		done:    make(map[string]*entry),
		byMsgID: make(map[string]bool),
	}
	s.handler = s.newHandler()
	hs, err := fakeapi.Listen(ctx, opts.Addr, s.handler, s.log)
	if err != nil {
		return nil, fmt.Errorf("start espcatch: %w", err)
	}
	s.api = hs
	s.log.Info("espcatch listening", "url", hs.URL)
	return s, nil
}

// URL is the API's base URL, "http://host:port".
func (s *Server) URL() string { return s.api.URL }

// Handler returns the API, for serving it elsewhere (httptest).
func (s *Server) Handler() http.Handler { return s.handler }

// SetFault installs f to be asked about every send request after it has
// been read; nil removes it.
func (s *Server) SetFault(f func(Request) Fault) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

// SetReject installs f to be asked about every valid message not seen
// before; a non-nil Rejection refuses it. A refusal with a 4xx status
// other than 429 is final and returned again for the same key; others
// leave the key free for a retry. nil removes it.
func (s *Server) SetReject(f func(SendMessage) *Rejection) {
	s.mu.Lock()
	s.reject = f
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

// Has reports whether a message with this idempotency key was accepted.
func (s *Server) Has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.done[key]
	return ok && e.result.Status == http.StatusAccepted
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
		return fmt.Errorf("close espcatch: %w", err)
	}
	return nil
}

// handle decides every message of a request, recording what it accepts.
func (s *Server) handle(req *SendRequest) SendResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	reject := s.reject
	out := SendResponse{Results: make([]Result, len(req.Messages))}
	now := time.Now()
	for i := range req.Messages {
		m := &req.Messages[i]
		res := &out.Results[i]
		res.IdempotencyKey = m.IdempotencyKey
		if msg := invalid(m); msg != "" {
			*res = Result{IdempotencyKey: m.IdempotencyKey, Status: http.StatusBadRequest, Error: msg}
			s.stats.Rejected++
			continue
		}
		if e, ok := s.done[m.IdempotencyKey]; ok {
			if !strings.EqualFold(e.to, m.To) {
				*res = Result{IdempotencyKey: m.IdempotencyKey, Status: http.StatusConflict, Error: "idempotency key already used for another recipient"}
				s.stats.Rejected++
				continue
			}
			*res = e.result
			res.Duplicate = true
			s.stats.Duplicates++
			continue
		}
		if reject != nil {
			if r := reject(*m); r != nil {
				*res = Result{IdempotencyKey: m.IdempotencyKey, Status: r.Status, Error: r.Error, HardBounce: r.HardBounce}
				s.stats.Rejected++
				if r.Status >= 400 && r.Status < 500 && r.Status != http.StatusTooManyRequests {
					s.done[m.IdempotencyKey] = &entry{to: m.To, result: *res}
				}
				continue
			}
		}
		s.stats.Messages++
		id := "esp-" + strconv.FormatInt(s.stats.Messages, 10)
		*res = Result{IdempotencyKey: m.IdempotencyKey, Status: http.StatusAccepted, ID: id}
		s.done[m.IdempotencyKey] = &entry{to: m.To, result: *res}
		rec := Message{IdempotencyKey: m.IdempotencyKey, ID: id, MessageID: m.MessageID, From: m.From, To: m.To, Size: len(m.Raw), Received: now}
		if s.opts.KeepRaw {
			rec.Raw = m.Raw
		}
		s.messages = append(s.messages, rec)
		if m.MessageID != "" {
			s.byMsgID[m.MessageID] = true
		}
	}
	return out
}

// invalid says what is wrong with a message, or "".
func invalid(m *SendMessage) string {
	switch {
	case m.IdempotencyKey == "":
		return "idempotency_key is required"
	case len(m.IdempotencyKey) > MaxKeyBytes:
		return "idempotency_key is longer than " + strconv.Itoa(MaxKeyBytes) + " bytes"
	case !strings.Contains(m.To, "@"):
		return "to is not an email address"
	case len(m.Raw) == 0:
		return "raw is empty"
	}
	return ""
}
