package feedback_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	netsmtp "net/smtp"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"

	"herald/ingest/internal/feedback"
	"herald/ingest/internal/store"
	"herald/shared/event"
)

func TestInboundAppliesReportsSentToTheReturnDomain(t *testing.T) {
	var mu sync.Mutex
	var applied []store.Feedback
	failing := false
	in, err := feedback.NewInbound(feedback.InboundConfig{
		Domain: "bounces.acme.example", Key: keyOf(sampleDecoder), Log: slog.New(slog.DiscardHandler),
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

// keyOf turns a KeyFunc of the samples into the receiver's key function.
func keyOf(key feedback.KeyFunc) func(context.Context, string) (event.DeliveryKey, error) {
	return func(_ context.Context, addr string) (event.DeliveryKey, error) { return key(addr) }
}

// startInbound serves cfg on a loopback port and returns its address.
func startInbound(t *testing.T, cfg feedback.InboundConfig) string {
	t.Helper()
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	in, err := feedback.NewInbound(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = in.Serve(l) }()
	t.Cleanup(func() { _ = in.Shutdown(context.Background()) })
	return l.Addr().String()
}

// sendReport sends raw to rcpt over SMTP from the null sender, as a
// receiving MTA sends a bounce, with the standard library's client.
func sendReport(addr, rcpt string, raw []byte) error {
	c, err := netsmtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Mail(""); err != nil {
		return err
	}
	if err := c.Rcpt(rcpt); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(raw); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func replyCode(err error) int {
	var e *textproto.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

var verpTest = event.ReturnPath{Domain: "bounces.acme.example", Secret: []byte("0123456789abcdef-inbound")}

// TestVERPKeyChecksTheMACBeforeTheLookup: a return path Herald made is
// looked up by its hash; a forged or foreign one never reaches the lookup;
// a delivery that is gone is no key, and a lookup that fails is
// ErrKeyUnavailable, so the report is retried rather than dropped.
func TestVERPKeyChecksTheMACBeforeTheLookup(t *testing.T) {
	addr := verpTest.Address(sampleKey)
	hash, _, _ := strings.Cut(sampleKey.MessageID(""), "@")
	var asked []string
	var fail error
	key := feedback.VERPKey(verpTest, func(_ context.Context, h string) (event.DeliveryKey, error) {
		asked = append(asked, h)
		if fail != nil {
			return event.DeliveryKey{}, fail
		}
		return sampleKey, nil
	})
	if k, err := key(context.Background(), addr); err != nil || k != sampleKey {
		t.Errorf("key(%q) = %+v, %v; want %+v", addr, k, err, sampleKey)
	}
	forged := event.ReturnPath{Domain: verpTest.Domain, Secret: []byte("another secret, 16+ bytes")}.Address(sampleKey)
	for _, a := range []string{forged, "postmaster@bounces.acme.example", "bounce+aaaa@bounces.acme.example"} {
		if _, err := key(context.Background(), a); !errors.Is(err, event.ErrForgedVERP) && !errors.Is(err, event.ErrNotVERP) {
			t.Errorf("key(%q) = %v, want a VERP error", a, err)
		}
	}
	if diff := cmp.Diff([]string{hash}, asked); diff != "" {
		t.Errorf("hashes looked up (-want +got):\n%s", diff)
	}
	fail = fmt.Errorf("delivery: %w", store.ErrNotFound)
	if _, err := key(context.Background(), addr); !errors.Is(err, store.ErrNotFound) || errors.Is(err, feedback.ErrKeyUnavailable) {
		t.Errorf("a delivery that is gone: %v, want ErrNotFound only", err)
	}
	fail = errors.New("connection refused")
	if _, err := key(context.Background(), addr); !errors.Is(err, feedback.ErrKeyUnavailable) {
		t.Errorf("a failed lookup: %v, want ErrKeyUnavailable", err)
	}
}

// TestInboundRetriesWhenTheLookupFails: a bounce whose delivery could not
// be looked up is refused with 451, so the sender retries, and nothing is
// applied; a return path whose delivery is gone is taken.
func TestInboundRetriesWhenTheLookupFails(t *testing.T) {
	var fail error
	applied := 0
	addr := startInbound(t, feedback.InboundConfig{
		Domain: verpTest.Domain,
		Key: feedback.VERPKey(verpTest, func(context.Context, string) (event.DeliveryKey, error) {
			return sampleKey, fail
		}),
		Apply: func(context.Context, store.Feedback) (store.FeedbackResult, error) {
			applied++
			return store.FeedbackApplied, nil
		},
	})
	raw := readSample(t, "dsn-hard-bounce.eml")
	fail = errors.New("database unavailable")
	if err := sendReport(addr, verpTest.Address(sampleKey), raw); replyCode(err) != 451 {
		t.Errorf("lookup failing: %v, want 451", err)
	}
	fail = store.ErrNotFound
	if err := sendReport(addr, verpTest.Address(sampleKey), raw); err != nil {
		t.Errorf("delivery gone: %v, want the report taken", err)
	}
	if applied != 0 {
		t.Errorf("%d reports applied, want none", applied)
	}
}

// TestInboundLimits: a message over MaxBytes is refused with 552, and a
// connection is closed once its session time is over, however it is used.
func TestInboundLimits(t *testing.T) {
	addr := startInbound(t, feedback.InboundConfig{
		Domain: "bounces.acme.example", Key: keyOf(sampleDecoder), MaxBytes: 4 << 10, SessionTime: 200 * time.Millisecond,
		Apply: func(context.Context, store.Feedback) (store.FeedbackResult, error) { return store.FeedbackApplied, nil },
	})
	big := append(readSample(t, "dsn-hard-bounce.eml"), []byte(strings.Repeat(strings.Repeat("x", 76)+"\r\n", 100))...)
	if err := sendReport(addr, sampleReturnPath, big); replyCode(err) != 552 {
		t.Errorf("message over MaxBytes: %v, want 552", err)
	}
	// A peer that keeps the connection busy never trips the read timeout;
	// the session time still ends it.
	c, err := netsmtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; ; i++ {
		if err := c.Noop(); err != nil {
			break
		}
		if i == 1000 {
			t.Fatal("the session outlived 1000 NOOPs 10 ms apart")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestInboundServesAtMostMaxConns: with one connection allowed, a second
// peer is greeted only once the first has gone.
func TestInboundServesAtMostMaxConns(t *testing.T) {
	addr := startInbound(t, feedback.InboundConfig{
		Domain: "bounces.acme.example", Key: keyOf(sampleDecoder), MaxConns: 1,
		Apply: func(context.Context, store.Feedback) (store.FeedbackResult, error) { return store.FeedbackApplied, nil },
	})
	first, err := netsmtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	greeted := make(chan error, 1)
	go func() {
		c, err := netsmtp.Dial(addr)
		if err == nil {
			err = c.Quit()
		}
		greeted <- err
	}()
	if err := first.Noop(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-greeted:
		t.Fatalf("second peer served while the first is connected: %v", err)
	default:
	}
	if err := first.Quit(); err != nil {
		t.Fatal(err)
	}
	if err := <-greeted; err != nil {
		t.Errorf("second peer after the first left: %v", err)
	}
}
