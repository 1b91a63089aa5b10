package smtpout_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"herald/dispatch/internal/provider"
	"herald/dispatch/internal/smtpout"
	"herald/shared/mailcatch"
)

func TestSendClassifiesTheServersAnswer(t *testing.T) {
	ctx := context.Background()
	mc, err := mailcatch.Start(ctx, mailcatch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	mc.SetFault(func(from string, to []string) *smtp.SMTPError {
		switch {
		case strings.HasPrefix(to[0], "later@"):
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 28}, Message: "rate limited"}
		case strings.HasPrefix(to[0], "never@"):
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	})
	pool := smtpout.NewPool(smtpout.Config{Addr: mc.SMTPAddr(), HeloName: "test", Conns: 2, Timeout: 5 * time.Second, MaxPerConn: 2})
	defer pool.Close()
	msg := func(id string) []byte {
		return []byte("Message-ID: <" + id + ">\r\nSubject: hi\r\n\r\nbody\r\n")
	}
	tests := []struct {
		to   string
		want provider.Outcome
		code int
	}{
		{"ok1@example.com", provider.Sent, 250},
		{"later@example.com", provider.Throttled, 421},
		{"ok2@example.com", provider.Sent, 250}, // the connection survives a refusal
		{"never@example.com", provider.Failed, 550},
		{"ok3@example.com", provider.Sent, 250}, // and is recycled after MaxPerConn
	}
	for i, tc := range tests {
		res := pool.SendOne(ctx, "sender@example.com", tc.to, msg(tc.to))
		if res.Outcome != tc.want || res.Code != tc.code || res.HardBounce != (tc.code == 550) {
			t.Fatalf("send %d to %s: %v %d %q; want %v %d", i, tc.to, res.Outcome, res.Code, res.Reason, tc.want, tc.code)
		}
	}
	if st := mc.Stats(); st.Messages != 3 {
		t.Fatalf("the server accepted %d messages, want 3", st.Messages)
	}
	srv := httptest.NewServer(mc.Handler())
	defer srv.Close()
	found, err := smtpout.NewLookup(srv.URL+"/api/lookup").Found(ctx, []string{"ok1@example.com", "later@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if !found["ok1@example.com"] || found["later@example.com"] {
		t.Fatalf("lookup found %v; want only the accepted message", found)
	}
}

func TestSendToADeadServerIsDeferred(t *testing.T) {
	pool := smtpout.NewPool(smtpout.Config{Addr: "127.0.0.1:1", Conns: 1, Timeout: time.Second})
	if res := pool.SendOne(context.Background(), "a@example.com", "b@example.com", []byte("x")); res.Outcome != provider.Deferred {
		t.Fatalf("got %v %q, want deferred: nothing can have been accepted", res.Outcome, res.Reason)
	}
}
