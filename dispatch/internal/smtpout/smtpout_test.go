package smtpout_test

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"

	"herald/devtools/mailcatch"
	"herald/dispatch/internal/provider"
	"herald/dispatch/internal/smtpout"
)

func startCatcher(t *testing.T, opts mailcatch.Options) *mailcatch.Server {
	t.Helper()
	mc, err := mailcatch.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mc.Close() })
	return mc
}

// newPool returns a pool that the test closes. Without a TLS mode it sends
// in plain text: most tests play the server on loopback and are about
// something other than TLS, which tls_test.go covers.
func newPool(t *testing.T, cfg smtpout.Config) *smtpout.Pool {
	t.Helper()
	if cfg.TLSMode == "" {
		cfg.TLSMode = smtpout.NoTLS
	}
	if cfg.HeloName == "" {
		cfg.HeloName = "client.test"
	}
	if cfg.Conns == 0 {
		cfg.Conns = 1
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	p := smtpout.NewPool(cfg)
	t.Cleanup(p.Close)
	return p
}

func message(id string) []byte {
	return []byte("Message-ID: <" + id + ">\r\nSubject: hi\r\n\r\nbody\r\n")
}

func TestSendClassifiesTheServersAnswer(t *testing.T) {
	ctx := context.Background()
	mc := startCatcher(t, mailcatch.Options{})
	mc.SetFault(func(from string, to []string) *smtp.SMTPError {
		switch {
		case strings.HasPrefix(to[0], "later@"):
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 28}, Message: "rate limited"}
		case strings.HasPrefix(to[0], "busy@"):
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again"}
		case strings.HasPrefix(to[0], "never@"):
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		case strings.HasPrefix(to[0], "policy@"):
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "blocked"}
		}
		return nil
	})
	pool := newPool(t, smtpout.Config{Addr: mc.SMTPAddr(), Conns: 2, MaxPerConn: 2})
	tests := []struct {
		to       string
		want     provider.Outcome
		code     int
		enhanced string
		hard     bool
	}{
		{"ok1@example.com", provider.Sent, 250, "2.0.0", false},
		{"later@example.com", provider.Throttled, 421, "4.7.28", false},
		{"ok2@example.com", provider.Sent, 250, "2.0.0", false}, // a new connection after 421
		{"busy@example.com", provider.Deferred, 451, "4.3.0", false},
		{"never@example.com", provider.Failed, 550, "5.1.1", true},
		{"policy@example.com", provider.Failed, 554, "5.7.1", false},
		{"ok3@example.com", provider.Sent, 250, "2.0.0", false},
	}
	for i, tc := range tests {
		res := pool.SendOne(ctx, "sender@example.com", tc.to, message(tc.to))
		if res.Outcome != tc.want || res.Code != tc.code || res.Enhanced != tc.enhanced || res.HardBounce != tc.hard {
			t.Errorf("send %d to %s: %v %d %s hard=%v %q; want %v %d %s hard=%v",
				i, tc.to, res.Outcome, res.Code, res.Enhanced, res.HardBounce, res.Reason, tc.want, tc.code, tc.enhanced, tc.hard)
		}
	}
	if st := mc.Stats(); st.Messages != 3 || st.Rejected != 4 {
		t.Fatalf("the server accepted %d and rejected %d messages, want 3 and 4", st.Messages, st.Rejected)
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

func TestSendBatchArrivesOnceEach(t *testing.T) {
	mc := startCatcher(t, mailcatch.Options{})
	pool := newPool(t, smtpout.Config{Addr: mc.SMTPAddr(), Conns: 4, MaxPerConn: 7})
	var msgs []*provider.Message
	for i := range 50 {
		id := strings.Repeat("x", i%3) + "m" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "@batch"
		msgs = append(msgs, &provider.Message{From: "s@example.com", To: "r" + id, Body: message(id)})
	}
	msgs[10].To = "bad\r\nRCPT TO:<injected@example.com>"
	res := pool.Send(context.Background(), msgs)
	for i, r := range res {
		want := provider.Sent
		if i == 10 {
			want = provider.Failed
		}
		if r.Outcome != want {
			t.Errorf("message %d: %v %q, want %v", i, r.Outcome, r.Reason, want)
		}
	}
	st := mc.Stats()
	if st.Messages != 49 || st.DistinctMessageIDs != 49 || st.DuplicateMessageIDs != 0 {
		t.Errorf("stats %+v: want 49 distinct messages, no duplicates", st)
	}
	for _, m := range mc.Messages() {
		if strings.Contains(m.To[0], "injected") {
			t.Errorf("an address with CRLF injected a recipient: %q", m.To)
		}
	}
}

func TestDotStuffingAndLineEnds(t *testing.T) {
	dir := t.TempDir()
	mc := startCatcher(t, mailcatch.Options{Maildir: dir})
	pool := newPool(t, smtpout.Config{Addr: mc.SMTPAddr(), Conns: 2})
	head := func(id string) string { return "Message-ID: <" + id + ">\r\nSubject: s\r\n\r\n" }
	tests := []struct {
		id, body, want string
	}{
		{"clean", "line one\r\nline two\r\n", "line one\r\nline two\r\n"},
		{"dots", ".\r\n..\r\n.leading\r\nmid.dle\r\n", ".\r\n..\r\n.leading\r\nmid.dle\r\n"},
		{"lf", "bare\nline\n.dot after lf\n", "bare\r\nline\r\n.dot after lf\r\n"},
		{"cr", "old\rmac\r.dot\r", "old\r\nmac\r\n.dot\r\n"},
		{"noeol", "no end of line", "no end of line\r\n"},
		{"noeol-dot", "x\r\n.", "x\r\n.\r\n"},
		{"terminator", "a\r\n.\r\nb\r\n", "a\r\n.\r\nb\r\n"}, // must not end the message early
		{"big-dots", strings.Repeat(".x\r\n", 20000), strings.Repeat(".x\r\n", 20000)},
		{"big-clean", strings.Repeat("0123456789\r\n", 10000), strings.Repeat("0123456789\r\n", 10000)},
	}
	var msgs []*provider.Message
	for _, tc := range tests {
		msgs = append(msgs, &provider.Message{From: "s@example.com", To: tc.id + "@example.com", Body: []byte(head(tc.id) + tc.body)})
	}
	for i, r := range pool.Send(context.Background(), msgs) {
		if r.Outcome != provider.Sent {
			t.Fatalf("%s: %v %q", tests[i].id, r.Outcome, r.Reason)
		}
	}
	stored := map[string]string{}
	for _, m := range mc.Messages() {
		b, err := os.ReadFile(m.Path)
		if err != nil {
			t.Fatal(err)
		}
		stored[m.MessageID] = string(b)
	}
	for _, tc := range tests {
		if got, want := stored[tc.id], head(tc.id)+tc.want; got != want {
			t.Errorf("%s: stored %q, want %q", tc.id, trunc(got), trunc(want))
		}
	}
}

func trunc(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// TestPipelining holds back every reply until the client has sent the
// whole group: a client that waited for each reply would stall. Behind
// each message's content the client sends the next message's envelope.
func TestPipelining(t *testing.T) {
	var mu sync.Mutex
	var got []string
	behind := 0 // envelopes that arrived before the previous message's reply
	f := startFake(t, func(p *peer) {
		p.hello("PIPELINING", "ENHANCEDSTATUSCODES")
		queued := false
		for {
			if !queued {
				if p.line() != "MAIL FROM:<s@example.com>" {
					return
				}
			}
			p.expect("RCPT TO:<")
			p.expect("DATA")
			p.say("250 2.1.0 ok", "250 2.1.5 ok", "354 go ahead")
			body, ok := p.data()
			if !ok {
				return
			}
			mu.Lock()
			got = append(got, body)
			mu.Unlock()
			// The next envelope comes without waiting for this reply.
			queued = !p.quiet(300 * time.Millisecond)
			if queued {
				if l := p.line(); l != "MAIL FROM:<s@example.com>" {
					t.Errorf("after the content: %q", l)
					return
				}
				mu.Lock()
				behind++
				mu.Unlock()
			}
			p.say("250 2.0.0 queued")
		}
	})
	pool := newPool(t, smtpout.Config{Addr: f.addr, Timeout: 2 * time.Second})
	var msgs []*provider.Message
	for _, id := range []string{"a", "b", "c"} {
		msgs = append(msgs, &provider.Message{From: "s@example.com", To: id + "@example.com", Body: message(id)})
	}
	for i, r := range pool.Send(context.Background(), msgs) {
		if r.Outcome != provider.Sent || r.Enhanced != "2.0.0" || r.Reason != "queued" {
			t.Errorf("message %d: %+v", i, r)
		}
	}
	pool.Close()
	f.wait()
	mu.Lock()
	defer mu.Unlock()
	if want := []string{string(message("a")), string(message("b")), string(message("c"))}; !cmp.Equal(got, want) {
		t.Errorf("server received %q, want %q", got, want)
	}
	if behind != 2 || f.conns.Load() != 1 {
		t.Errorf("%d of 2 envelopes came behind the previous content, over %d connections; want 2 over 1", behind, f.conns.Load())
	}
}

// TestWithoutPipelining: a server that does not offer PIPELINING gets one
// command at a time.
func TestWithoutPipelining(t *testing.T) {
	eager := 0
	f := startFake(t, func(p *peer) {
		p.hello("8BITMIME")
		for _, step := range []struct{ cmd, reply string }{{"MAIL FROM:", "250 ok"}, {"RCPT TO:", "250 ok"}, {"DATA", "354 go ahead"}} {
			p.expect(step.cmd)
			if !p.quiet(50 * time.Millisecond) {
				eager++
			}
			p.say(step.reply)
		}
		if _, ok := p.data(); ok {
			p.say("250 done")
		}
		p.expect("QUIT")
		p.say("221 bye")
	})
	pool := newPool(t, smtpout.Config{Addr: f.addr})
	msgs := []*provider.Message{{From: "s@example.com", To: "r@example.com", Body: message("x")}}
	if r := pool.Send(context.Background(), msgs)[0]; r.Outcome != provider.Sent {
		t.Fatalf("%+v", r)
	}
	pool.Close()
	f.wait()
	if eager > 0 {
		t.Errorf("the client sent %d commands before the previous reply", eager)
	}
}

// TestRefusedEnvelopeResets covers refusals of each envelope command under
// pipelining, including a server that answers DATA with 354 although it
// refused the only recipient: the client then ends the content at once.
// The connection carries the next message after RSET.
func TestRefusedEnvelopeResets(t *testing.T) {
	tests := []struct {
		name     string
		replies  []string // to MAIL, RCPT, DATA
		want     provider.Outcome
		code     int
		enhanced string
		hard     bool
		reason   string
	}{
		{"mail", []string{"451 4.3.0 not now", "503 5.5.1 no mail", "503 5.5.1 no rcpt"}, provider.Deferred, 451, "4.3.0", false, "MAIL FROM: 451 4.3.0 not now"},
		{"rcpt", []string{"250 ok", "550-5.1.1 no such user", "554 5.5.1 no valid recipients"}, provider.Failed, 550, "5.1.1", true, "RCPT TO: 550 5.1.1 no such user try another"},
		{"rcpt-354", []string{"250 ok", "452 4.2.2 mailbox full", "354 go ahead"}, provider.Deferred, 452, "4.2.2", false, "RCPT TO: 452 4.2.2 mailbox full"},
		{"data", []string{"250 ok", "250 ok", "451 4.7.1 greylisted"}, provider.Throttled, 451, "4.7.1", false, "DATA: 451 4.7.1 greylisted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var lone, resets, delivered int
			f := startFake(t, func(p *peer) {
				p.hello("PIPELINING", "ENHANCEDSTATUSCODES")
				p.envelope()
				replies := tc.replies
				if strings.HasPrefix(replies[1], "550-") {
					replies = []string{replies[0], replies[1], "550 5.1.1 try another", replies[2]}
				}
				p.say(replies...)
				if strings.HasPrefix(tc.replies[2], "354") {
					if body, ok := p.data(); ok && body == "" {
						lone++
					}
					p.say("554 5.5.1 no recipients")
				}
				p.expect("RSET")
				resets++
				p.say("250 2.0.0 reset")
				p.envelope()
				p.say("250 ok", "250 ok", "354 go ahead")
				if _, ok := p.data(); ok {
					delivered++
					p.say("250 2.0.0 queued")
				}
				p.expect("QUIT")
				p.say("221 bye")
			})
			pool := newPool(t, smtpout.Config{Addr: f.addr})
			r := pool.SendOne(context.Background(), "s@example.com", "r@example.com", message("1"))
			if r.Outcome != tc.want || r.Code != tc.code || r.Enhanced != tc.enhanced || r.HardBounce != tc.hard || r.Reason != tc.reason {
				t.Errorf("got %v %d %s hard=%v %q; want %v %d %s hard=%v %q", r.Outcome, r.Code, r.Enhanced, r.HardBounce, r.Reason, tc.want, tc.code, tc.enhanced, tc.hard, tc.reason)
			}
			if r := pool.SendOne(context.Background(), "s@example.com", "r@example.com", message("2")); r.Outcome != provider.Sent {
				t.Errorf("second message: %+v", r)
			}
			pool.Close()
			f.wait()
			if resets != 1 || delivered != 1 || f.conns.Load() != 1 {
				t.Errorf("%d resets, %d delivered over %d connections; want 1, 1, 1", resets, delivered, f.conns.Load())
			}
			if strings.HasPrefix(tc.replies[2], "354") && lone != 1 {
				t.Errorf("the client did not end the unwanted content at once")
			}
		})
	}
}

func TestMultilineReplies(t *testing.T) {
	f := startFake(t, func(p *peer) {
		p.hello("PIPELINING", "ENHANCEDSTATUSCODES", "SIZE 1000000")
		p.envelope()
		p.say("250 ok", "250 ok", "354 go ahead")
		p.data()
		p.say("250-2.0.0 accepted", "250-2.0.0 queued as", "250 2.0.0 ABC123")
		p.envelope()
		p.say("250 ok", "250 ok", "354 go ahead")
		p.data()
		p.say("550-5.7.26 Unauthenticated email is not accepted", "550-5.7.26 from this domain.", "550 5.7.26 See the sender guidelines.")
	})
	pool := newPool(t, smtpout.Config{Addr: f.addr})
	r := pool.SendOne(context.Background(), "s@example.com", "r@example.com", message("1"))
	if want := (provider.Result{Outcome: provider.Sent, Code: 250, Enhanced: "2.0.0", Reason: "accepted queued as ABC123"}); r != want {
		t.Errorf("got %+v, want %+v", r, want)
	}
	r = pool.SendOne(context.Background(), "s@example.com", "r@example.com", message("2"))
	want := provider.Result{Outcome: provider.Failed, Code: 550, Enhanced: "5.7.26",
		Reason: "550 5.7.26 Unauthenticated email is not accepted from this domain. See the sender guidelines."}
	if r != want {
		t.Errorf("got %+v, want %+v", r, want)
	}
}

// TestUnknownOnlyAfterTheEnd drops or stalls the connection at every step:
// only a missing answer after the whole message went out is Unknown.
func TestUnknownOnlyAfterTheEnd(t *testing.T) {
	big := make([]byte, 32<<20) // more than the socket buffers hold
	for i := range big {
		big[i] = 'x'
		if i%100 == 99 {
			big[i-1], big[i] = '\r', '\n'
		}
	}
	tests := []struct {
		name   string
		msg    []byte
		server func(p *peer)
		want   provider.Outcome
	}{
		{"greeting refused", message("x"), func(p *peer) { p.say("554 5.3.2 no service") }, provider.Deferred},
		{"busy greeting", message("x"), func(p *peer) { p.say("421 4.7.0 too many connections") }, provider.Throttled},
		{"drop after ehlo", message("x"), func(p *peer) { p.say("220 hi"); p.line() }, provider.Deferred},
		{"drop after envelope", message("x"), func(p *peer) { p.hello("PIPELINING"); p.envelope() }, provider.Deferred},
		{"silent after envelope", message("x"), func(p *peer) { p.hello("PIPELINING"); p.envelope(); p.line() }, provider.Deferred},
		{"drop after MAIL reply", message("x"), func(p *peer) { p.hello("PIPELINING"); p.envelope(); p.say("250 ok") }, provider.Deferred},
		{"stalled content", big, func(p *peer) {
			p.hello("PIPELINING")
			p.envelope()
			p.say("250 ok", "250 ok", "354 go")
			time.Sleep(1500 * time.Millisecond) // reads nothing: the client's write times out
		}, provider.Deferred},
		{"drop after content", message("x"), func(p *peer) {
			p.hello("PIPELINING")
			p.envelope()
			p.say("250 ok", "250 ok", "354 go")
			p.data()
		}, provider.Unknown},
		{"silent after content", message("x"), func(p *peer) {
			p.hello("PIPELINING")
			p.envelope()
			p.say("250 ok", "250 ok", "354 go")
			p.data()
			p.line()
		}, provider.Unknown},
		{"garbage after content", message("x"), func(p *peer) {
			p.hello("PIPELINING")
			p.envelope()
			p.say("250 ok", "250 ok", "354 go")
			p.data()
			p.say("OK THANKS")
		}, provider.Unknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, func(p *peer) {
				if p.n > 1 {
					t.Errorf("the client connected again")
					return
				}
				tc.server(p)
			})
			pool := newPool(t, smtpout.Config{Addr: f.addr, Timeout: 700 * time.Millisecond})
			r := pool.SendOne(context.Background(), "s@example.com", "r@example.com", tc.msg)
			if r.Outcome != tc.want {
				t.Errorf("got %v %q, want %v", r.Outcome, r.Reason, tc.want)
			}
		})
	}
}

