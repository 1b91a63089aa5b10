// Package adsout delivers the "ad" channel through Meta's Marketing API: it
// adds recipients to a customer-file custom audience of the tenant's
// campaign, so that the campaign's ads, made in Meta's Ads Manager, reach
// them. Meta matches on hashed identifiers, so each address is normalized
// and SHA-256 hashed (event.HashEmail) before it leaves Herald; the address
// itself never does. Membership is a set, so repeating a request changes
// nothing: Idempotent reports true, and an Unknown outcome may simply be
// retried.
//
// # Messages
//
// An ad Message's To is the recipient's address and its Body a JSON
// Payload naming the audience by name ({"audience": "herald-acme-bf"});
// build it with Body. Key and MessageID are not sent: a member is its
// hash. The users endpoint takes no creative, so none is sent.
//
// # Wire format (Graph API, documented by Meta)
//
// Every request carries "Authorization: Bearer {AccessToken}". An audience
// name is resolved to Meta's id once per process: first among the ad
// account's audiences,
//
//	GET  /{version}/act_{ad account}/customaudiences?fields=id,name&limit=500[&after=cursor]
//
// and, when none has the name, by creating it,
//
//	POST /{version}/act_{ad account}/customaudiences
//	     name=…&subtype=CUSTOM&customer_file_source=USER_PROVIDED_ONLY&description=…
//
// (then listed again, and the lowest id of that name kept, so that
// replicas racing to create it settle on one). Members are added and
// removed, at most 10,000 a request, with
//
//	POST|DELETE /{version}/{audience id}/users   (form-encoded)
//	     payload={"schema":"EMAIL_SHA256","data":["<64 hex>",…]}
//	     session={"session_id":n,"batch_seq":i,"last_batch_flag":bool,"estimated_num_total":total}
//
// answered {"audience_id", "session_id", "num_received",
// "num_invalid_entries", "invalid_entry_samples"}. Errors are
// {"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}};
// see classify for what each means to the ledger.
package adsout

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"herald/dispatch/internal/provider"
	"herald/shared/event"
)

// Defaults and limits of the Graph API.
const (
	// DefaultGraphURL is Meta's Graph API host.
	DefaultGraphURL = "https://graph.facebook.com"
	// DefaultAPIVersion is the Marketing API version Herald is written
	// against.
	DefaultAPIVersion = "v25.0"
	// MaxBatch is the most records one users request may carry.
	MaxBatch = 10000
	// Schema is the one identifier Herald sends.
	Schema = "EMAIL_SHA256"
)

// Payload is the Body of an ad Message.
type Payload struct {
	// Audience is the audience's name in the ad account; Herald creates
	// it the first time it is used.
	Audience string `json:"audience"`
}

// Body encodes p as an ad Message's Body.
func Body(p Payload) []byte {
	b, _ := json.Marshal(p) // a string cannot fail
	return b
}

// Config describes the Meta ad account.
type Config struct {
	// GraphURL is the Graph API's root. Empty means DefaultGraphURL.
	GraphURL string
	// APIVersion, such as "v25.0". Empty means DefaultAPIVersion.
	APIVersion string
	// AdAccountID is the ad account's id, digits without "act_".
	AdAccountID string
	// AccessToken is a system user's token with ads_management on the ad
	// account.
	AccessToken string
	// CustomerFileSource is where the audiences' data comes from, as Meta
	// asks when an audience is created. Empty means USER_PROVIDED_ONLY:
	// the partner collected its customers' addresses itself.
	CustomerFileSource string
	// Batch is the most members per request, at most MaxBatch (the
	// default).
	Batch int
	// Concurrency is how many requests one call keeps in flight. Zero
	// means 4.
	Concurrency int
	// Timeout bounds one request. Zero means 30s.
	Timeout time.Duration
	// Name identifies the account in logs, metrics and the ledger. Empty
	// means "ads:meta:act_" and the ad account id.
	Name string
	// Transport replaces the HTTP transport, for proxies and tests.
	Transport http.RoundTripper
}

