package smtpout

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"herald/dispatch/internal/provider"
)

// conn is one SMTP session, used by one goroutine at a time.
type conn struct {
	nc net.Conn
	br *bufio.Reader
	bw *bufio.Writer // writes to cw
	cw *countingWriter
	// ext holds the EHLO keywords, upper case, with their parameters.
	ext        map[string]string
	pipelining bool
	smtputf8   bool
	chunking   bool // the server takes BDAT (RFC 3030) and we may use it
	// checked is the content bdat last scanned, and chunk its answer: a
	// message is asked about for its envelope and again for its content.
	checked []byte
	chunk   bool
	tls     bool
	// sent counts accepted messages; reused is set once the connection has
	// been back in the pool, idleSince when it went there.
	sent      int
	reused    bool
	idleSince time.Time
}

// Buffer sizes: replies are short, and a write buffer that holds a whole
// typical message sends it with the end-of-data line in one system call.
const (
	readBufferSize  = 4 << 10
	writeBufferSize = 32 << 10
)

// dial opens a session: greeting, EHLO, TLS as cfg.TLSMode says, and AUTH
// when configured. Its errors are transport errors, *replyError, or wrap
// ErrRelayConfig.
func dial(ctx context.Context, cfg *Config, tlsConfig *tls.Config) (*conn, error) {
	d := net.Dialer{Timeout: cfg.Timeout}
	nc, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	c := &conn{nc: nc, cw: &countingWriter{w: nc}}
	if cfg.TLSMode == ImplicitTLS {
		_ = nc.SetDeadline(deadline(ctx, cfg.Timeout))
		tc := tls.Client(nc, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			return nil, handshakeError("implicit tls", err)
		}
		c.nc, c.cw.w, c.tls = tc, tc, true
	}
	c.br = bufio.NewReaderSize(c.nc, readBufferSize)
	c.bw = bufio.NewWriterSize(c.cw, writeBufferSize)
	if err := c.open(ctx, cfg, tlsConfig); err != nil {
		_ = c.nc.Close()
		return nil, err
	}
	return c, nil
}

func (c *conn) open(ctx context.Context, cfg *Config, tlsConfig *tls.Config) error {
	// Each step of the opening has the whole timeout.
	arm := func() { _ = c.nc.SetDeadline(deadline(ctx, cfg.Timeout)) }
	arm()
	greeting, err := readReply(c.br, true, nil)
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if greeting.code != 220 {
		return &replyError{"greeting", greeting}
	}
	arm()
	if err := c.hello(cfg.HeloName); err != nil {
		return err
	}
	if cfg.TLSMode == StartTLS {
		if _, offered := c.ext["STARTTLS"]; !offered {
			return fmt.Errorf("%w: the relay offers no STARTTLS, and TLS is required", ErrRelayConfig)
		}
		arm()
		if err := c.startTLS(ctx, tlsConfig); err != nil {
			return err
		}
		arm()
		if err := c.hello(cfg.HeloName); err != nil {
			return err
		}
	}
	if cfg.Auth != nil {
		arm()
		if err := c.authenticate(cfg.Auth); err != nil {
			return err
		}
	}
	c.chunking = c.chunking && !cfg.NoChunking
	return nil
}

// handshakeError wraps a failed TLS handshake; one that failed because the
// relay's certificate does not verify is a configuration error, since
// trying again meets the same certificate.
func handshakeError(step string, err error) error {
	var verr *tls.CertificateVerificationError
	var herr x509.HostnameError
	if errors.As(err, &verr) || errors.As(err, &herr) {
		return fmt.Errorf("%s: %w: %w", step, ErrRelayConfig, err)
	}
	return fmt.Errorf("%s: %w", step, err)
}

