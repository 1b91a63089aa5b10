// Package smtpout sends email over SMTP through a pool of reused
// connections and classifies every attempt's outcome, separating "the
// server refused" (safe to retry) from "the server may have accepted"
// (never blindly retried): nothing that fails before the end-of-data line
// has gone out is Unknown, only a missing or unreadable answer after it.
//
// The client is its own, small and allocation-lean: RFC 5321 with
// PIPELINING (RFC 2920), ENHANCEDSTATUSCODES (RFC 3463), STARTTLS (RFC
// 3207) or implicit TLS (RFC 8314), AUTH PLAIN and LOGIN (RFC 4954) and
// SMTPUTF8 for the envelope. It talks to a relay as relays expect: TLS is
// required unless the relay is on loopback, the certificate is verified,
// and credentials go only inside TLS. With PIPELINING, MAIL, RCPT and
// DATA go out in one write, and within a batch the next message's
// envelope follows the previous message's content in the same write, so
// a stream of messages costs one round trip each instead of four. A
// rendered message with CRLF line ends and no leading dots is written as
// it is, without a copy; anything else is converted on the way out.
package smtpout

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"herald/dispatch/internal/provider"
	"herald/shared/event"
)

// TLSMode is how a connection to the relay is encrypted.
type TLSMode string

// The TLS modes. A relay is reached over the network with credentials, so
// the default is the one that can neither be stripped by a man in the
// middle nor skipped by mistake.
const (
	// StartTLS upgrades every connection with STARTTLS (RFC 3207) before
	// anything but EHLO is said, verifying the relay's certificate, and
	// refuses a relay that does not offer it: an attacker who strips
	// STARTTLS from the EHLO answer gets an error, not plain text. The
	// default, for submission on port 587.
	StartTLS TLSMode = "starttls"
	// ImplicitTLS speaks TLS from the first byte, as on port 465 (RFC
	// 8314), verifying the relay's certificate.
	ImplicitTLS TLSMode = "implicit"
	// NoTLS sends in plain text, for a relay on a loopback address only
	// (a test's catcher); it cannot be combined with Auth.
	NoTLS TLSMode = "none"
)

// Auth holds the credentials for AUTH (RFC 4954). They are sent only over a
// verified TLS connection, with PLAIN where the relay offers it and LOGIN
// otherwise.
type Auth struct {
	Username string
	Password string
}

// String keeps the password out of logs and error messages.
func (a *Auth) String() string {
	if a == nil {
		return "none"
	}
	return a.Username + ":***"
}

// Config tunes the pool.
type Config struct {
	Addr string
	// HeloName is the name this client gives in EHLO. Empty means
	// "localhost".
	HeloName string
	// Conns is how many connections are kept open at most.
	Conns int
	// Timeout bounds connecting, each command's round trip, the transfer
	// of the message and the wait for the final reply. Zero means 30s.
	Timeout time.Duration
	// MaxPerConn recycles a connection after this many messages, as large
	// receivers expect. Zero means no limit.
	MaxPerConn int
	// TLSMode says how connections are encrypted. Empty means StartTLS.
	TLSMode TLSMode
	// TLS holds the client's TLS settings: RootCAs verifies the relay (nil:
	// the system's roots), ServerName is the name its certificate must
	// carry (empty: the host of Addr). InsecureSkipVerify is refused.
	TLS *tls.Config
	// Auth, when set, authenticates every connection once it is encrypted.
	Auth *Auth
	// ReturnPath, when set, replaces each message's envelope sender with
	// its delivery's VERP address, so that a bounce names the delivery.
	// Messages without a ledger key keep theirs.
	ReturnPath *event.ReturnPath
	// IdleTimeout closes connections that sat unused in the pool for
	// longer, before a server drops them. Zero means 30s.
	IdleTimeout time.Duration
	// NoChunking keeps to DATA even where the server offers BDAT
	// (CHUNKING), for a relay whose BDAT is known to misbehave.
	NoChunking bool
}

// ErrRelayConfig marks a failure that no retry of the message can fix,
// because the relay and this configuration disagree: the relay offers no
// STARTTLS, its certificate does not verify, it refuses the credentials or
// offers no mechanism for them, or the configuration itself is invalid.
// Such sends are Deferred, never Failed: the messages are fine, and the
// provider's circuit breaker, which counts calls the provider did not
// answer, opens and hands the traffic to the next provider until an
// operator fixes the configuration.
var ErrRelayConfig = errors.New("relay configuration")