// The customer file sources Meta accepts.
var fileSources = map[string]bool{"USER_PROVIDED_ONLY": true, "PARTNER_PROVIDED_ONLY": true, "BOTH_USER_AND_PARTNER_PROVIDED": true}

// Client is a provider.Sender for one Meta ad account. It is safe for
// concurrent use.
type Client struct {
	cfg         Config
	base        string // GraphURL/version
	name        string
	client      *http.Client
	pausedUntil atomic.Int64 // Unix nanoseconds; the platform asked to wait

	resolving sync.Mutex // one audience lookup at a time
	mu        sync.Mutex
	ids       map[string]string // audience name to Meta's id
}

// New checks cfg and returns a client.
func New(cfg Config) (*Client, error) {
	if cfg.GraphURL == "" {
		cfg.GraphURL = DefaultGraphURL
	}
	if cfg.APIVersion == "" {
		cfg.APIVersion = DefaultAPIVersion
	}
	if cfg.CustomerFileSource == "" {
		cfg.CustomerFileSource = "USER_PROVIDED_ONLY"
	}
	u, err := url.Parse(cfg.GraphURL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return nil, fmt.Errorf("adsout: Graph URL %q is not an http(s) URL", cfg.GraphURL)
	case !digits(cfg.AdAccountID):
		return nil, fmt.Errorf("adsout: ad account id %q is not digits (give it without act_)", cfg.AdAccountID)
	case cfg.AccessToken == "":
		return nil, errors.New("adsout: an access token is required")
	case !validVersion(cfg.APIVersion):
		return nil, fmt.Errorf("adsout: API version %q is not like v25.0", cfg.APIVersion)
	case !fileSources[cfg.CustomerFileSource]:
		return nil, fmt.Errorf("adsout: customer file source %q is not one Meta accepts", cfg.CustomerFileSource)
	case cfg.Batch > MaxBatch:
		return nil, fmt.Errorf("adsout: batch %d is more than Meta's %d a request", cfg.Batch, MaxBatch)
	}
	if cfg.Batch <= 0 {
		cfg.Batch = MaxBatch
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	name := cfg.Name
	if name == "" {
		name = event.ChannelAd.ProviderKind() + ":meta:act_" + cfg.AdAccountID
	}
	rt := cfg.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = max(16, cfg.Concurrency)
		rt = t
	}
	return &Client{
		cfg: cfg, base: strings.TrimSuffix(cfg.GraphURL, "/") + "/" + cfg.APIVersion, name: name,
		client: &http.Client{Transport: rt}, ids: map[string]string{},
	}, nil
}

// Name identifies the ad account.
func (c *Client) Name() string { return c.name }

// Idempotent is true: membership is a set.
func (c *Client) Idempotent() bool { return true }

// call is one users request and the messages it answers for.
type call struct {
	audience string // Meta's id
	method   string // POST adds, DELETE removes
	hashes   []string
	// msgs[i] lists the messages whose recipient is hashes[i].
	msgs    [][]int
	session session
}

// session ties the requests of one upload together, as Meta asks of
// uploads in several batches.
type session struct {
	ID    int64 `json:"session_id"`
	Seq   int   `json:"batch_seq"`
	Last  bool  `json:"last_batch_flag"`
	Total int   `json:"estimated_num_total"`
}

