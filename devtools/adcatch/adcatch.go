// Package adcatch is a local stand-in for Meta's Marketing API, for tests
// and local runs of Herald's ad adapter (dispatch/internal/adsout). It
// speaks the documented Graph API shape of customer-file custom audiences:
//
//	GET    /{version}/act_{ad account}/customaudiences?fields=id,name&limit=n[&after=cursor]
//	POST   /{version}/act_{ad account}/customaudiences   name, subtype=CUSTOM, customer_file_source
//	POST   /{version}/{audience id}/users                payload, session (adds)
//	DELETE /{version}/{audience id}/users                payload, session (removes)
//	GET    /api/stats                                    Stats (not Meta's; for tests)
//
// Parameters come form-encoded (or in the query); the access token as
// "Authorization: Bearer …" or an access_token parameter, and a wrong one
// is answered as Meta does, 400 with an OAuthException code 190. payload
// is {"schema": "EMAIL_SHA256", "data": ["<hash>", …]} (or the schema as a
// one-element list and each entry as a one-element list), 1 to 10,000
// entries; entries that are not 64 hex digits are counted invalid and
// sampled, as Meta does. Users answers are {"audience_id", "session_id",
// "num_received", "num_invalid_entries", "invalid_entry_samples"}; errors
// {"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}.
//
// Membership is a set: adding a member twice or removing an absent one
// changes nothing, so a client may repeat any request. SetFault makes it
// answer with any Graph error, late, or not at all (before or after
// applying a request).
package adcatch

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"herald/devtools/fakeapi"
)

// Limits of the API.
const (
	// DefaultMaxEntries is the most entries one users request may carry
	// unless Options.MaxEntries says otherwise (Meta's limit).
	DefaultMaxEntries = 10000
	// MaxRequestBytes bounds a request body.
	MaxRequestBytes = 8 << 20
)

// Options configures Start.
type Options struct {
	// Addr is the listen address. Empty means "127.0.0.1:0".
	Addr string
	// AccessToken is the token every request must carry. Empty accepts
	// any non-empty token.
	AccessToken string
	// AdAccountID is the one ad account, digits. Empty means "1000".
	AdAccountID string
	// MaxEntries overrides DefaultMaxEntries.
	MaxEntries int
	// PageSize is the most audiences a listing page holds, whatever the
	// client's limit. Zero means 25, Meta's default.
	PageSize int
	// Log receives start, stop and error messages. Nil discards them.
	Log *slog.Logger
}

// Request describes a request to the fault hook.
type Request struct {
	// Op is "users" (adds and removes), "list" or "create".
	Op string
	// Method is the HTTP method.
	Method string
	// Audience is the audience id of a users request.
	Audience string
	// Entries is the number of entries of a users request.
	Entries int
	// Session is its session parameter, as sent.
	Session Session
}

// Session is the session parameter of a users request.
type Session struct {
	ID    int64 `json:"session_id"`
	Seq   int   `json:"batch_seq"`
	Last  bool  `json:"last_batch_flag"`
	Total int   `json:"estimated_num_total"`
}

// Fault is what the fault hook makes of a request; the zero Fault lets it
// through.
type Fault struct {
	// Delay holds the request this long before it is handled.
	Delay time.Duration
	// Error answers with this Graph error without applying the request.
	Error *GraphError
	// RegainAfter, with Error, is sent as the ad account's
	// estimated_time_to_regain_access in X-Business-Use-Case-Usage.
	RegainAfter time.Duration
	// RetryAfter, with Error, is sent in Retry-After (whole seconds).
	RetryAfter time.Duration
	// Drop closes the connection without applying the request.
	Drop bool
	// DropAfterApply applies the request, then closes the connection
	// without an answer.
	DropAfterApply bool
}

// GraphError is a Graph API error and the HTTP status it comes with.
type GraphError struct {
	Status  int // zero means 400
	Message string
	Type    string // zero means OAuthException
	Code    int
	Subcode int
}

// Errors Meta documents, ready for SetFault.
var (
	ErrToken      = &GraphError{Message: "Error validating access token: Session has expired.", Code: 190, Subcode: 463}
	ErrPermission = &GraphError{Status: 403, Message: "(#200) Requires ads_management permission to manage the object", Code: 200}
	ErrRateLimit  = &GraphError{Message: "(#17) User request limit reached", Code: 17, Subcode: 2446079}
	ErrAudience   = &GraphError{Message: "Audience Upload Blocked", Code: 100, Subcode: 1713230, Type: "OAuthException"}
	ErrService    = &GraphError{Status: 500, Message: "An unexpected error has occurred. Please retry your request later.", Code: 2}
	ErrCustomAud  = &GraphError{Message: "(#2650) Failed to update the custom audience", Code: 2650, Subcode: 1870034}
)

