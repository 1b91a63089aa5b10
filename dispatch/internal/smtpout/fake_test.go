package smtpout_test

import (
	"bufio"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fake is a scripted SMTP server on loopback: each accepted connection is
// handed to serve, which plays the server's side line by line. It exists
// for what a real server does rarely or never on request: pipelining
// checks, refusals at every step, dropped connections, broken replies.
type fake struct {
	addr     string
	conns    atomic.Int32
	wg       sync.WaitGroup
	handlers sync.WaitGroup
}

// wait returns when every connection's script has ended, so that what the
// scripts recorded can be read.
func (f *fake) wait() { f.handlers.Wait() }

func startFake(t *testing.T, serve func(p *peer)) *fake {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fake{addr: ln.Addr().String()}
	var mu sync.Mutex
	var open []net.Conn
	f.wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, nc)
			mu.Unlock()
			n := int(f.conns.Add(1))
			f.handlers.Go(func() {
				defer nc.Close()
				serve(&peer{t: t, nc: nc, r: bufio.NewReader(nc), n: n})
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, nc := range open {
			nc.Close()
		}
		mu.Unlock()
		f.wg.Wait()
		f.handlers.Wait()
	})
	return f
}

// peer is the server's side of one connection.
type peer struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
	n  int // 1 for the first connection
}

// say sends lines, each with CRLF, in one write.
func (p *peer) say(lines ...string) {
	_, _ = p.nc.Write([]byte(strings.Join(lines, "\r\n") + "\r\n"))
}

// line reads one line without its CRLF, or "<eof>" when the client is gone
// or silent for five seconds.
func (p *peer) line() string {
	_ = p.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	s, err := p.r.ReadString('\n')
	if err != nil {
		return "<eof>"
	}
	return strings.TrimSuffix(s, "\r\n")
}

// expect reads a line and reports it unless it starts with prefix.
func (p *peer) expect(prefix string) string {
	s := p.line()
	if !strings.HasPrefix(s, prefix) {
		p.t.Errorf("connection %d: got %q, want %s…", p.n, s, prefix)
	}
	return s
}

// quiet reports whether the client sends nothing within d: a client that
// must wait for a reply does.
func (p *peer) quiet(d time.Duration) bool {
	if p.r.Buffered() > 0 {
		return false
	}
	_ = p.nc.SetReadDeadline(time.Now().Add(d))
	_, err := p.r.Peek(1)
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// data reads message content up to the end-of-data line and returns it as
// transferred, dot-stuffing removed. ok is false if the connection ended
// first.
func (p *peer) data() (content string, ok bool) {
	var b strings.Builder
	for {
		_ = p.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		s, err := p.r.ReadString('\n')
		if err != nil {
			return b.String(), false
		}
		if s == ".\r\n" {
			return b.String(), true
		}
		b.WriteString(strings.TrimPrefix(s, "."))
	}
}

// hello greets, answers EHLO with the given extensions and returns the
// EHLO line.
func (p *peer) hello(ext ...string) string {
	p.say("220 fake.test ESMTP")
	ehlo := p.expect("EHLO ")
	lines := []string{"250-fake.test"}
	for _, e := range ext {
		lines = append(lines, "250-"+e)
	}
	lines[len(lines)-1] = "250 " + strings.TrimPrefix(lines[len(lines)-1], "250-")
	p.say(lines...)
	return ehlo
}

// envelope reads MAIL, RCPT and DATA and returns the two addresses.
func (p *peer) envelope() (from, to string) {
	from = strings.TrimSuffix(strings.TrimPrefix(p.expect("MAIL FROM:<"), "MAIL FROM:<"), ">")
	to = strings.TrimSuffix(strings.TrimPrefix(p.expect("RCPT TO:<"), "RCPT TO:<"), ">")
	p.expect("DATA")
	return from, to
}
