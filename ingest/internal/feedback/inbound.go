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
	"time"

	"github.com/emersion/go-smtp"

	"herald/ingest/internal/store"
)

// InboundConfig configures the SMTP receiver of the return domain.
type InboundConfig struct {
	// Domain is the return domain whose MX this receiver is: mail to any
	// other domain is refused, so it is no open relay.
	Domain string
	// Key recovers a delivery from the address a report was sent to.
	Key KeyFunc
	// Apply applies one report (store.Store.ApplyFeedback with the
	// soft-bounce limit).
	Apply func(ctx context.Context, f store.Feedback) (store.FeedbackResult, error)
	Log   *slog.Logger
	// MaxBytes bounds one message; 0 is 10 MiB, room for a report that
	// encloses the whole original message.
	MaxBytes int64
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
		cfg.MaxBytes = 10 << 20
	}
	in := &Inbound{cfg: cfg}
	in.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &inboundSession{in: in}, nil
	}))
	in.srv.Domain = cfg.Domain
	in.srv.MaxMessageBytes = cfg.MaxBytes
	in.srv.MaxRecipients = 50
	in.srv.ReadTimeout = time.Minute
	in.srv.WriteTimeout = time.Minute
	return in, nil
}

// Serve accepts connections on l until Shutdown.
func (in *Inbound) Serve(l net.Listener) error {
	if err := in.srv.Serve(l); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
		return fmt.Errorf("serve inbound feedback: %w", err)
	}
	return nil
}

// Shutdown stops accepting connections and waits for sessions in progress
// until ctx is done.
func (in *Inbound) Shutdown(ctx context.Context) error { return in.srv.Shutdown(ctx) }

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
	ctx := context.Background()
	log := s.in.cfg.Log
	for _, rcpt := range s.rcpts {
		b, err := ParseReport(bytes.Clone(raw), rcpt, s.in.cfg.Key)
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
