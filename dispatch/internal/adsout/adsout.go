// Package adsout delivers the "ad" channel: it adds recipients to an ad
// platform's customer-match audience, in batches, so that the job's
// creative reaches them as paid media. Platforms match on hashed
// identifiers, so each recipient's email is normalized and SHA-256
// hashed before it leaves Herald (see NormalizeEmail); the address itself
// never does. Membership is a set, so repeating a request changes nothing:
// Idempotent reports true, and an Unknown outcome may simply be retried.
//
// # Messages
//
// An ad Message's To is the recipient's email address and its Body is a
// JSON Payload naming the audience and, optionally, the creative:
//
//	{"audience": "bf2026-vip", "creative": "cr-123"}
//
// Build it with Body. Key and MessageID are not sent: a member is its
// hash.
//
// # Wire format (version 1)
//
//	POST {BaseURL}/v1/audiences/{audience}/members
//	Authorization: Bearer {APIKey}
//	{"operation": "add" | "remove",
//	 "email_sha256": ["<64 lower-case hex>", …],
//	 "creative_id": "<creative>"}          (add only; links the creative)
//
// answered 200 with {"received": n, "changed": k, "invalid": [positions]}.
// Whole-request errors are classified as by espout: 429 Throttled (and
// the client pauses for Retry-After), 5xx, 401, 403, 408 and 409
// Deferred, other 4xx Failed; no answer after the request went out is
// Unknown, a failure before it Deferred.
package adsout

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	"unicode"

	"herald/dispatch/internal/provider"
	"herald/shared/event"
)

// Payload is the Body of an ad Message.
type Payload struct {
	// Audience is the platform's audience (customer list) id.
	Audience string `json:"audience"`
	// Creative, when set, is the creative that targets the audience; it
	// is linked to the audience with the members.
	Creative string `json:"creative,omitempty"`
}

// Body encodes p as an ad Message's Body.
func Body(p Payload) []byte {
	b, _ := json.Marshal(p) // two strings cannot fail
	return b
}

// NormalizeEmail prepares an address for hashing the way ad platforms
// match it: surrounding white space trimmed and letters made lower case
// (Google Customer Match, Meta, X), and for gmail.com and googlemail.com
// the dots of the local part removed, as Google's enhanced-conversions
// and Campaign Manager guides require and Customer Match accepts. No
// platform's documentation asks for "+tag" suffixes to be dropped, and a
// hash of the address the person gave is what their account is most
// likely to match, so they are kept unless stripPlus is set (then for
// Gmail addresses only, where the tag is known to be decoration).
func NormalizeEmail(addr string, stripPlus bool) (string, error) {
	addr = strings.ToLower(strings.TrimFunc(addr, unicode.IsSpace))
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 || strings.ContainsFunc(addr, unicode.IsSpace) {
		return "", fmt.Errorf("%q is not an email address", addr)
	}
	local, domain := addr[:at], addr[at+1:]
	if domain == "gmail.com" || domain == "googlemail.com" {
		if stripPlus {
			local, _, _ = strings.Cut(local, "+")
		}
		local = strings.ReplaceAll(local, ".", "")
		if local == "" {
			return "", fmt.Errorf("%q is not an email address", addr)
		}
	}
	return local + "@" + domain, nil
}

// HashEmail returns the lower-case hex SHA-256 of the normalized address.
func HashEmail(addr string, stripPlus bool) (string, error) {
	n, err := NormalizeEmail(addr, stripPlus)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(n))
	return hex.EncodeToString(sum[:]), nil
}

// Config describes the ad platform account.
type Config struct {
	// BaseURL is the API's root, such as "https://ads.example".
	BaseURL string
	// APIKey is sent as a bearer token.
	APIKey string
	// Batch is the most members per request. Zero means 1000.
	Batch int
	// Concurrency is how many requests one call keeps in flight. Zero
	// means 4.
	Concurrency int
	// Timeout bounds one request. Zero means 30s.
	Timeout time.Duration
	// Name identifies the platform in logs, metrics and the ledger. Empty
	// means "ads:" and BaseURL's host.
	Name string
	// StripPlusTags drops "+tag" from Gmail addresses before hashing; see
	// NormalizeEmail.
	StripPlusTags bool
	// Transport replaces the HTTP transport, for proxies and tests.
	Transport http.RoundTripper
}

