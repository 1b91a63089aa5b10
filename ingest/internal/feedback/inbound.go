package feedback

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"herald/ingest/internal/store"
	"herald/shared/event"
)

// The receiver's limits, so that the return domain's MX, open to the whole
// internet, cannot be made to hold unbounded memory, connections or time.
const (
	// DefaultInboundMaxBytes bounds one message: room for a report that
	// encloses the whole original message.
	DefaultInboundMaxBytes = 10 << 20
	// DefaultInboundMaxConns bounds the connections served at once; more
	// wait in the listen queue, as a busy MX's do.
	DefaultInboundMaxConns = 64
	// DefaultInboundSessionTime bounds one connection from accept to
	// close, however slowly the peer keeps sending.
	DefaultInboundSessionTime = 5 * time.Minute
	// inboundIOTimeout bounds one read or write.
	inboundIOTimeout = time.Minute
	// inboundApplyTime bounds the lookups and writes of one message.
	inboundApplyTime = 30 * time.Second
)

// ErrKeyUnavailable marks a delivery lookup that failed for want of the
// database, not for want of a delivery: the report is refused with 451, so
// the sender retries it, rather than taken and lost.
var ErrKeyUnavailable = errors.New("delivery lookup unavailable")

// VERPKey returns the key function of the receiver for VERP return paths:
// it checks the address's MAC with rp first, so that a forged or foreign
// address costs no lookup, and only then asks find for the delivery whose
// Message-ID hash the address carries (store.Store.DeliveryByMessageHash).
// find's store.ErrNotFound means the delivery is gone (its partition
// dropped); any other error of find is ErrKeyUnavailable.
func VERPKey(rp event.ReturnPath, find func(ctx context.Context, hash string) (event.DeliveryKey, error)) func(context.Context, string) (event.DeliveryKey, error) {
	return func(ctx context.Context, addr string) (event.DeliveryKey, error) {
		hash, err := rp.Parse(addr)
		if err != nil {
			return event.DeliveryKey{}, err
		}
		k, err := find(ctx, hash)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return event.DeliveryKey{}, err
		case err != nil:
			return event.DeliveryKey{}, fmt.Errorf("%w: %w", ErrKeyUnavailable, err)
		}
		return k, nil
	}
}

// InboundConfig configures the SMTP receiver of the return domain.
type InboundConfig struct {
	// Domain is the return domain whose MX this receiver is: mail to any
	// other domain is refused, so it is no open relay.
	Domain string
	// Key recovers a delivery from the address a report was sent to
	// (VERPKey). An error that is ErrKeyUnavailable refuses the message
	// with 451; any other leaves the report unkeyed.
	Key func(ctx context.Context, returnPath string) (event.DeliveryKey, error)
	// Apply applies one report (store.Store.ApplyFeedback with the
	// soft-bounce limit).
	Apply func(ctx context.Context, f store.Feedback) (store.FeedbackResult, error)
	Log   *slog.Logger
	// MaxBytes bounds one message; 0 is DefaultInboundMaxBytes.
	MaxBytes int64
	// MaxConns bounds the connections served at once; 0 is
	// DefaultInboundMaxConns.
	MaxConns int
	// SessionTime bounds one connection; 0 is DefaultInboundSessionTime.
	SessionTime time.Duration
}

// Inbound receives delivery status notifications and ARF reports over
// SMTP and applies them. A report it cannot read is refused with 550 5.6.0
// (the sender is told, and a report is never bounced in turn); one it
// could not apply is 451, which the sender retries; one that names no
// delivery is accepted and changes nothing.
type Inbound struct {
	cfg InboundConfig
	srv *smtp.Server
}

// NewInbound returns a receiver; Serve starts it.
func NewInbound(cfg InboundConfig) (*Inbound, error) {
	if cfg.Domain == "" || strings.ContainsAny(cfg.Domain, "@<> ") || cfg.Key == nil || cfg.Apply == nil || cfg.Log == nil {
		return nil, errors.New("inbound feedback needs a return domain, a key decoder, an applier and a logger")
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultInboundMaxBytes
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultInboundMaxConns
	}
	if cfg.SessionTime <= 0 {
		cfg.SessionTime = DefaultInboundSessionTime
	}
	in := &Inbound{cfg: cfg}
	in.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &inboundSession{in: in}, nil
	}))
	in.srv.Domain = cfg.Domain
	in.srv.MaxMessageBytes = cfg.MaxBytes
	in.srv.MaxRecipients = 50
	in.srv.ReadTimeout = inboundIOTimeout
	in.srv.WriteTimeout = inboundIOTimeout
	return in, nil
}