// authenticate runs AUTH (RFC 4954) with PLAIN where the relay offers it,
// else LOGIN. It refuses to run over a connection that is not encrypted,
// whatever the configuration says, so credentials never travel in plain
// text. The password never appears in an error.
func (c *conn) authenticate(a *Auth) error {
	if !c.tls {
		return fmt.Errorf("%w: credentials are never sent before TLS", ErrRelayConfig)
	}
	offered, ok := c.ext["AUTH"]
	if !ok {
		return fmt.Errorf("%w: the relay offers no AUTH, and credentials are configured", ErrRelayConfig)
	}
	mechs := strings.Fields(strings.ToUpper(offered))
	b64 := base64.StdEncoding.EncodeToString
	var lines []string // what to send, each after a 334 challenge but the first
	switch {
	case slices.Contains(mechs, "PLAIN"):
		lines = []string{"AUTH PLAIN " + b64([]byte("\x00"+a.Username+"\x00"+a.Password))}
	case slices.Contains(mechs, "LOGIN"):
		lines = []string{"AUTH LOGIN", b64([]byte(a.Username)), b64([]byte(a.Password))}
	default:
		return fmt.Errorf("%w: the relay offers AUTH %s, neither PLAIN nor LOGIN", ErrRelayConfig, offered)
	}
	for i, line := range lines {
		_, _ = c.bw.WriteString(line + "\r\n")
		if err := c.bw.Flush(); err != nil {
			return fmt.Errorf("auth: %w", err)
		}
		r, err := readReply(c.br, true, nil)
		if err != nil {
			return fmt.Errorf("auth: %w", err)
		}
		last := i == len(lines)-1
		switch {
		case r.code == 235 && last:
			return nil
		case r.code == 334 && !last:
			continue
		case r.code >= 500 || r.code/100 == 2 || r.code == 334:
			// Refused credentials (535), a mechanism the relay will not
			// take (534, 538), or an exchange that is not the one expected:
			// each time the same. A stray 334 is ended with "*".
			if r.code == 334 {
				_, _ = c.bw.WriteString("*\r\n")
				_ = c.bw.Flush()
			}
			return fmt.Errorf("%w: the relay refused AUTH for %s: %s", ErrRelayConfig, a.Username, r)
		default:
			return &replyError{"AUTH", r}
		}
	}
	return nil
}

// hello sends EHLO and records the extensions, falling back to HELO for a
// server that does not know EHLO.
func (c *conn) hello(name string) error {
	ext := make(map[string]string)
	first := true
	_, _ = c.bw.WriteString("EHLO " + name + "\r\n")
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("ehlo: %w", err)
	}
	r, err := readReply(c.br, true, func(line []byte) {
		if first { // the server's name and greeting
			first = false
			return
		}
		kw, params, _ := strings.Cut(string(line), " ")
		ext[strings.ToUpper(kw)] = params
	})
	if err != nil {
		return fmt.Errorf("ehlo: %w", err)
	}
	if r.code == 500 || r.code == 502 { // command not recognized
		ext = map[string]string{}
		_, _ = c.bw.WriteString("HELO " + name + "\r\n")
		if err := c.bw.Flush(); err != nil {
			return fmt.Errorf("helo: %w", err)
		}
		if r, err = readReply(c.br, true, nil); err != nil {
			return fmt.Errorf("helo: %w", err)
		}
		if r.code != 250 {
			return &replyError{"HELO", r}
		}
	} else if r.code != 250 {
		return &replyError{"EHLO", r}
	}
	c.ext = ext
	_, c.pipelining = ext["PIPELINING"]
	_, c.smtputf8 = ext["SMTPUTF8"]
	_, c.chunking = ext["CHUNKING"]
	return nil
}

// startTLS upgrades the session (RFC 3207). The server's EHLO answer from
// before is forgotten; the caller says EHLO again.
func (c *conn) startTLS(ctx context.Context, cfg *tls.Config) error {
	_, _ = c.bw.WriteString("STARTTLS\r\n")
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("starttls: %w", err)
	}
	r, err := readReply(c.br, true, nil)
	if err != nil {
		return fmt.Errorf("starttls: %w", err)
	}
	if r.code != 220 {
		return &replyError{"STARTTLS", r}
	}
	// Anything after the reply was sent in plain text before the handshake
	// and could have been injected; a real server sends nothing.
	if c.br.Buffered() > 0 {
		return fmt.Errorf("starttls: %w: data after the reply", errProtocol)
	}
	tc := tls.Client(c.nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return handshakeError("starttls", err)
	}
	c.nc = tc
	c.br.Reset(tc)
	c.cw.w = tc
	c.tls = true
	return nil
}

// deadline is timeout from now, or the context's deadline if sooner.
func deadline(ctx context.Context, timeout time.Duration) time.Time {
	d := time.Now().Add(timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		return cd
	}
	return d
}

// outcome of a transaction besides its result.
type outcome struct {
	// reusable: the session is in a clean state for another transaction.
	reusable bool
	// stale: the connection failed before the server answered anything,
	// so nothing was sent but the envelope; worth one more try on a new
	// connection if this one had sat in the pool.
	stale bool
	// nextQueued: the next message's envelope went out behind this
	// message's content and its replies are on their way.
	nextQueued bool
}

// bdat reports whether m's content goes out in one BDAT chunk (RFC 3030)
// rather than after DATA: when the server offers CHUNKING and every line
// of m, the last one too, already ends in CRLF, as rendered messages do. The chunk is the
// message as it is: no dot-stuffing on our side, no byte-by-byte scan for
// the end-of-data line on the server's.
func (c *conn) bdat(m *provider.Message) bool {
	if !c.chunking {
		return false
	}
	if len(m.Body) == 0 {
		return false
	}
	if len(m.Body) != len(c.checked) || &m.Body[0] != &c.checked[0] {
		c.checked, c.chunk = m.Body, bytes.HasSuffix(m.Body, []byte("\r\n")) && crlfOnly(m.Body)
	}
	return c.chunk
}

