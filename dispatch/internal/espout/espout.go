// Package espout sends email through an email service provider's HTTP
// batch-send API, passing each message's ledger key as its idempotency
// key. The provider deduplicates by it, so an attempt whose outcome is
// unknown can simply be made again: Idempotent reports true.
//
// # Wire format (version 1)
//
// One request carries up to Config.Batch messages:
//
//	POST {BaseURL}/v1/send
//	Authorization: Bearer {APIKey}
//	Content-Type: application/json
//
//	{"messages": [
//	  {"idempotency_key": "<Message.Key>",
//	   "from": "<envelope sender>", "to": "<recipient>",
//	   "message_id": "<Message-ID without brackets>",
//	   "raw": "<the RFC 5322 message, base64>"}, …]}
//
// The message travels whole (raw MIME, DKIM signature included if the
// caller signed it) rather than as parts, so that what the ESP sends is
// byte for byte what render built. A request the provider read is
// answered 200 with one result per message, in order:
//
//	{"results": [
//	  {"idempotency_key": "…", "status": 202, "id": "<provider's id>",
//	   "duplicate": false, "error": "", "hard_bounce": false}, …]}
//
// A message's status is an HTTP status code: 2xx accepted (Sent, also
// when duplicate, i.e. accepted by an earlier request); 429 Throttled;
// 5xx Deferred; other 4xx Failed, with hard_bounce when the address does
// not exist.
//
// A whole request that fails is answered with a status and
// {"error": {"message": "…"}}: 429 (with Retry-After) makes every message
// Throttled and pauses this client until the time given; 5xx, 401, 403,
// 408 and 409 make them Deferred (safe to retry by idempotency; 401 and
// 403 are credentials to fix, not messages to drop); 413 splits the batch
// in two and tries again; other 4xx are Failed. No answer after the
// request went out — a timeout, a dropped connection, an unreadable
// response, a message missing from the results — is Unknown; a failure
// before it went out is Deferred.
package espout

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
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
	"unicode/utf8"

	"herald/dispatch/internal/provider"
)

// Config describes the provider and how hard to use it.
type Config struct {
	// BaseURL is the API's root, such as "https://api.esp.example";
	// requests go to BaseURL + "/v1/send".
	BaseURL string
	// APIKey is sent as a bearer token.
	APIKey string
	// Batch is the most messages per request. Zero means 100.
	Batch int
	// MaxRequestBytes cuts a batch short before its request body would
	// exceed it. Zero means 8 MiB.
	MaxRequestBytes int
	// Concurrency is how many requests one Send keeps in flight. Zero
	// means 4.
	Concurrency int
	// Timeout bounds one request, from connecting to the end of the
	// response. Zero means 30s.
	Timeout time.Duration
	// Name identifies the provider in logs, metrics and the ledger. Empty
	// means "esp:" and BaseURL's host.
	Name string
	// Transport replaces the HTTP transport, for proxies and tests. Nil
	// means a transport of its own.
	Transport http.RoundTripper
}

// Client is a provider.Sender for one ESP account. It is safe for
// concurrent use.
type Client struct {
	cfg    Config
	url    string
	name   string
	client *http.Client
	// pausedUntil is when the provider's last Retry-After ends, in Unix
	// nanoseconds; until then Send answers Throttled without asking.
	pausedUntil atomic.Int64
	bufs        sync.Pool
}

// New checks cfg and returns a client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("espout: base URL %q is not an http(s) URL", cfg.BaseURL)
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 100
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = 8 << 20
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	name := cfg.Name
	if name == "" {
		name = "esp:" + u.Host
	}
	rt := cfg.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = max(16, cfg.Concurrency) // several Sends run at once
		rt = t
	}
	return &Client{
		cfg:    cfg,
		url:    strings.TrimSuffix(cfg.BaseURL, "/") + "/v1/send",
		name:   name,
		client: &http.Client{Transport: rt},
	}, nil
}

// Name identifies the provider.
func (c *Client) Name() string { return c.name }

// Idempotent is true: the provider deduplicates by Message.Key.
func (c *Client) Idempotent() bool { return true }