// Serve accepts connections on l until Shutdown, at most MaxConns at once,
// each for at most SessionTime.
func (in *Inbound) Serve(l net.Listener) error {
	l = &limitedListener{Listener: l, slots: make(chan struct{}, in.cfg.MaxConns), session: in.cfg.SessionTime}
	if err := in.srv.Serve(l); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
		return fmt.Errorf("serve inbound feedback: %w", err)
	}
	return nil
}

// Shutdown stops accepting connections and waits for sessions in progress
// until ctx is done.
func (in *Inbound) Shutdown(ctx context.Context) error { return in.srv.Shutdown(ctx) }

// Run returns the receiver as one loop of the service's run group
// (service.Loop): it serves l until ctx is done, then stops accepting and
// lets sessions in progress finish until workCtx is done. A session still
// open then is cut off when the process exits; its sender retries.
func (in *Inbound) Run(l net.Listener) func(ctx, workCtx context.Context) error {
	return func(ctx, workCtx context.Context) error {
		served := make(chan error, 1)
		go func() { served <- in.Serve(l) }()
		select {
		case err := <-served:
			return err
		case <-ctx.Done():
		}
		if err := in.Shutdown(workCtx); err != nil {
			in.cfg.Log.WarnContext(ctx, "inbound feedback sessions cut off", "error", err)
			return nil
		}
		return <-served
	}
}

type inboundSession struct {
	in    *Inbound
	rcpts []string
}

func (s *inboundSession) Reset()        { s.rcpts = nil }
func (s *inboundSession) Logout() error { return nil }

// Mail takes any sender: reports come from the null sender <>.
func (s *inboundSession) Mail(string, *smtp.MailOptions) error { return nil }

func (s *inboundSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	_, domain, ok := strings.Cut(to, "@")
	if !ok || !strings.EqualFold(domain, s.in.cfg.Domain) {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 2}, Message: "not a return address of " + s.in.cfg.Domain}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *inboundSession) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), inboundApplyTime)
	defer cancel()
	log := s.in.cfg.Log
	for _, rcpt := range s.rcpts {
		var unavailable error
		key := func(addr string) (event.DeliveryKey, error) {
			k, err := s.in.cfg.Key(ctx, addr)
			if errors.Is(err, ErrKeyUnavailable) && unavailable == nil {
				unavailable = err
			}
			return k, err
		}
		b, err := ParseReport(bytes.Clone(raw), rcpt, key)
		if unavailable != nil {
			log.ErrorContext(ctx, "find delivery of inbound report", "rcpt", rcpt, "error", unavailable)
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "report not recorded; try again later"}
		}
		if err != nil {
			log.InfoContext(ctx, "inbound report refused", "rcpt", rcpt, "error", err)
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "not a delivery status notification or ARF report: " + err.Error()}
		}
		for _, u := range b.Unkeyed {
			log.DebugContext(ctx, "feedback names no delivery", "provider", ProviderSMTP, "event_id", u.EventID, "reason", u.Reason)
		}
		for _, f := range b.Events {
			if _, err := s.in.cfg.Apply(ctx, f); err != nil && !errors.Is(err, store.ErrInvalidFeedback) {
				log.ErrorContext(ctx, "apply inbound report", "event_id", f.EventID, "tenant_id", f.Key.Tenant, "error", err)
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "report not recorded; try again later"}
			}
		}
		log.InfoContext(ctx, "feedback received", "provider", ProviderSMTP, "events", len(b.Events), "unknown", len(b.Unkeyed), "ignored", b.Ignored)
	}
	return nil
}

// limitedListener serves at most cap(slots) connections at once: Accept
// waits for a free slot before it takes the next connection. Each
// connection it returns ends session after it was accepted.
type limitedListener struct {
	net.Listener
	slots   chan struct{}
	session time.Duration
}

func (l *limitedListener) Accept() (net.Conn, error) {
	l.slots <- struct{}{}
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.slots
			return nil, err
		}
		end := time.Now().Add(l.session)
		if err := c.SetDeadline(end); err != nil {
			_ = c.Close() // a connection already gone: take the next
			continue
		}
		return &limitedConn{Conn: c, end: end, release: func() { <-l.slots }}, nil
	}
}

// limitedConn keeps the deadlines go-smtp sets before each read and write
// within its session's end, and gives its slot back once closed.
type limitedConn struct {
	net.Conn
	end     time.Time
	once    sync.Once
	release func()
}

func (c *limitedConn) clamp(t time.Time) time.Time {
	if t.IsZero() || t.After(c.end) {
		return c.end
	}
	return t
}

func (c *limitedConn) SetDeadline(t time.Time) error      { return c.Conn.SetDeadline(c.clamp(t)) }
func (c *limitedConn) SetReadDeadline(t time.Time) error  { return c.Conn.SetReadDeadline(c.clamp(t)) }
func (c *limitedConn) SetWriteDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(c.clamp(t)) }

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
