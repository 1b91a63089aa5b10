package feedback_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"

	"herald/ingest/internal/feedback"
	"herald/ingest/internal/store"
)

func TestInboundAppliesReportsSentToTheReturnDomain(t *testing.T) {
	var mu sync.Mutex
	var applied []store.Feedback
	failing := false
	in, err := feedback.NewInbound(feedback.InboundConfig{
		Domain: "bounces.acme.example", Key: sampleDecoder, Log: slog.New(slog.DiscardHandler),
		Apply: func(_ context.Context, f store.Feedback) (store.FeedbackResult, error) {
			mu.Lock()
			defer mu.Unlock()
			if failing {
				return "", errors.New("database unavailable")
			}
			applied = append(applied, f)
			return store.FeedbackApplied, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = in.Serve(l) }()
	t.Cleanup(func() { _ = in.Shutdown(context.Background()) })

	send := func(rcpt, sample string) error {
		t.Helper()
		// As a receiving MTA's bounce: plain SMTP from the null sender.
		c, err := smtp.Dial(l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Mail("", nil); err != nil {
			return err
		}
		if err := c.Rcpt(rcpt, nil); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		if _, err := io.Copy(w, strings.NewReader(string(readSample(t, sample)))); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
		return c.Quit()
	}
	code := func(err error) int {
		var e *smtp.SMTPError
		if errors.As(err, &e) {
			return e.Code
		}
		return 0
	}

	if err := send(sampleReturnPath, "dsn-hard-bounce.eml"); err != nil {
		t.Fatal(err)
	}
	if err := send("abuse@bounces.acme.example", "arf-abuse.eml"); err != nil {
		t.Fatal(err)
	}
	want := []store.Feedback{
		smtpReport("20261127081408.7F3A1C0042@mx1.example.net/ada@example.net", store.Bounced),
		smtpReport("fbl-7a1b2c3d-1764351612@fbl.example.com/ada@example.net", store.Complained),
	}
	mu.Lock()
	if diff := cmp.Diff(want, applied); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
	mu.Unlock()

	// A report to an address no delivery used is taken, and changes nothing.
	if err := send("postmaster@bounces.acme.example", "dsn-hard-bounce.eml"); err != nil {
		t.Errorf("a report naming no delivery: %v", err)
	}
	if err := send("bounce+aaaa@elsewhere.example", "dsn-hard-bounce.eml"); code(err) != 550 {
		t.Errorf("mail for another domain: %v, want 550", err)
	}
	for _, sample := range []string{"bad-plain-bounce.eml", "bad-dsn-no-status.eml", "bad-dsn-truncated.eml", "bad-arf-no-type.eml"} {
		if err := send(sampleReturnPath, sample); code(err) != 550 {
			t.Errorf("%s: %v, want 550", sample, err)
		}
	}
	mu.Lock()
	failing = true
	mu.Unlock()
	if err := send(sampleReturnPath, "dsn-delayed.eml"); code(err) != 451 {
		t.Errorf("a report that could not be applied: %v, want 451", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(applied) != 2 {
		t.Errorf("%d reports applied, want the first two only", len(applied))
	}
}