// Send sends msgs in batches, Concurrency requests at a time, and returns
// one result per message in order.
func (c *Client) Send(ctx context.Context, msgs []*provider.Message) []provider.Result {
	out := make([]provider.Result, len(msgs))
	var chunks [][2]int // [start, end) into msgs
	for start := 0; start < len(msgs); {
		end, size := start, 64
		for end < len(msgs) && end-start < c.cfg.Batch {
			size += encodedSize(msgs[end])
			if end > start && size > c.cfg.MaxRequestBytes {
				break
			}
			end++
		}
		chunks = append(chunks, [2]int{start, end})
		start = end
	}
	var next atomic.Int64
	work := func() {
		for {
			i := int(next.Add(1) - 1)
			if i >= len(chunks) {
				return
			}
			ch := chunks[i]
			c.sendBatch(ctx, msgs[ch[0]:ch[1]], out[ch[0]:ch[1]])
		}
	}
	var wg sync.WaitGroup
	for range min(len(chunks), c.cfg.Concurrency) - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
	return out
}

// encodedSize estimates a message's share of a request body.
func encodedSize(m *provider.Message) int {
	return base64.StdEncoding.EncodedLen(len(m.Body)) + len(m.Key) + len(m.From) + len(m.To) + len(m.MessageID) + 100
}

// sendBatch sends msgs in one request and fills out.
func (c *Client) sendBatch(ctx context.Context, msgs []*provider.Message, out []provider.Result) {
	if until := c.pausedUntil.Load(); until != 0 {
		if wait := time.Until(time.Unix(0, until)); wait > 0 {
			fill(out, provider.Result{Outcome: provider.Throttled, Code: http.StatusTooManyRequests,
				Reason: "paused by the provider's Retry-After, " + retryAfterText(wait) + " left"})
			return
		}
	}
	status, header, body, sent, err := c.post(ctx, msgs)
	switch {
	case err != nil && sent:
		fill(out, provider.Result{Outcome: provider.Unknown, Reason: "await response: " + err.Error()})
	case err != nil:
		fill(out, provider.Result{Outcome: provider.Deferred, Reason: "send request: " + err.Error()})
	case status == http.StatusOK:
		c.results(msgs, body, out)
	case status == http.StatusTooManyRequests:
		res := provider.Result{Outcome: provider.Throttled, Code: status, Reason: errorText(status, body)}
		if d, ok := retryAfter(header.Get("Retry-After"), time.Now()); ok {
			c.pause(d)
			res.Reason += "; retry after " + retryAfterText(d)
		}
		fill(out, res)
	case status == http.StatusRequestEntityTooLarge && len(msgs) > 1:
		half := len(msgs) / 2
		c.sendBatch(ctx, msgs[:half], out[:half])
		c.sendBatch(ctx, msgs[half:], out[half:])
	case status >= 500, status == http.StatusUnauthorized, status == http.StatusForbidden,
		status == http.StatusRequestTimeout, status == http.StatusConflict:
		fill(out, provider.Result{Outcome: provider.Deferred, Code: status, Reason: errorText(status, body)})
	default:
		fill(out, provider.Result{Outcome: provider.Failed, Code: status, Reason: errorText(status, body)})
	}
}

// post sends one request. sent reports whether the whole request was
// written, after which a failure leaves the outcome unknown.
func (c *Client) post(ctx context.Context, msgs []*provider.Message) (status int, header http.Header, body []byte, sent bool, err error) {
	buf := c.encode(msgs)
	body = *buf
	var wrote, writeEnded atomic.Bool
	trace := &httptrace.ClientTrace{WroteRequest: func(info httptrace.WroteRequestInfo) {
		wrote.Store(info.Err == nil)
		writeEnded.Store(true)
	}}
	defer func() {
		// The transport may still be writing the body when a response
		// comes early; the buffer is reused only once it is done.
		if writeEnded.Load() {
			c.bufs.Put(buf)
		}
	}()
	ctx, cancel := context.WithTimeout(httptrace.WithClientTrace(ctx, trace), c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if c.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, nil, wrote.Load(), err
	}
	defer resp.Body.Close()
	limit := int64(64 << 10)
	if resp.StatusCode == http.StatusOK {
		limit = int64(len(msgs))*2048 + 4096
	}
	body, err = io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		// The provider answered with a status but its body broke off;
		// a 200's results are then lost.
		if resp.StatusCode == http.StatusOK {
			return 0, nil, nil, true, fmt.Errorf("read response: %w", err)
		}
	}
	return resp.StatusCode, resp.Header, body, true, nil
}