// Client is a provider.Sender for one ad platform account. It is safe for
// concurrent use.
type Client struct {
	cfg         Config
	base        string
	name        string
	client      *http.Client
	pausedUntil atomic.Int64 // Unix nanoseconds; see espout
}

// New checks cfg and returns a client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("adsout: base URL %q is not an http(s) URL", cfg.BaseURL)
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 1000
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	name := cfg.Name
	if name == "" {
		name = event.ChannelAd.ProviderKind() + ":" + u.Host
	}
	rt := cfg.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = max(16, cfg.Concurrency)
		rt = t
	}
	return &Client{cfg: cfg, base: strings.TrimSuffix(cfg.BaseURL, "/"), name: name, client: &http.Client{Transport: rt}}, nil
}

// Name identifies the platform.
func (c *Client) Name() string { return c.name }

// Idempotent is true: membership is a set.
func (c *Client) Idempotent() bool { return true }

// call is one request and the messages it answers for.
type call struct {
	audience, creative, op string
	hashes                 []string
	// msgs[i] lists the messages whose recipient is hashes[i].
	msgs [][]int
}

// Send adds every message's recipient to its audience and returns one
// result per message, in order. Recipients are grouped per audience and
// creative, and one recipient in a batch twice is sent once.
func (c *Client) Send(ctx context.Context, msgs []*provider.Message) []provider.Result {
	out := make([]provider.Result, len(msgs))
	type group struct {
		audience, creative string
	}
	groups := map[group]*call{}
	var order []*call
	seen := map[group]map[string]int{} // hash to its position in the group's call
	for i, m := range msgs {
		var p Payload
		if err := json.Unmarshal(m.Body, &p); err != nil || !validID(p.Audience) || (p.Creative != "" && !validID(p.Creative)) {
			out[i] = provider.Result{Outcome: provider.Failed, Reason: "invalid ad payload: want {\"audience\": id, \"creative\": id}"}
			continue
		}
		h, err := HashEmail(m.To, c.cfg.StripPlusTags)
		if err != nil {
			out[i] = provider.Result{Outcome: provider.Failed, Reason: err.Error()}
			continue
		}
		g := group{p.Audience, p.Creative}
		cl := groups[g]
		if cl == nil {
			cl = &call{audience: p.Audience, creative: p.Creative, op: "add"}
			groups[g] = cl
			seen[g] = map[string]int{}
			order = append(order, cl)
		}
		if j, ok := seen[g][h]; ok {
			cl.msgs[j] = append(cl.msgs[j], i)
			continue
		}
		seen[g][h] = len(cl.hashes)
		cl.hashes = append(cl.hashes, h)
		cl.msgs = append(cl.msgs, []int{i})
	}
	var calls []*call
	for _, cl := range order {
		calls = append(calls, c.split(cl)...)
	}
	c.run(ctx, calls, func(cl *call, res provider.Result, invalid map[int]bool) {
		for j, idx := range cl.msgs {
			r := res
			if invalid[j] {
				r = provider.Result{Outcome: provider.Failed, Code: res.Code, Reason: "the platform refused the hash"}
			}
			for _, i := range idx {
				out[i] = r
			}
		}
	})
	return out
}

// Remove takes people out of an audience, for instance once they are
// suppressed. Their addresses are normalized and hashed as for Send;
// addresses that are not addresses are skipped.
func (c *Client) Remove(ctx context.Context, audience string, emails []string) error {
	hashes := make([]string, 0, len(emails))
	for _, e := range emails {
		if h, err := HashEmail(e, c.cfg.StripPlusTags); err == nil {
			hashes = append(hashes, h)
		}
	}
	return c.RemoveHashed(ctx, audience, hashes)
}