// Send adds every message's recipient to its audience and returns one
// result per message, in order. Recipients are grouped per audience, and
// one recipient in a batch twice is sent once.
func (c *Client) Send(ctx context.Context, msgs []*provider.Message) []provider.Result {
	out := make([]provider.Result, len(msgs))
	groups := map[string]*call{} // by audience name
	var names []string
	seen := map[string]map[string]int{} // hash to its position in the group's call
	// A batch's messages share one body: it is decoded once.
	var last []byte
	var p Payload
	valid := false
	for i, m := range msgs {
		if last == nil || string(m.Body) != string(last) {
			p, last = Payload{}, m.Body
			valid = json.Unmarshal(m.Body, &p) == nil && validName(p.Audience)
		}
		if !valid {
			out[i] = provider.Result{Outcome: provider.Failed, Reason: `invalid ad payload: want {"audience": name}`}
			continue
		}
		if !event.ValidEmail(event.NormalizeEmail(m.To)) {
			out[i] = provider.Result{Outcome: provider.Failed, Reason: fmt.Sprintf("%q is not an email address", m.To)}
			continue
		}
		h := event.HashEmail(m.To)
		cl := groups[p.Audience]
		if cl == nil {
			cl = &call{method: http.MethodPost}
			groups[p.Audience] = cl
			seen[p.Audience] = map[string]int{}
			names = append(names, p.Audience)
		}
		if j, ok := seen[p.Audience][h]; ok {
			cl.msgs[j] = append(cl.msgs[j], i)
			continue
		}
		seen[p.Audience][h] = len(cl.hashes)
		cl.hashes = append(cl.hashes, h)
		cl.msgs = append(cl.msgs, []int{i})
	}
	var calls []*call
	for _, name := range names {
		cl := groups[name]
		id, res := c.audienceID(ctx, name, true)
		if res.Outcome != provider.Sent {
			for _, idx := range cl.msgs {
				for _, i := range idx {
					out[i] = res
				}
			}
			continue
		}
		cl.audience = id
		calls = append(calls, c.split(cl)...)
	}
	c.run(ctx, calls, func(cl *call, res provider.Result, invalid map[string]string) {
		for j, idx := range cl.msgs {
			r := res
			if why, ok := invalid[cl.hashes[j]]; ok {
				r = provider.Result{Outcome: provider.Failed, Code: res.Code, Reason: "Meta refused the entry: " + why}
			}
			for _, i := range idx {
				out[i] = r
			}
		}
	})
	return out
}

// Remove takes people out of an audience, for instance once they are
// suppressed. Their addresses are hashed as for Send; addresses that are
// not addresses are skipped. An audience Herald never created has nobody
// to remove.
func (c *Client) Remove(ctx context.Context, audience string, emails []string) error {
	hashes := make([]string, 0, len(emails))
	for _, e := range emails {
		if event.ValidEmail(event.NormalizeEmail(e)) {
			hashes = append(hashes, event.HashEmail(e))
		}
	}
	return c.RemoveHashed(ctx, audience, hashes)
}

