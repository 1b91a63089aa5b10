// Package adcatch is a fake ad platform for tests and local runs of
// Herald's ads adapter. It keeps customer-match audiences: sets of
// SHA-256 hashed, normalized email addresses, each with the creatives
// that target it. Adding a member twice or removing an absent one changes
// nothing, as on real platforms, so a client may repeat any request. Like
// espcatch it can be told to fail: answer with 5xx or 429, answer late,
// or drop the connection before or after applying a request.
//
// The API:
//
//	POST /v1/audiences/{audience}/members   MembersRequest in, MembersResponse out
//	GET  /v1/audiences/{audience}           Audience
//	GET  /api/stats                         Stats
//
// Errors are {"error": {"message": "…"}} with 400 (malformed), 401 (bad
// key), 413 (too large), 429 (slow down, with Retry-After) or 5xx.
package adcatch

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

// Limits of the API.
const (
	// DefaultMaxMembers is the most hashes one request may carry unless
	// Options.MaxMembers says otherwise (Meta's limit per call).
	DefaultMaxMembers = 10000
	// MaxRequestBytes bounds a request body.
	MaxRequestBytes = 4 << 20
)

// Operations on an audience's members.
const (
	Add    = "add"
	Remove = "remove"
)

// MembersRequest is the body of POST /v1/audiences/{audience}/members.
type MembersRequest struct {
	// Operation is Add or Remove.
	Operation string `json:"operation"`
	// EmailSHA256 are the members: lower-case hex SHA-256 of normalized
	// email addresses.
	EmailSHA256 []string `json:"email_sha256"`
	// CreativeID, with Add, links a creative to the audience.
	CreativeID string `json:"creative_id,omitempty"`
}

// MembersResponse reports what a request changed.
type MembersResponse struct {
	// Received is the number of hashes in the request.
	Received int `json:"received"`
	// Changed is how many were added or removed; the rest already were.
	Changed int `json:"changed"`
	// Invalid lists the positions of hashes that are not SHA-256 hex;
	// they were ignored.
	Invalid []int `json:"invalid,omitempty"`
}

// Audience describes one audience.
type Audience struct {
	ID        string   `json:"id"`
	Size      int      `json:"size"`
	Creatives []string `json:"creatives"`
}

// Options configures Start.
type Options struct {
	// Addr is the listen address. Empty means "127.0.0.1:0".
	Addr string
	// APIKey, when set, must come as "Authorization: Bearer <APIKey>".
	APIKey string
	// MaxMembers overrides DefaultMaxMembers.
	MaxMembers int
	// Log receives start, stop and error messages. Nil discards them.
	Log *slog.Logger
}

// Request describes a members request to the fault hook.
type Request struct {
	Audience  string
	Operation string
	Members   int
}

// Fault is what the fault hook makes of a request; the zero Fault lets it
// through.
type Fault struct {
	// Delay holds the request this long before it is handled.
	Delay time.Duration
	// Status answers with this status without applying the request.
	Status int
	// RetryAfter is sent in Retry-After (whole seconds, rounded up).
	RetryAfter time.Duration
	// Drop closes the connection without applying the request.
	Drop bool
	// DropAfterApply applies the request, then closes the connection
	// without an answer.
	DropAfterApply bool
}

// Stats counts what the server saw.
type Stats struct {
	// Requests counts members requests, faulted ones included.
	Requests int64 `json:"requests"`
	// Faulted counts requests the fault hook answered, delayed or dropped.
	Faulted int64 `json:"faulted"`
	// Added and Removed count members that joined or left an audience.
	Added   int64 `json:"added"`
	Removed int64 `json:"removed"`
	// Unchanged counts hashes added that were members already, or removed
	// that were not.
	Unchanged int64 `json:"unchanged"`
}

// Server is a running fake ad platform.
type Server struct {
	opts     Options
	log      *slog.Logger
	api      *fakeapi.Server
	handler  http.Handler
	closing  chan struct{}
	inflight sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	fault     func(Request) Fault
	stats     Stats
	audiences map[string]*audience
}

type audience struct {
	members   map[string]struct{}
	creatives []string
}

// Start listens on opts.Addr and serves the API until Close.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.MaxMembers <= 0 {
		opts.MaxMembers = DefaultMaxMembers
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:      opts,
		log:       log.With("component", "adcatch"),
		closing:   make(chan struct{}),
		audiences: make(map[string]*audience),
	}
	s.handler = s.newHandler()
	hs, err := fakeapi.Listen(ctx, opts.Addr, s.handler, s.log)
	if err != nil {
		return nil, fmt.Errorf("start adcatch: %w", err)
	}
	s.api = hs
	s.log.Info("adcatch listening", "url", hs.URL)
	return s, nil
}

// URL is the API's base URL, "http://host:port".
func (s *Server) URL() string { return s.api.URL }

// Handler returns the API, for serving it elsewhere (httptest).
func (s *Server) Handler() http.Handler { return s.handler }

// SetFault installs f to be asked about every members request after it
// has been read; nil removes it.
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

// Members returns an audience's member hashes, sorted.
func (s *Server) Members(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.audiences[id]
	if a == nil {
		return nil
	}
	out := make([]string, 0, len(a.members))
	for h := range a.members {
		out = append(out, h)
	}
	slices.Sort(out)
	return out
}

// Has reports whether the hash is a member of the audience.
func (s *Server) Has(id, hash string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.audiences[id]
	if a == nil {
		return false
	}
	_, ok := a.members[hash]
	return ok
}

// Audience describes an audience; an unknown one is empty.
func (s *Server) Audience(id string) Audience {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Audience{ID: id, Creatives: []string{}}
	if a := s.audiences[id]; a != nil {
		out.Size = len(a.members)
		out.Creatives = slices.Clone(a.creatives)
	}
	return out
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
		return fmt.Errorf("close adcatch: %w", err)
	}
	return nil
}

// apply changes an audience's members.
func (s *Server) apply(id string, req *MembersRequest) MembersResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := MembersResponse{Received: len(req.EmailSHA256)}
	a := s.audiences[id]
	if a == nil {
		if req.Operation == Remove {
			s.stats.Unchanged += int64(len(req.EmailSHA256))
			return resp
		}
		a = &audience{members: make(map[string]struct{})}
		s.audiences[id] = a
	}
	if req.CreativeID != "" && req.Operation == Add && !slices.Contains(a.creatives, req.CreativeID) {
		a.creatives = append(a.creatives, req.CreativeID)
	}
	for i, h := range req.EmailSHA256 {
		if !isSHA256Hex(h) {
			resp.Invalid = append(resp.Invalid, i)
			continue
		}
		_, member := a.members[h]
		switch {
		case req.Operation == Add && !member:
			a.members[h] = struct{}{}
			s.stats.Added++
			resp.Changed++
		case req.Operation == Remove && member:
			delete(a.members, h)
			s.stats.Removed++
			resp.Changed++
		default:
			s.stats.Unchanged++
		}
	}
	return resp
}

// isSHA256Hex reports whether h is 64 lower-case hex digits.
func isSHA256Hex(h string) bool {
	if len(h) != 64 {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