// TestStaleConnectionIsRetried: the server drops a pooled connection while
// it is idle; the next message goes over a new one, once.
func TestStaleConnectionIsRetried(t *testing.T) {
	var mu sync.Mutex
	var ids []string
	f := startFake(t, func(p *peer) {
		p.hello("PIPELINING")
		p.envelope()
		p.say("250 ok", "250 ok", "354 go")
		body, ok := p.data()
		if !ok {
			return
		}
		mu.Lock()
		ids = append(ids, body)
		mu.Unlock()
		p.say("250 queued")
		// and hang up without a word, as a server's idle timeout does
	})
	pool := newPool(t, smtpout.Config{Addr: f.addr, IdleTimeout: time.Minute})
	for _, id := range []string{"1", "2", "3"} {
		time.Sleep(50 * time.Millisecond) // let the server hang up
		if r := pool.SendOne(context.Background(), "s@example.com", "r@example.com", message(id)); r.Outcome != provider.Sent {
			t.Fatalf("message %s: %v %q", id, r.Outcome, r.Reason)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 3 || f.conns.Load() != 3 {
		t.Errorf("server received %d messages over %d connections, want 3 over 3", len(ids), f.conns.Load())
	}
}

func TestConnectionsAreRecycled(t *testing.T) {
	var mu sync.Mutex
	perConn := map[int]int{}
	quits := 0
	f := startFake(t, func(p *peer) {
		p.hello("PIPELINING")
		for {
			l := p.line()
			if l == "QUIT" {
				mu.Lock()
				quits++
				mu.Unlock()
				p.say("221 bye")
				return
			}
			if !strings.HasPrefix(l, "MAIL FROM:") {
				return
			}
			p.expect("RCPT TO:")
			p.expect("DATA")
			p.say("250 ok", "250 ok", "354 go")
			if _, ok := p.data(); !ok {
				return
			}
			mu.Lock()
			perConn[p.n]++
			mu.Unlock()
			p.say("250 queued")
		}
	})
	pool := newPool(t, smtpout.Config{Addr: f.addr, MaxPerConn: 2, IdleTimeout: 100 * time.Millisecond})
	var msgs []*provider.Message
	for _, id := range []string{"1", "2", "3", "4", "5"} {
		msgs = append(msgs, &provider.Message{From: "s@example.com", To: "r@example.com", Body: message(id)})
	}
	for i, r := range pool.Send(context.Background(), msgs) {
		if r.Outcome != provider.Sent {
			t.Errorf("message %d: %+v", i, r)
		}
	}
	time.Sleep(200 * time.Millisecond) // the idle connection expires
	if r := pool.SendOne(context.Background(), "s@example.com", "r@example.com", message("6")); r.Outcome != provider.Sent {
		t.Errorf("message 6: %+v", r)
	}
	pool.Close()
	mu.Lock()
	defer mu.Unlock()
	if want := map[int]int{1: 2, 2: 2, 3: 1, 4: 1}; !cmp.Equal(perConn, want) {
		t.Errorf("messages per connection %v, want %v", perConn, want)
	}
	if quits != 4 {
		t.Errorf("%d connections said QUIT, want 4", quits)
	}
}

func TestHeloFallbackAndSMTPUTF8(t *testing.T) {
	var mail []string // connections are sequential
	f := startFake(t, func(p *peer) {
		if p.n == 1 {
			p.say("220 old.test")
			p.expect("EHLO ")
			p.say("502 what")
			p.expect("HELO client.test")
			p.say("250 old.test")
		} else {
			p.hello("SMTPUTF8")
		}
		mail = append(mail, p.line())
		p.say("250 ok")
		p.expect("RCPT TO:<")
		p.say("250 ok")
		p.expect("DATA")
		p.say("354 go")
		p.data()
		p.say("250 ok")
		p.expect("QUIT")
		p.say("221 bye")
	})
	for range 2 {
		pool := newPool(t, smtpout.Config{Addr: f.addr})
		if r := pool.SendOne(context.Background(), "s@example.com", "jürgen@example.de", message("1")); r.Outcome != provider.Sent {
			t.Errorf("%+v", r)
		}
		pool.Close()
	}
	f.wait()
	if want := []string{"MAIL FROM:<s@example.com>", "MAIL FROM:<s@example.com> SMTPUTF8"}; !cmp.Equal(mail, want) {
		t.Errorf("MAIL commands %q, want %q", mail, want)
	}
}

func TestCancelledContextSendsNothing(t *testing.T) {
	mc := startCatcher(t, mailcatch.Options{})
	pool := newPool(t, smtpout.Config{Addr: mc.SMTPAddr()})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	msgs := []*provider.Message{{From: "a@example.com", To: "b@example.com", Body: message("c1")}, {From: "a@example.com", To: "c@example.com", Body: message("c2")}}
	for i, r := range pool.Send(ctx, msgs) {
		if r.Outcome != provider.Deferred {
			t.Errorf("message %d: %v, want deferred", i, r.Outcome)
		}
	}
	if st := mc.Stats(); st.Messages != 0 {
		t.Errorf("server accepted %d messages", st.Messages)
	}
}

func TestSendToADeadServerIsDeferred(t *testing.T) {
	pool := smtpout.NewPool(smtpout.Config{Addr: "127.0.0.1:1", Conns: 1, Timeout: time.Second, TLSMode: smtpout.NoTLS})
	if res := pool.SendOne(context.Background(), "a@example.com", "b@example.com", []byte("x")); res.Outcome != provider.Deferred {
		t.Fatalf("got %v %q, want deferred: nothing can have been accepted", res.Outcome, res.Reason)
	}
}

// TestChunking: a server offering CHUNKING gets each CRLF message as one
// BDAT LAST chunk, once its envelope is accepted, with the next envelope
// behind it; a refused recipient gets no chunk; a message with bare line
// feeds still goes with DATA; NoChunking keeps to DATA.
func TestChunking(t *testing.T) {
	type seen struct {
		Cmd, Body string
	}
	run := func(t *testing.T, cfg smtpout.Config, msgs []*provider.Message) ([]seen, []provider.Result) {
		t.Helper()
		var mu sync.Mutex
		var got []seen
		f := startFake(t, func(p *peer) {
			p.hello("PIPELINING", "CHUNKING", "ENHANCEDSTATUSCODES")
			pending := "" // a line read ahead
			next := func() string {
				if pending != "" {
					l := pending
					pending = ""
					return l
				}
				return p.line()
			}
			for {
				l := next()
				if l == "QUIT" || l == "<eof>" {
					return
				}
				if !strings.HasPrefix(l, "MAIL FROM:") {
					t.Errorf("got %q, want MAIL", l)
					return
				}
				rcpt := p.expect("RCPT TO:<")
				if strings.Contains(rcpt, "refused") {
					p.say("250 2.1.0 ok", "550 5.1.1 no such user")
					if !p.quiet(200 * time.Millisecond) {
						if l := p.line(); l != "RSET" {
							t.Errorf("after a refused recipient: %q, want RSET", l)
						}
					}
					p.say("250 2.0.0 reset")
					continue
				}
				p.say("250 2.1.0 ok", "250 2.1.5 ok")
				cmd := p.line()
				var body string
				switch {
				case strings.HasPrefix(cmd, "BDAT "):
					var size int
					if _, err := fmt.Sscanf(cmd, "BDAT %d LAST", &size); err != nil {
						t.Errorf("%q: %v", cmd, err)
						return
					}
					buf := make([]byte, size)
					if _, err := io.ReadFull(p.r, buf); err != nil {
						return
					}
					body = string(buf)
				case cmd == "DATA":
					p.say("354 go ahead")
					var ok bool
					if body, ok = p.data(); !ok {
						return
					}
				default:
					t.Errorf("after the envelope: %q", cmd)
					return
				}
				mu.Lock()
				got = append(got, seen{strings.Fields(cmd)[0], body})
				mu.Unlock()
				if !p.quiet(200 * time.Millisecond) {
					pending = p.line()
				}
				p.say("250 2.0.0 queued")
			}
		})
		cfg.Addr, cfg.Timeout = f.addr, 2*time.Second
		pool := newPool(t, cfg)
		res := pool.Send(context.Background(), msgs)
		pool.Close()
		f.wait()
		mu.Lock()
		defer mu.Unlock()
		return got, res
	}
	lf := []byte("Message-ID: <lf>\nSubject: s\n\n.bare\nline feeds\n")
	msgs := []*provider.Message{
		{From: "s@example.com", To: "a@example.com", Body: message("a")},
		{From: "s@example.com", To: "refused@example.com", Body: message("r")},
		{From: "s@example.com", To: "b@example.com", Body: message("b")},
		{From: "s@example.com", To: "lf@example.com", Body: lf},
		{From: "s@example.com", To: "c@example.com", Body: message("c")},
	}
	got, res := run(t, smtpout.Config{}, msgs)
	want := []seen{{"BDAT", string(message("a"))}, {"BDAT", string(message("b"))},
		{"DATA", strings.ReplaceAll(string(lf), "\n", "\r\n")}, {"BDAT", string(message("c"))}}
	if !cmp.Equal(got, want) {
		t.Errorf("server received %q, want %q", got, want)
	}
	for i, r := range res {
		if wantOut := provider.Sent; i == 1 {
			if r.Outcome != provider.Failed {
				t.Errorf("refused recipient: %+v, want failed", r)
			}
		} else if r.Outcome != wantOut {
			t.Errorf("message %d: %+v, want sent", i, r)
		}
	}
	got, _ = run(t, smtpout.Config{NoChunking: true}, msgs[:1])
	if len(got) != 1 || got[0].Cmd != "DATA" {
		t.Errorf("with NoChunking the server received %q, want DATA", got)
	}
}