// RemoveHashed takes members out of an audience by their hashes, as
// HashEmail makes them. Removing someone who is not a member is no error.
func (c *Client) RemoveHashed(ctx context.Context, audience string, hashes []string) error {
	if !validID(audience) {
		return fmt.Errorf("remove members: invalid audience id %q", audience)
	}
	if len(hashes) == 0 {
		return nil
	}
	cl := &call{audience: audience, op: "remove", hashes: hashes, msgs: make([][]int, len(hashes))}
	var mu sync.Mutex
	var errs []error
	c.run(ctx, c.split(cl), func(cl *call, res provider.Result, invalid map[int]bool) {
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

// split cuts a call into calls of at most Batch members.
func (c *Client) split(cl *call) []*call {
	var out []*call
	for start := 0; start < len(cl.hashes); start += c.cfg.Batch {
		end := min(start+c.cfg.Batch, len(cl.hashes))
		out = append(out, &call{audience: cl.audience, creative: cl.creative, op: cl.op, hashes: cl.hashes[start:end], msgs: cl.msgs[start:end]})
	}
	return out
}

// run makes the calls, Concurrency at a time, and reports each one's
// outcome and the positions the platform called invalid.
func (c *Client) run(ctx context.Context, calls []*call, done func(*call, provider.Result, map[int]bool)) {
	var next atomic.Int64
	work := func() {
		for {
			i := int(next.Add(1) - 1)
			if i >= len(calls) {
				return
			}
			res, invalid := c.do(ctx, calls[i])
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

// do makes one request and classifies its outcome.
func (c *Client) do(ctx context.Context, cl *call) (provider.Result, map[int]bool) {
	if until := c.pausedUntil.Load(); until != 0 {
		if wait := time.Until(time.Unix(0, until)); wait > 0 {
			return provider.Result{Outcome: provider.Throttled, Code: http.StatusTooManyRequests,
				Reason: "paused by the platform's Retry-After, " + wait.Round(100*time.Millisecond).String() + " left"}, nil
		}
	}
	body, _ := json.Marshal(struct {
		Operation   string   `json:"operation"`
		EmailSHA256 []string `json:"email_sha256"`
		CreativeID  string   `json:"creative_id,omitempty"`
	}{cl.op, cl.hashes, cl.creative})
	var wrote atomic.Bool
	trace := &httptrace.ClientTrace{WroteRequest: func(info httptrace.WroteRequestInfo) { wrote.Store(info.Err == nil) }}
	ctx, cancel := context.WithTimeout(httptrace.WithClientTrace(ctx, trace), c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/audiences/"+cl.audience+"/members", bytes.NewReader(body))
	if err != nil {
		return provider.Result{Outcome: provider.Failed, Reason: err.Error()}, nil
	}
	req.Header.Set("Content-Type", "application/json")
	if c.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		if wrote.Load() {
			return provider.Result{Outcome: provider.Unknown, Reason: "await response: " + err.Error()}, nil
		}
		return provider.Result{Outcome: provider.Deferred, Reason: "send request: " + err.Error()}, nil
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	status := resp.StatusCode
	switch {
	case status == http.StatusOK:
		var r struct {
			Invalid []int `json:"invalid"`
		}
		if err != nil || json.Unmarshal(rb, &r) != nil {
			return provider.Result{Outcome: provider.Unknown, Code: status, Reason: "unreadable response"}, nil
		}
		var invalid map[int]bool
		for _, j := range r.Invalid {
			if invalid == nil {
				invalid = map[int]bool{}
			}
			invalid[j] = true
		}
		return provider.Result{Outcome: provider.Sent, Code: status}, invalid
	case status == http.StatusTooManyRequests:
		res := provider.Result{Outcome: provider.Throttled, Code: status, Reason: errorText(status, rb)}
		if d, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			c.pause(d)
			res.Reason += "; retry after " + d.Round(100*time.Millisecond).String()
		}
		return res, nil
	case status >= 500, status == http.StatusUnauthorized, status == http.StatusForbidden,
		status == http.StatusRequestTimeout, status == http.StatusConflict:
		return provider.Result{Outcome: provider.Deferred, Code: status, Reason: errorText(status, rb)}, nil
	default:
		return provider.Result{Outcome: provider.Failed, Code: status, Reason: errorText(status, rb)}, nil
	}
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

// retryAfter parses a Retry-After value, seconds or an HTTP date, capped
// at ten minutes.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return 0, false
	}
	return min(max(d, 0), 10*time.Minute), true
}

func errorText(status int, body []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	text := strconv.Itoa(status) + " " + http.StatusText(status)
	if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
		return text + ": " + e.Error.Message
	}
	return text
}

// validID reports whether an audience or creative id is 1 to 128 letters,
// digits, '-' or '_', so that it is safe in a URL path.
func validID(id string) bool {
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