// Stats counts what the server saw.
type Stats struct {
	// Requests counts users requests that passed validation, faulted
	// ones included.
	Requests int64 `json:"requests"`
	// Faulted counts requests the fault hook answered, delayed or dropped.
	Faulted int64 `json:"faulted"`
	// Lists and Creates count audience listing pages and creations.
	Lists   int64 `json:"lists"`
	Creates int64 `json:"creates"`
	// Added and Removed count members that joined or left an audience.
	Added   int64 `json:"added"`
	Removed int64 `json:"removed"`
	// Unchanged counts entries added that were members already, or
	// removed that were not.
	Unchanged int64 `json:"unchanged"`
	// Invalid counts entries that were not hashes.
	Invalid int64 `json:"invalid"`
}

// Audience is one custom audience.
type Audience struct {
	ID                 string `json:"id"`
	Name               string `json:"name"`
	Subtype            string `json:"subtype"`
	CustomerFileSource string `json:"customer_file_source"`
	Size               int    `json:"size"`
}

// Server is a running fake Marketing API.
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
	nextID    int64
	audiences []*audience // in creation order
	sessions  []Session
}

type audience struct {
	Audience
	members map[string]struct{}
}

// Start listens on opts.Addr and serves the API until Close.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.AdAccountID == "" {
		opts.AdAccountID = "1000"
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 25
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, log: log.With("component", "adcatch"), closing: make(chan struct{}), nextID: 23850000000000000}
	s.handler = s.newHandler()
	hs, err := fakeapi.Listen(ctx, opts.Addr, s.handler, s.log)
	if err != nil {
		return nil, fmt.Errorf("start adcatch: %w", err)
	}
	s.api = hs
	s.log.Info("adcatch listening", "url", hs.URL, "ad_account", opts.AdAccountID)
	return s, nil
}

// URL is the Graph API's root, "http://host:port" (the version follows).
func (s *Server) URL() string { return s.api.URL }

// AdAccountID is the ad account the server keeps.
func (s *Server) AdAccountID() string { return s.opts.AdAccountID }

// Handler returns the API, for serving it elsewhere (httptest).
func (s *Server) Handler() http.Handler { return s.handler }

// SetFault installs f to be asked about every request that passed
// validation; nil removes it.
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

// Sessions returns the session parameter of every users request applied,
// in order.
func (s *Server) Sessions() []Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sessions)
}

// Audiences returns every audience, in creation order.
func (s *Server) Audiences() []Audience {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Audience, len(s.audiences))
	for i, a := range s.audiences {
		out[i] = a.Audience
		out[i].Size = len(a.members)
	}
	return out
}

// CreateAudience makes an audience as Ads Manager would, returning its id.
func (s *Server) CreateAudience(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.create(name, "USER_PROVIDED_ONLY").ID
}

// DeleteAudience removes an audience, as someone in Ads Manager might.
func (s *Server) DeleteAudience(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.audiences = slices.DeleteFunc(s.audiences, func(a *audience) bool { return a.ID == id })
}

// Members returns the member hashes of the first audience with the name,
// sorted.
func (s *Server) Members(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.audiences {
		if a.Name == name {
			out := make([]string, 0, len(a.members))
			for h := range a.members {
				out = append(out, h)
			}
			slices.Sort(out)
			return out
		}
	}
	return nil
}

// Has reports whether the hash is a member of the named audience.
func (s *Server) Has(name, hash string) bool {
	return slices.Contains(s.Members(name), hash)
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

// create adds an audience; s.mu is held.
func (s *Server) create(name, source string) *audience {
	s.nextID++
	a := &audience{Audience: Audience{ID: strconv.FormatInt(s.nextID, 10), Name: name, Subtype: "CUSTOM", CustomerFileSource: source},
		members: map[string]struct{}{}}
	s.audiences = append(s.audiences, a)
	return a
}

// byID finds an audience; s.mu is held.
func (s *Server) byID(id string) *audience {
	for _, a := range s.audiences {
		if a.ID == id {
			return a
		}
	}
	return nil
}
