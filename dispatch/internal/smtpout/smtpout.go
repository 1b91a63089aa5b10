// Package smtpout sends email over SMTP through a pool of reused
// connections and classifies every attempt's outcome, separating "the
// server refused" (safe to retry) from "the server may have accepted"
// (never blindly retried).
package smtpout

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"herald/dispatch/internal/provider"
)

// Config tunes the pool.
type Config struct {
	Addr string
	// HeloName is the name this client gives in EHLO.
	HeloName string
	// Conns is how many connections are kept open at most.
	Conns int
	// Timeout bounds each command and the wait for the final reply.
	Timeout time.Duration
	// MaxPerConn recycles a connection after this many messages, as large
	// receivers expect.
	MaxPerConn int
}

// Pool is a bounded set of SMTP connections to one server, safe for
// concurrent use.
type Pool struct {
	cfg  Config
	sem  chan struct{}
	mu   sync.Mutex
	idle []*conn
}

type conn struct {
	c    *smtp.Client
	sent int
}

// NewPool returns a pool; connections are opened on demand.
func NewPool(cfg Config) *Pool {
	return &Pool{cfg: cfg, sem: make(chan struct{}, cfg.Conns)}
}

// Name identifies the relay.
func (p *Pool) Name() string { return "smtp:" + p.cfg.Addr }

// Idempotent is false: SMTP has no idempotency key.
func (p *Pool) Idempotent() bool { return false }

// Send delivers msgs concurrently over the pool's connections.
func (p *Pool) Send(ctx context.Context, msgs []*provider.Message) []provider.Result {
	out := make([]provider.Result, len(msgs))
	var wg sync.WaitGroup
	for i, m := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = p.SendOne(ctx, m.From, m.To, m.Body)
		}()
	}
	wg.Wait()
	return out
}

// SendOne delivers one message from the envelope sender to one recipient.
func (p *Pool) SendOne(ctx context.Context, from, to string, msg []byte) provider.Result {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return provider.Result{Outcome: provider.Deferred, Reason: ctx.Err().Error()}
	}
	defer func() { <-p.sem }()
	c, err := p.get(ctx)
	if err != nil {
		return provider.Result{Outcome: provider.Deferred, Reason: "connect: " + err.Error()}
	}
	res, healthy := p.send(c, from, to, msg)
	if healthy {
		c.sent++
		p.put(c)
	} else {
		_ = c.c.Close()
	}
	return res
}

func (p *Pool) get(ctx context.Context) (*conn, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	d := net.Dialer{Timeout: p.cfg.Timeout}
	nc, err := d.DialContext(ctx, "tcp", p.cfg.Addr)
	if err != nil {
		return nil, err
	}
	c := smtp.NewClient(nc)
	c.CommandTimeout = p.cfg.Timeout
	c.SubmissionTimeout = p.cfg.Timeout
	if err := c.Hello(p.cfg.HeloName); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("ehlo: %w", err)
	}
	return &conn{c: c}, nil
}

func (p *Pool) put(c *conn) {
	if p.cfg.MaxPerConn > 0 && c.sent >= p.cfg.MaxPerConn {
		_ = c.c.Quit()
		return
	}
	p.mu.Lock()
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// send runs one SMTP transaction and reports whether the connection can be
// reused.
func (p *Pool) send(c *conn, from, to string, msg []byte) (provider.Result, bool) {
	if err := c.c.Mail(from, nil); err != nil {
		return refused("MAIL FROM", err, c)
	}
	if err := c.c.Rcpt(to, nil); err != nil {
		return refused("RCPT TO", err, c)
	}
	w, err := c.c.Data()
	if err != nil {
		return refused("DATA", err, c)
	}
	if _, err := w.Write(msg); err != nil {
		// The terminating dot was never written: nothing was accepted.
		return provider.Result{Outcome: provider.Deferred, Reason: "write message: " + err.Error()}, false
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return classify(se), true
		}
		// The whole message went out and no reply came back.
		return provider.Result{Outcome: provider.Unknown, Reason: "await reply: " + err.Error()}, false
	}
	return provider.Result{Outcome: provider.Sent, Code: 250, Reason: resp.StatusText}, true
}

// refused classifies a failure before the message body, when the server
// cannot have accepted anything, and resets the transaction.
func refused(step string, err error, c *conn) (provider.Result, bool) {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return provider.Result{Outcome: provider.Deferred, Reason: step + ": " + err.Error()}, false
	}
	res := classify(se)
	if res.Outcome == provider.Sent { // a 2xx where an error was expected cannot happen; be safe
		res.Outcome = provider.Deferred
	}
	res.Reason = step + ": " + res.Reason
	return res, c.c.Reset() == nil
}

// classify maps an SMTP reply to an outcome: 421 and 4.7.x ask the sender
// to slow down; other 4xx are temporary; 5xx are permanent, and 5.1.x (no
// such mailbox, bad address) is a hard bounce.
func classify(se *smtp.SMTPError) provider.Result {
	res := provider.Result{Code: se.Code, Reason: strings.TrimSpace(se.Message)}
	if se.EnhancedCode != smtp.NoEnhancedCode && se.EnhancedCode != (smtp.EnhancedCode{}) {
		res.Enhanced = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	res.Reason = strings.TrimSpace(strconv.Itoa(se.Code) + " " + res.Enhanced + " " + res.Reason)
	switch {
	case se.Code == 421 || strings.HasPrefix(res.Enhanced, "4.7."):
		res.Outcome = provider.Throttled
	case se.Code >= 400 && se.Code < 500:
		res.Outcome = provider.Deferred
	case se.Code >= 500:
		res.Outcome = provider.Failed
		res.HardBounce = strings.HasPrefix(res.Enhanced, "5.1.") || (res.Enhanced == "" && (se.Code == 550 || se.Code == 553))
	default:
		res.Outcome = provider.Deferred
	}
	return res
}

// Close quits every idle connection.
func (p *Pool) Close() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		_ = c.c.Quit()
	}
}