// Validate reports settings that could never work or would be unsafe:
// plain text to anything but a loopback address, credentials without TLS,
// certificate checks switched off.
func (c Config) Validate() error {
	var errs []error
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		errs = append(errs, fmt.Errorf("address %q: %w", c.Addr, err))
	}
	switch c.TLSMode {
	case "", StartTLS, ImplicitTLS:
	case NoTLS:
		if err == nil && !IsLoopback(host) {
			errs = append(errs, fmt.Errorf("TLS mode none is for a relay on a loopback address, not %q", host))
		}
		if c.Auth != nil {
			errs = append(errs, errors.New("credentials are never sent without TLS: TLS mode none cannot have AUTH"))
		}
	default:
		errs = append(errs, fmt.Errorf("unknown TLS mode %q (want starttls, implicit or none)", c.TLSMode))
	}
	if c.TLS != nil && c.TLS.InsecureSkipVerify {
		errs = append(errs, errors.New("TLS without certificate verification is refused: give the relay's CA in RootCAs"))
	}
	if c.Auth != nil && (c.Auth.Username == "" || c.Auth.Password == "") {
		errs = append(errs, errors.New("AUTH needs a user name and a password"))
	}
	if c.ReturnPath != nil {
		if err := c.ReturnPath.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrRelayConfig, err)
	}
	return nil
}

// IsLoopback reports whether host, a name or an address without port,
// stays on this machine: "localhost" (RFC 6761) or a loopback address.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Pool is a bounded set of SMTP connections to one server, safe for
// concurrent use.
type Pool struct {
	cfg Config
	tls *tls.Config // nil with NoTLS
	// invalid is what Validate said about cfg; every dial returns it.
	invalid error
	sem     chan struct{}
	mu      sync.Mutex
	idle    []*conn // most recently used last
	// quitting tracks connections being closed politely in the background.
	quitting sync.WaitGroup
	closed   bool
}