// results maps a 200 response onto the batch. A message without a result
// was sent but not answered for: Unknown, like a response that cannot be
// read at all.
func (c *Client) results(msgs []*provider.Message, body []byte, out []provider.Result) {
	var resp struct {
		Results []struct {
			IdempotencyKey string `json:"idempotency_key"`
			Status         int    `json:"status"`
			ID             string `json:"id"`
			Duplicate      bool   `json:"duplicate"`
			Error          string `json:"error"`
			HardBounce     bool   `json:"hard_bounce"`
		} `json:"results"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		fill(out, provider.Result{Outcome: provider.Unknown, Code: http.StatusOK, Reason: "unreadable response: " + err.Error()})
		return
	}
	byKey := make(map[string]int, len(resp.Results))
	for i, r := range resp.Results {
		byKey[r.IdempotencyKey] = i
	}
	for i, m := range msgs {
		j, ok := byKey[m.Key]
		if !ok {
			out[i] = provider.Result{Outcome: provider.Unknown, Code: http.StatusOK, Reason: "no result for this message in the response"}
			continue
		}
		r := resp.Results[j]
		res := provider.Result{Code: r.Status, Reason: r.Error}
		switch {
		case r.Status >= 200 && r.Status < 300:
			res.Outcome = provider.Sent
			res.Reason = r.ID
			if r.Duplicate {
				res.Reason = r.ID + " (accepted before)"
			}
		case r.Status == http.StatusTooManyRequests:
			res.Outcome = provider.Throttled
		case r.Status >= 400 && r.Status < 500:
			res.Outcome = provider.Failed
			res.HardBounce = r.HardBounce
		case r.Status >= 500:
			res.Outcome = provider.Deferred
		default:
			res.Outcome = provider.Unknown
			res.Reason = "unexpected status " + strconv.Itoa(r.Status)
		}
		out[i] = res
	}
}

// pause stops requests for d, unless a longer pause is on.
func (c *Client) pause(d time.Duration) {
	until := time.Now().Add(d).UnixNano()
	for {
		cur := c.pausedUntil.Load()
		if cur >= until || c.pausedUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

// maxRetryAfter caps what a provider can ask for.
const maxRetryAfter = 10 * time.Minute

// retryAfter parses a Retry-After value: seconds, or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.Atoi(v); err == nil {
		if secs < 0 {
			return 0, false
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return 0, false
	}
	return min(max(d, 0), maxRetryAfter), true
}

func retryAfterText(d time.Duration) string {
	return d.Round(100 * time.Millisecond).String()
}

// errorText is a whole-request error for Reason: the status and the
// provider's message.
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

func fill(out []provider.Result, r provider.Result) {
	for i := range out {
		out[i] = r
	}
}

// encode writes the request body into a pooled buffer. It is written by
// hand: encoding/json would reflect over every message and copy the
// content once more.
func (c *Client) encode(msgs []*provider.Message) *[]byte {
	bp, _ := c.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	size := 16
	for _, m := range msgs {
		size += encodedSize(m)
	}
	b := (*bp)[:0]
	if cap(b) < size {
		b = make([]byte, 0, size)
	}
	b = append(b, `{"messages":[`...)
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"idempotency_key":`...)
		b = appendString(b, m.Key)
		b = append(b, `,"from":`...)
		b = appendString(b, m.From)
		b = append(b, `,"to":`...)
		b = appendString(b, m.To)
		if m.MessageID != "" {
			b = append(b, `,"message_id":`...)
			b = appendString(b, m.MessageID)
		}
		b = append(b, `,"raw":"`...)
		b = base64.StdEncoding.AppendEncode(b, m.Body)
		b = append(b, `"}`...)
	}
	b = append(b, "]}"...)
	*bp = b
	return bp
}

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// as encoding/json does.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