// appendEnvelope buffers the commands that open a transaction for m: MAIL
// and RCPT, and DATA unless the content will go out with BDAT.
func (c *conn) appendEnvelope(m *provider.Message) {
	bw := c.bw
	_, _ = bw.WriteString("MAIL FROM:<")
	_, _ = bw.WriteString(m.From)
	_, _ = bw.WriteString(">")
	if c.smtputf8 && (!isASCII(m.From) || !isASCII(m.To)) {
		_, _ = bw.WriteString(" SMTPUTF8")
	}
	_, _ = bw.WriteString("\r\nRCPT TO:<")
	_, _ = bw.WriteString(m.To)
	_, _ = bw.WriteString(">\r\n")
	if !c.bdat(m) {
		_, _ = bw.WriteString("DATA\r\n")
	}
}

var steps = [3]string{"MAIL FROM", "RCPT TO", "DATA"}

// deliver runs one mail transaction. Everything before the end-of-data
// line is written can only end Deferred, Throttled or Failed; only a
// missing or unreadable answer after it is Unknown.
//
// With PIPELINING the envelope and DATA go out in one write and their
// three replies are read together (RFC 2920). With BDAT there is no DATA:
// once MAIL and RCPT are accepted, the content follows its BDAT command,
// and the reply to that is the final one. With queued set, the
// envelope went out already, behind the previous message. With next set,
// next's envelope follows this message's content in the same write, which
// RFC 2920 section 3.1 allows: a stream of messages then costs one round
// trip each.
func (c *conn) deliver(ctx context.Context, timeout time.Duration, m *provider.Message, queued bool, next *provider.Message) (provider.Result, outcome) {
	_ = c.nc.SetDeadline(deadline(ctx, timeout))
	var replies [3]reply
	n := 0 // replies read
	chunked := c.bdat(m)
	want := 3 // replies before the content
	if chunked {
		want = 2
	}
	var ioErr error
	if c.pipelining {
		if !queued {
			c.appendEnvelope(m)
			ioErr = c.bw.Flush()
		}
		for ; ioErr == nil && n < want; n++ {
			if replies[n], ioErr = readReply(c.br, false, nil); ioErr != nil {
				break
			}
		}
	} else {
		cmds := [3]string{"MAIL FROM:<" + m.From + ">\r\n", "RCPT TO:<" + m.To + ">\r\n", "DATA\r\n"}
		if c.smtputf8 && (!isASCII(m.From) || !isASCII(m.To)) {
			cmds[0] = "MAIL FROM:<" + m.From + "> SMTPUTF8\r\n"
		}
		for ; n < want; n++ {
			_, _ = c.bw.WriteString(cmds[n])
			if ioErr = c.bw.Flush(); ioErr != nil {
				break
			}
			if replies[n], ioErr = readReply(c.br, false, nil); ioErr != nil {
				break
			}
			if want := [3]int{250, 250, 354}[n]; replies[n].code != want {
				n++
				break
			}
		}
	}

	// The first refusal decides, whatever came after it.
	for i := 0; i < n && i < 2; i++ {
		if replies[i].code/100 != 2 {
			return c.refused(steps[i], replies[i], n == 3 && replies[2].code == 354, ioErr)
		}
	}
	if ioErr != nil {
		return deferred(steps[min(n, want-1)], ioErr), outcome{stale: n == 0 && c.reused && !queued}
	}
	if !chunked && replies[2].code != 354 {
		return c.refused("DATA", replies[2], false, nil)
	}

	_ = c.nc.SetWriteDeadline(time.Now().Add(timeout))
	write := writeData
	if chunked {
		write = writeChunk
	}
	if err := write(c.bw, c.cw, m.Body); err != nil {
		// The content's last byte did not go out: nothing was accepted.
		return deferred("write message", err), outcome{}
	}
	// Every byte up to here is the message; the stream offset of its end
	// tells a failed write after it from one before it.
	end := c.cw.n + int64(c.bw.Buffered())
	if next != nil {
		c.appendEnvelope(next)
	}
	if err := c.bw.Flush(); err != nil {
		if c.cw.n < end {
			return deferred("write message", err), outcome{}
		}
		return provider.Result{Outcome: provider.Unknown, Reason: "write after message: " + err.Error()}, outcome{}
	}
	// The whole message is out. From here on, not knowing is Unknown. The
	// context no longer shortens the wait: an answer is worth waiting for.
	_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
	r, err := readReply(c.br, true, nil)
	if err != nil {
		return provider.Result{Outcome: provider.Unknown, Reason: "await reply to message: " + err.Error()}, outcome{}
	}
	o := outcome{reusable: r.code != 421} // 421: the server is closing the connection
	o.nextQueued = next != nil && o.reusable
	if r.code/100 == 2 {
		c.sent++
		return provider.Result{Outcome: provider.Sent, Code: r.code, Enhanced: r.enhanced, Reason: r.text}, o
	}
	return classify(r), o
}