// RemoveHashed takes members out of an audience by their hashes, as
// event.HashEmail makes them. Removing someone who is not a member is no
// error.
func (c *Client) RemoveHashed(ctx context.Context, audience string, hashes []string) error {
	if !validName(audience) {
		return fmt.Errorf("remove members: invalid audience name %q", audience)
	}
	if len(hashes) == 0 {
		return nil
	}
	id, res := c.audienceID(ctx, audience, false)
	switch {
	case res.Outcome != provider.Sent:
		return fmt.Errorf("remove members from %s: %s: %s", audience, res.Outcome, res.Reason)
	case id == "":
		return nil
	}
	cl := &call{audience: id, method: http.MethodDelete, hashes: hashes, msgs: make([][]int, len(hashes))}
	var mu sync.Mutex
	var errs []error
	c.run(ctx, c.split(cl), func(cl *call, res provider.Result, invalid map[string]string) {
		if res.Outcome != provider.Sent || len(invalid) > 0 {
			mu.Lock()
			errs = append(errs, fmt.Errorf("%s: %s", res.Outcome, res.Reason))
			mu.Unlock()
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("remove members from %s: %w", audience, errors.Join(errs...))
	}
	return nil
}

// split cuts a call into calls of at most Batch members, one session.
func (c *Client) split(cl *call) []*call {
	var out []*call
	id := sessionID()
	for start := 0; start < len(cl.hashes); start += c.cfg.Batch {
		end := min(start+c.cfg.Batch, len(cl.hashes))
		out = append(out, &call{audience: cl.audience, method: cl.method, hashes: cl.hashes[start:end], msgs: cl.msgs[start:end],
			session: session{ID: id, Seq: len(out) + 1, Last: end == len(cl.hashes), Total: len(cl.hashes)}})
	}
	return out
}

// sessionID is a random positive 63-bit number.
func sessionID() int64 {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand does not fail
	return int64(binary.BigEndian.Uint64(b[:])>>1) | 1
}

// run makes the calls, Concurrency at a time, and reports each one's
// outcome and the entries Meta called invalid, with why.
func (c *Client) run(ctx context.Context, calls []*call, done func(*call, provider.Result, map[string]string)) {
	var next atomic.Int64
	work := func() {
		for {
			i := int(next.Add(1) - 1)
			if i >= len(calls) {
				return
			}
			res, invalid := c.users(ctx, calls[i])
			done(calls[i], res, invalid)
		}
	}
	var wg sync.WaitGroup
	for range min(len(calls), c.cfg.Concurrency) - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
}

// UsersResponse is Meta's answer to a users request.
type UsersResponse struct {
	AudienceID        string            `json:"audience_id"`
	SessionID         string            `json:"session_id"`
	NumReceived       int               `json:"num_received"`
	NumInvalidEntries int               `json:"num_invalid_entries"`
	InvalidSamples    map[string]string `json:"invalid_entry_samples"`
}

// users makes one users request and classifies its outcome.
func (c *Client) users(ctx context.Context, cl *call) (provider.Result, map[string]string) {
	payload, _ := json.Marshal(struct {
		Schema string   `json:"schema"`
		Data   []string `json:"data"`
	}{Schema, cl.hashes})
	sess, _ := json.Marshal(cl.session)
	form := url.Values{"payload": {string(payload)}, "session": {string(sess)}}
	var r UsersResponse
	res := c.do(ctx, cl.method, "/"+cl.audience+"/users", form, &r)
	if res.Outcome != provider.Sent {
		if res.forget {
			c.forget(cl.audience)
		}
		return res.Result, nil
	}
	if r.NumReceived != len(cl.hashes) {
		// Meta took part of the request at most; it is a set, so again is safe.
		return provider.Result{Outcome: provider.Unknown, Code: res.Code,
			Reason: fmt.Sprintf("Meta received %d of %d entries", r.NumReceived, len(cl.hashes))}, nil
	}
	return res.Result, r.InvalidSamples
}

// audienceID is Meta's id of the named audience, looked up once and
// created when create is set and there is none; without create, a missing
// audience is "" and Sent.
func (c *Client) audienceID(ctx context.Context, name string, create bool) (string, provider.Result) {
	c.mu.Lock()
	id, ok := c.ids[name]
	c.mu.Unlock()
	if ok {
		return id, provider.Result{Outcome: provider.Sent}
	}
	c.resolving.Lock()
	defer c.resolving.Unlock()
	c.mu.Lock()
	id, ok = c.ids[name]
	c.mu.Unlock()
	if ok {
		return id, provider.Result{Outcome: provider.Sent}
	}
	id, res := c.find(ctx, name)
	if res.Outcome == provider.Sent && id == "" && create {
		form := url.Values{"name": {name}, "subtype": {"CUSTOM"}, "customer_file_source": {c.cfg.CustomerFileSource},
			"description": {"Herald: recipients of the campaign's ad jobs"}}
		var created struct {
			ID string `json:"id"`
		}
		if cr := c.do(ctx, http.MethodPost, "/act_"+c.cfg.AdAccountID+"/customaudiences", form, &created); cr.Outcome != provider.Sent {
			return "", withWhy(cr.Result, "create audience "+name)
		}
		// Another replica may have created one too: everyone keeps the lowest id.
		if id, res = c.find(ctx, name); id == "" && res.Outcome == provider.Sent {
			id = created.ID
		}
	}
	if res.Outcome != provider.Sent {
		return "", withWhy(res, "find audience "+name)
	}
	if id != "" {
		c.mu.Lock()
		c.ids[name] = id
		c.mu.Unlock()
	}
	return id, res
}

// find pages through the ad account's audiences for the lowest id with the
// name, "" if there is none.
func (c *Client) find(ctx context.Context, name string) (string, provider.Result) {
	best := ""
	q := url.Values{"fields": {"id,name"}, "limit": {"500"}}
	for {
		var page struct {
			Data []struct {
				ID   string `json:"id"`
				Name string `json:"name"`
			} `json:"data"`
			Paging struct {
				Cursors struct {
					After string `json:"after"`
				} `json:"cursors"`
				Next string `json:"next"`
			} `json:"paging"`
		}
		res := c.do(ctx, http.MethodGet, "/act_"+c.cfg.AdAccountID+"/customaudiences?"+q.Encode(), nil, &page)
		if res.Outcome != provider.Sent {
			return "", res.Result
		}
		for _, a := range page.Data {
			if a.Name == name && (best == "" || lessID(a.ID, best)) {
				best = a.ID
			}
		}
		if page.Paging.Next == "" || page.Paging.Cursors.After == "" {
			return best, res.Result
		}
		q.Set("after", page.Paging.Cursors.After)
	}
}

// forget drops the cached name of a Meta audience id that Meta no longer
// knows, so that the next send finds or creates it again.
func (c *Client) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, v := range c.ids {
		if v == id {
			delete(c.ids, name)
		}
	}
}

// answer is a classified response.
type answer struct {
	provider.Result
	// forget is set when Meta says the audience does not exist.
	forget bool
}

// do makes one Graph API request, form-encoded when form is not nil, and
// decodes a 200 answer into into.
func (c *Client) do(ctx context.Context, method, path string, form url.Values, into any) answer {
	if until := c.pausedUntil.Load(); until != 0 {
		if wait := time.Until(time.Unix(0, until)); wait > 0 {
			return answer{Result: provider.Result{Outcome: provider.Throttled, Code: http.StatusTooManyRequests,
				Reason: "paused at Meta's request, " + wait.Round(100*time.Millisecond).String() + " left"}}
		}
	}
	var wrote atomic.Bool
	trace := &httptrace.ClientTrace{WroteRequest: func(info httptrace.WroteRequestInfo) { wrote.Store(info.Err == nil) }}
	ctx, cancel := context.WithTimeout(httptrace.WithClientTrace(ctx, trace), c.cfg.Timeout)
	defer cancel()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return answer{Result: provider.Result{Outcome: provider.Failed, Reason: err.Error()}}
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.AccessToken)
	resp, err := c.client.Do(req)
	if err != nil {
		if wrote.Load() && method != http.MethodGet {
			return answer{Result: provider.Result{Outcome: provider.Unknown, Reason: "await response: " + err.Error()}}
		}
		return answer{Result: provider.Result{Outcome: provider.Deferred, Reason: "send request: " + err.Error()}}
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusOK {
		if err != nil || json.Unmarshal(rb, into) != nil {
			return answer{Result: provider.Result{Outcome: provider.Unknown, Code: resp.StatusCode, Reason: "unreadable response"}}
		}
		return answer{Result: provider.Result{Outcome: provider.Sent, Code: resp.StatusCode}}
	}
	a := classify(resp.StatusCode, rb)
	if a.Outcome == provider.Throttled {
		if d, ok := waitFor(resp.Header, time.Now()); ok {
			c.pause(d)
			a.Reason += "; retry after " + d.Round(100*time.Millisecond).String()
		}
	}
	return a
}

// GraphError is the body of every Graph API error.
type GraphError struct {
	Error struct {
		Message   string `json:"message"`
		Type      string `json:"type"`
		Code      int    `json:"code"`
		Subcode   int    `json:"error_subcode"`
		FBTraceID string `json:"fbtrace_id"`
	} `json:"error"`
}

// classify maps a Graph API error to an outcome, by Meta's error code
// first (Meta's "Handling Errors" guide) and the HTTP status otherwise:
//
//   - 190 (access token invalid or expired), 102 (session), 10 and 200–299
//     (permission denied), 3 (capability): the account cannot work until
//     someone fixes it; Deferred, which counts against the breaker;
//   - 4, 17, 32, 613 and 80000–80014 (rate limits of the app, the user,
//     the page, the ad account's business use case): Throttled, Code 429;
//   - 1, 2 (unknown, service): temporary; Deferred;
//   - 100 with subcode 33 (no such object): the audience is gone, Failed,
//     and its id forgotten so that the next send makes it again;
//   - anything else about the request, 2650 (custom audience errors) and
//     100 (invalid parameter) among them: Failed with Meta's reason;
//   - no Graph error: 5xx Deferred, 429 Throttled, other statuses Failed.
func classify(status int, body []byte) answer {
	var e GraphError
	_ = json.Unmarshal(body, &e)
	g := e.Error
	reason := strconv.Itoa(status) + " " + http.StatusText(status)
	if g.Code != 0 {
		reason = fmt.Sprintf("Meta error %d", g.Code)
		if g.Subcode != 0 {
			reason += fmt.Sprintf("/%d", g.Subcode)
		}
		if g.Type != "" {
			reason += " (" + g.Type + ")"
		}
		reason += ": " + g.Message
		if g.FBTraceID != "" {
			reason += " [fbtrace_id " + g.FBTraceID + "]"
		}
	}
	r := func(o provider.Outcome, why string) answer {
		if why != "" {
			reason = why + ": " + reason
		}
		return answer{Result: provider.Result{Outcome: o, Code: status, Reason: reason}}
	}
	switch c := g.Code; {
	case c == 190 || c == 102:
		return r(provider.Deferred, "Meta refused the access token")
	case c == 10 || c == 3 || (c >= 200 && c <= 299):
		return r(provider.Deferred, "the access token lacks a permission on the ad account")
	case c == 4 || c == 17 || c == 32 || c == 613 || (c >= 80000 && c <= 80014):
		a := r(provider.Throttled, "Meta asks to slow down")
		a.Code = http.StatusTooManyRequests
		return a
	case c == 1 || c == 2:
		return r(provider.Deferred, "Meta is failing for now")
	case c == 100 && g.Subcode == 33:
		a := r(provider.Failed, "Meta does not know the audience")
		a.forget = true
		return a
	case c != 0:
		return r(provider.Failed, "Meta refused the request")
	case status >= 500:
		return r(provider.Deferred, "")
	case status == http.StatusTooManyRequests:
		return r(provider.Throttled, "")
	default:
		return r(provider.Failed, "")
	}
}

func withWhy(res provider.Result, why string) provider.Result {
	res.Reason = why + ": " + res.Reason
	return res
}

func (c *Client) pause(d time.Duration) {
	until := time.Now().Add(d).UnixNano()
	for {
		cur := c.pausedUntil.Load()
		if cur >= until || c.pausedUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

// waitFor is how long Meta asks the client to wait, capped at ten
// minutes: the largest estimated_time_to_regain_access (minutes) of
// X-Business-Use-Case-Usage, else Retry-After (seconds or an HTTP date),
// which proxies in front of the API may send.
func waitFor(h http.Header, now time.Time) (time.Duration, bool) {
	var d time.Duration
	found := false
	if v := h.Get("X-Business-Use-Case-Usage"); v != "" {
		var usage map[string][]struct {
			Regain int `json:"estimated_time_to_regain_access"`
		}
		if json.Unmarshal([]byte(v), &usage) == nil {
			for _, list := range usage {
				for _, u := range list {
					if m := time.Duration(u.Regain) * time.Minute; m > 0 {
						d, found = max(d, m), true
					}
				}
			}
		}
	}
	if v := h.Get("Retry-After"); !found && v != "" {
		if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
			d, found = time.Duration(secs)*time.Second, true
		} else if t, err := http.ParseTime(v); err == nil {
			d, found = t.Sub(now), true
		}
	}
	return min(max(d, 0), 10*time.Minute), found
}

// validName reports whether an audience name is 1 to 128 letters, digits,
// '-' or '_', as deliver.Audience makes them.
func validName(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func digits(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func validVersion(v string) bool {
	major, minor, ok := strings.Cut(strings.TrimPrefix(v, "v"), ".")
	return ok && strings.HasPrefix(v, "v") && digits(major) && digits(minor)
}

// lessID orders Meta's numeric ids, which may not fit an int64.
func lessID(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}
