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
)

// Outcome classifies one send attempt.
type Outcome int

// The outcomes of a send.
const (
	// Sent: the server accepted the message (250 after DATA).
	Sent Outcome = iota
	// Deferred: the server refused for now (4xx) or the connection failed
	// before the message was complete; nothing was accepted, retry later.
	Deferred
	// Failed: the server refused for good (5xx).
	Failed
	// Unknown: the connection failed after the whole message was sent and
	// before the server answered; it may have been accepted.
	Unknown
)

func (o Outcome) String() string {
	switch o {
	case Sent:
		return "sent"
	case Deferred:
		return "deferred"
	case Failed:
		return "failed"
	default:
		return "unknown"
	}
}

// Result is the outcome of one send with the server's words.
type Result struct {
	Outcome Outcome
	// Code is the SMTP reply code, 0 when there was no reply.
	Code int
	// Reason is the reply text or the transport error.
	Reason string
}

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

// Send delivers one message from the envelope sender to one recipient.
func (p *Pool) Send(ctx context.Context, from, to string, msg []byte) Result {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return Result{Outcome: Deferred, Reason: ctx.Err().Error()}
	}
	defer func() { <-p.sem }()
	c, err := p.get(ctx)
	if err != nil {
		return Result{Outcome: Deferred, Reason: "connect: " + err.Error()}
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
func (p *Pool) send(c *conn, from, to string, msg []byte) (Result, bool) {
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
		return Result{Outcome: Deferred, Reason: "write message: " + err.Error()}, false
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return classify(se), true
		}
		// The whole message went out and no reply came back.
		return Result{Outcome: Unknown, Reason: "await reply: " + err.Error()}, false
	}
	return Result{Outcome: Sent, Code: 250, Reason: resp.StatusText}, true
}

// refused classifies a failure before the message body, when the server
// cannot have accepted anything, and resets the transaction.
func refused(step string, err error, c *conn) (Result, bool) {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return Result{Outcome: Deferred, Reason: step + ": " + err.Error()}, false
	}
	res := classify(se)
	if res.Outcome == Sent { // a 2xx where an error was expected cannot happen; be safe
		res.Outcome = Deferred
	}
	res.Reason = step + ": " + res.Reason
	return res, c.c.Reset() == nil
}

func classify(se *smtp.SMTPError) Result {
	reason := strconv.Itoa(se.Code)
	if se.EnhancedCode != smtp.NoEnhancedCode && se.EnhancedCode != (smtp.EnhancedCode{}) {
		reason += fmt.Sprintf(" %d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	reason += " " + strings.TrimSpace(se.Message)
	switch {
	case se.Code >= 400 && se.Code < 500:
		return Result{Outcome: Deferred, Code: se.Code, Reason: reason}
	case se.Code >= 500:
		return Result{Outcome: Failed, Code: se.Code, Reason: reason}
	default:
		return Result{Outcome: Deferred, Code: se.Code, Reason: reason}
	}
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