// refused classifies a refusal before the message content, when the
// server cannot have accepted anything, and resets the transaction. With
// dataOpen the server answered DATA with 354 although the envelope had
// failed (RFC 2920 section 3.1 allows it): the content is then ended at
// once with a lone end-of-data line.
func (c *conn) refused(step string, r reply, dataOpen bool, ioErr error) (provider.Result, outcome) {
	res := classify(r)
	if res.Outcome == provider.Sent { // cannot happen: 2xx is not a refusal
		res.Outcome = provider.Deferred
	}
	res.Reason = step + ": " + res.Reason
	if r.code == 530 {
		// "Authentication required" (RFC 4954) or "Must issue a STARTTLS
		// command first" (RFC 3207): the relay wants what this
		// configuration does not give it. No message is at fault, so none
		// fails; the breaker opens instead.
		res.Outcome, res.HardBounce = provider.Deferred, false
		res.Reason = ErrRelayConfig.Error() + ": " + res.Reason
	}
	if ioErr != nil || r.code == 421 { // 421: the server is closing the connection
		return res, outcome{}
	}
	if dataOpen {
		_, _ = c.bw.WriteString(endOfData)
	}
	_, _ = c.bw.WriteString("RSET\r\n")
	if c.bw.Flush() != nil {
		return res, outcome{}
	}
	if dataOpen {
		// The server has no recipient to deliver to, whatever it answers.
		if _, err := readReply(c.br, false, nil); err != nil {
			return res, outcome{}
		}
	}
	rset, err := readReply(c.br, false, nil)
	return res, outcome{reusable: err == nil && rset.code == 250}
}

// countingWriter counts the bytes the connection took.
type countingWriter struct {
	w io.Writer
	n int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.n += int64(n)
	return n, err
}

func deferred(step string, err error) provider.Result {
	return provider.Result{Outcome: provider.Deferred, Reason: step + ": " + err.Error()}
}

// quit ends the session politely, within a short time, and closes it.
func (c *conn) quit() {
	_ = c.nc.SetDeadline(time.Now().Add(2 * time.Second))
	_, _ = c.bw.WriteString("QUIT\r\n")
	if c.bw.Flush() == nil {
		_, _ = readReply(c.br, false, nil)
	}
	_ = c.nc.Close()
}

func (c *conn) close() { _ = c.nc.Close() }

// classify maps an SMTP reply to an outcome: 421 and 4.7.x ask the sender
// to slow down; other 4xx are temporary; 5xx are permanent, and 5.1.x (no
// such mailbox, bad address) is a hard bounce.
func classify(r reply) provider.Result {
	res := provider.Result{Code: r.code, Enhanced: r.enhanced, Reason: r.String()}
	switch {
	case r.code/100 == 2:
		res.Outcome = provider.Sent
	case r.code == 421 || strings.HasPrefix(r.enhanced, "4.7."):
		res.Outcome = provider.Throttled
	case r.code >= 400 && r.code < 500:
		res.Outcome = provider.Deferred
	case r.code >= 500:
		res.Outcome = provider.Failed
		res.HardBounce = strings.HasPrefix(r.enhanced, "5.1.") || (r.enhanced == "" && (r.code == 550 || r.code == 553))
	default:
		res.Outcome = provider.Deferred
	}
	return res
}

// connectFailure classifies a failure to open a session. Nothing was sent,
// and a refusal at this stage is about the connection, not the message, so
// it is never Failed.
func connectFailure(err error) provider.Result {
	var re *replyError
	if errors.As(err, &re) {
		res := classify(re.reply)
		// A temporary AUTH failure (454 4.7.0) is about the credentials
		// store, not a request to slow down.
		if res.Outcome != provider.Throttled || re.step == "AUTH" {
			res.Outcome = provider.Deferred
		}
		res.HardBounce = false
		res.Reason = "connect: " + re.Error()
		return res
	}
	return provider.Result{Outcome: provider.Deferred, Reason: "connect: " + err.Error()}
}

// validAddress reports whether addr can go in a MAIL or RCPT command
// between angle brackets without breaking the command line: no controls,
// spaces or brackets. It is not a full RFC 5321 syntax check; the server
// does that.
func validAddress(addr string) bool {
	if len(addr) > 998 {
		return false
	}
	for i := 0; i < len(addr); i++ {
		switch b := addr[i]; {
		case b < 0x21, b == 0x7f, b == '<', b == '>':
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