// NewPool returns a pool; connections are opened on demand. A
// configuration that Validate refuses makes every send Deferred with
// ErrRelayConfig's reason; callers validate at start to fail early.
func NewPool(cfg Config) *Pool {
	if cfg.HeloName == "" {
		cfg.HeloName = "localhost"
	}
	if cfg.Conns < 1 {
		cfg.Conns = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	if cfg.TLSMode == "" {
		cfg.TLSMode = StartTLS
	}
	p := &Pool{cfg: cfg, sem: make(chan struct{}, cfg.Conns), invalid: cfg.Validate()}
	if cfg.TLSMode != NoTLS {
		p.tls = &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.TLS != nil {
			p.tls = cfg.TLS.Clone()
			p.tls.MinVersion = max(p.tls.MinVersion, tls.VersionTLS12)
		}
		if p.tls.ServerName == "" {
			if host, _, err := net.SplitHostPort(cfg.Addr); err == nil {
				p.tls.ServerName = host
			}
		}
	}
	return p
}

// Name identifies the relay.
func (p *Pool) Name() string { return "smtp:" + p.cfg.Addr }

// Idempotent is false: SMTP has no idempotency key.
func (p *Pool) Idempotent() bool { return false }

// Send delivers msgs over up to Conns connections at once. Each
// connection works through the batch in turn, sending the next message's
// envelope behind the current one's content when the server pipelines.
func (p *Pool) Send(ctx context.Context, msgs []*provider.Message) []provider.Result {
	msgs = p.withReturnPath(msgs)
	out := make([]provider.Result, len(msgs))
	var next atomic.Int64
	claim := func() int {
		if i := int(next.Add(1) - 1); i < len(msgs) {
			return i
		}
		return -1
	}
	var wg sync.WaitGroup
	for range min(len(msgs), p.cfg.Conns) - 1 {
		wg.Go(func() { p.stream(ctx, msgs, out, claim) })
	}
	p.stream(ctx, msgs, out, claim)
	wg.Wait()
	return out
}

// SendOne delivers one message from the envelope sender to one recipient.
func (p *Pool) SendOne(ctx context.Context, from, to string, msg []byte) provider.Result {
	msgs := []*provider.Message{{From: from, To: to, Body: msg}}
	out := make([]provider.Result, 1)
	done := false
	p.stream(ctx, msgs, out, func() int {
		if done {
			return -1
		}
		done = true
		return 0
	})
	return out[0]
}

// withReturnPath returns msgs with each envelope sender replaced by its
// delivery's VERP address, when the pool has a return path. The caller's
// messages are not changed.
func (p *Pool) withReturnPath(msgs []*provider.Message) []*provider.Message {
	rp := p.cfg.ReturnPath
	if rp == nil {
		return msgs
	}
	out := make([]*provider.Message, len(msgs))
	for i, m := range msgs {
		out[i] = m
		if key, ok := parseDeliveryKey(m.Key); ok {
			c := *m
			c.From = rp.Address(key)
			out[i] = &c
		}
	}
	return out
}

// stream sends the messages claim hands out, one connection at a time.
func (p *Pool) stream(ctx context.Context, msgs []*provider.Message, out []provider.Result, claim func() int) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		for i := claim(); i >= 0; i = claim() {
			out[i] = provider.Result{Outcome: provider.Deferred, Reason: ctx.Err().Error()}
		}
		return
	}
	defer func() { <-p.sem }()
	var c *conn
	defer func() {
		if c != nil {
			p.put(c)
		}
	}()
	// claimValid hands out the next message worth sending, settling those
	// that are not.
	claimValid := func() int {
		for i := claim(); i >= 0; i = claim() {
			m := msgs[i]
			switch {
			case !validAddress(m.From) || !validAddress(m.To):
				out[i] = provider.Result{Outcome: provider.Failed, Reason: "invalid envelope address"}
			case ctx.Err() != nil:
				out[i] = provider.Result{Outcome: provider.Deferred, Reason: ctx.Err().Error()}
			default:
				return i
			}
		}
		return -1
	}
	i := claimValid()
	held := -1      // claimed, not yet sent, goes after i
	queued := false // i's envelope is on its way over c
	retried := false
	following := func() int {
		if held >= 0 {
			h := held
			held = -1
			return h
		}
		return claimValid()
	}
	for i >= 0 {
		if c == nil {
			var err error
			if c, err = p.get(ctx); err != nil {
				c = nil
				out[i] = connectFailure(err)
				if errors.Is(err, ErrRelayConfig) {
					// Another dial would fail the same way, and a relay
					// counts every refused AUTH against the account:
					// the rest of this stream's messages share the
					// result.
					for j := following(); j >= 0; j = following() {
						out[j] = out[i]
					}
					return
				}
				i, queued, retried = following(), false, false
				continue
			}
		}
		var nm *provider.Message
		if c.pipelining && (p.cfg.MaxPerConn == 0 || c.sent+1 < p.cfg.MaxPerConn) {
			if held < 0 {
				held = claimValid()
			}
			if held >= 0 {
				nm = msgs[held]
			}
		}
		res, o := c.deliver(ctx, p.cfg.Timeout, msgs[i], queued, nm)
		if !o.reusable {
			c.close()
			c = nil
		} else if p.cfg.MaxPerConn > 0 && c.sent >= p.cfg.MaxPerConn {
			p.put(c) // retires it
			c = nil
		}
		if o.stale && !retried {
			// The connection had sat in the pool and the server may have
			// dropped it meanwhile. Only the envelope was lost (nothing
			// went out behind it), so the message goes again on a new
			// connection.
			retried = true
			continue
		}
		out[i] = res
		i, queued, retried = following(), o.nextQueued, false
	}
}

// get returns an idle connection or dials a new one.
func (p *Pool) get(ctx context.Context) (*conn, error) {
	now := time.Now()
	p.mu.Lock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		if now.Sub(c.idleSince) <= p.cfg.IdleTimeout {
			p.mu.Unlock()
			return c, nil
		}
		p.quitLocked(c)
	}
	p.mu.Unlock()
	if p.invalid != nil {
		return nil, p.invalid
	}
	return dial(ctx, &p.cfg, p.tls)
}

// put returns a healthy connection to the pool, or retires it.
func (p *Pool) put(c *conn) {
	p.mu.Lock()
	if p.closed {
		// Close is waiting for the background quits or has returned; this
		// sender takes the round trip itself.
		p.mu.Unlock()
		c.quit()
		return
	}
	defer p.mu.Unlock()
	if p.cfg.MaxPerConn > 0 && c.sent >= p.cfg.MaxPerConn {
		p.quitLocked(c)
		return
	}
	c.reused = true
	c.idleSince = time.Now()
	p.idle = append(p.idle, c)
}

// quitLocked closes c with QUIT in the background, so that no sender
// waits for the round trip.
func (p *Pool) quitLocked(c *conn) {
	p.quitting.Go(c.quit)
}

// Close quits every idle connection and waits for connections being
// retired. Connections in use are retired when their send finishes.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	for _, c := range p.idle {
		p.quitLocked(c)
	}
	p.idle = nil
	p.mu.Unlock()
	p.quitting.Wait()
}
