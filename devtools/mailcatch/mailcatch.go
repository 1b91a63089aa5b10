// Package mailcatch is an SMTP server that accepts every message and keeps
// it where a person or a test can look at it: the demo points Herald's SMTP
// sender at it and the user opens the .eml files it writes; end-to-end tests
// count what arrived and look for duplicates and losses through Stats, Has
// and the JSON API; benchmarks run it in sink mode, where message bodies are
// read and dropped.
//
// By default every sender and recipient is accepted without authentication,
// over plain text or STARTTLS. Options make it behave like a submission
// relay instead (RFC 6409, RFC 8314): TLS required before MAIL, implicit TLS
// from the first byte as on port 465, and AUTH PLAIN or LOGIN (RFC 4954)
// with one set of credentials, offered only inside TLS and required before
// MAIL. Only the header block of each message is parsed, for its Message-ID
// and Subject.
// Per message the server keeps the metadata that Messages returns, sharing
// the strings of repeated senders and recipients, so a million messages cost
// a few hundred bytes each.
package mailcatch

import (
	"bufio"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Limits the server enforces on each SMTP transaction.
const (
	// MaxMessageBytes is the largest message accepted, advertised with SIZE.
	MaxMessageBytes = 10 << 20
	// MaxRecipients is the most RCPT commands accepted for one message.
	MaxRecipients = 10000
	// maxLineLength is generous because a catcher should accept what a
	// sloppy sender produces, such as unwrapped base64 or HTML, rather than
	// drop the connection.
	maxLineLength = 1 << 20
	// readTimeout is how long a connection may stay idle between commands;
	// the same deadline covers the transfer of a message's content.
	readTimeout  = 2 * time.Minute
	writeTimeout = 30 * time.Second
)

// chunkSize is how many message records share one backing array. Records are
// appended in fixed-size chunks so that growing to millions of messages never
// copies the records already stored.
const chunkSize = 4096

// Options configures Start.
type Options struct {
	// Addr is the SMTP listen address. Empty means "127.0.0.1:0", a free
	// loopback port.
	Addr string
	// Maildir, when set, is a Maildir where each accepted message is stored
	// as a file whose name ends in ".eml": written under tmp/ and renamed
	// into new/. The directories are created if needed. When empty, message
	// bodies are read and discarded (sink mode).
	Maildir string
	// MaxFiles, when positive, bounds how many messages are kept in the
	// Maildir; later ones are recorded and counted as in sink mode, so a
	// large demo job does not fill the disk.
	MaxFiles int
	// Domain is the server's host name in its greeting and in the names of
	// Maildir files. Empty means "mailcatch.localhost".
	Domain string
	// Log receives start, stop and error messages. Nil discards them.
	Log *slog.Logger
	// TLSConfig, when set, makes the server offer STARTTLS (RFC 3207) with
	// it, so that senders can be tested over TLS. Plain connections are
	// still accepted unless RequireTLS is set.
	TLSConfig *tls.Config
	// RequireTLS refuses MAIL over a connection that is not encrypted, as a
	// submission relay does, so that a sender which skips STARTTLS is
	// caught. It needs TLSConfig.
	RequireTLS bool
	// ImplicitTLS makes the listener speak TLS from the first byte, as on
	// port 465 (RFC 8314), instead of offering STARTTLS. It needs
	// TLSConfig.
	ImplicitTLS bool
	// Auth, when set, offers AUTH PLAIN and LOGIN inside TLS only (never
	// over plain text) and refuses MAIL from a client that has not
	// authenticated with these credentials. It needs TLSConfig.
	Auth *Credentials
	// AuthMechanisms, when set, narrows what AUTH offers to these of PLAIN
	// and LOGIN, so that a client's choice of mechanism can be tested.
	AuthMechanisms []string
}

// Credentials are the one user name and password a catcher with
// Options.Auth accepts.
type Credentials struct {
	Username string
	Password string
}

// Stats counts what the server accepted. Messages and recipients refused by
// the fault hook are counted only in Rejected.
type Stats struct {
	// Messages is the number of accepted DATA transactions.
	Messages int64 `json:"messages"`
	// Recipients is the number of recipients of accepted messages, summed.
	Recipients int64 `json:"recipients"`
	// DistinctMessageIDs is the number of different Message-ID values seen.
	DistinctMessageIDs int64 `json:"distinct_message_ids"`
	// DuplicateMessageIDs is the number of messages whose Message-ID had
	// been seen before.
	DuplicateMessageIDs int64 `json:"duplicate_message_ids"`
	// MissingMessageIDs is the number of messages without a Message-ID
	// header; they count in neither of the two fields above.
	MissingMessageIDs int64 `json:"missing_message_ids"`
	// DistinctRecipients is the number of different recipient addresses.
	DistinctRecipients int64 `json:"distinct_recipients"`
	// DuplicateRecipients is the number of recipients, summed over accepted
	// messages, that had been seen before, in an earlier message or earlier
	// in the same one. DistinctRecipients + DuplicateRecipients == Recipients.
	DuplicateRecipients int64 `json:"duplicate_recipients"`
	// Rejected is the number of messages the fault hook refused.
	Rejected int64 `json:"rejected"`
	// AuthFailures is the number of AUTH exchanges refused for wrong
	// credentials.
	AuthFailures int64 `json:"auth_failures"`
	// RefusedMail is the number of MAIL commands refused because the
	// connection was not encrypted or not authenticated as required.
	RefusedMail int64 `json:"refused_mail"`
}

// Message describes an accepted message.
type Message struct {
	// MessageID is the Message-ID header without angle brackets, or empty.
	MessageID string `json:"message_id"`
	// From is the envelope sender (MAIL FROM).
	From string `json:"from"`
	// To lists the envelope recipients (RCPT TO) in the order given.
	To []string `json:"to"`
	// Subject is the Subject header with RFC 2047 encoded words decoded.
	Subject string `json:"subject"`
	// Path is the message's file in the Maildir, or empty in sink mode.
	Path string `json:"path,omitempty"`
	// Received is when the end of the message's content arrived.
	Received time.Time `json:"received"`
	// Size is the message's size in bytes, as transferred (CRLF line ends,
	// dot-stuffing removed).
	Size int `json:"size"`
}

// FaultFunc decides, at the end of a message's content, whether to refuse
// it. A non-nil result is sent to the client as the reply to DATA, and the
// message is neither stored nor counted as accepted.
type FaultFunc func(from string, to []string) *smtp.SMTPError

// record is what the server keeps per accepted message. Strings shared with
// other records (senders, recipients) point at the same memory.
type record struct {
	id       string
	from     string
	to       []string
	subject  string
	file     string // base name under new/, or empty in sink mode
	received int64  // Unix nanoseconds
	size     int
}

// Server is a running mail catcher.
type Server struct {
	smtp     *smtp.Server
	ln       net.Listener
	addr     string
	maildir  string       // absolute, or empty in sink mode
	maxFiles int64        // 0: no bound
	files    atomic.Int64 // files kept or being written
	host     string       // Domain made safe for file names
	log      *slog.Logger
	// requireTLS and auth are Options.RequireTLS and Options.Auth.
	requireTLS bool
	auth       *Credentials
	mechs      []string
	handler    http.Handler

	fault     atomic.Pointer[FaultFunc]
	fileSeq   atomic.Uint64
	serveDone chan struct{}
	readers   sync.Pool // *bufio.Reader for parsing headers

	mu      sync.Mutex
	drained *sync.Cond // signalled when active drops to zero
	closed  bool
	active  int // Data calls under way
	stats   Stats
	ids     map[string]struct{}
	rcpts   map[string]string // recipient address to its shared copy
	senders map[string]string // sender address to its shared copy
	chunks  [][]record
}

// Start listens on opts.Addr and serves SMTP until Close.
func Start(ctx context.Context, opts Options) (*Server, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "mailcatch")
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	domain := opts.Domain
	if domain == "" {
		domain = "mailcatch.localhost"
	}
	if opts.TLSConfig == nil && (opts.RequireTLS || opts.ImplicitTLS || opts.Auth != nil) {
		return nil, errors.New("start mailcatch: RequireTLS, ImplicitTLS and Auth need TLSConfig")
	}

	s := &Server{
		host:       fileSafe(domain),
		log:        log,
		requireTLS: opts.RequireTLS,
		auth:       opts.Auth,
		mechs:      []string{sasl.Plain, sasl.Login},
		serveDone:  make(chan struct{}),
		ids:        make(map[string]struct{}),
		rcpts:      make(map[string]string),
		senders:    make(map[string]string),
	}
	if len(opts.AuthMechanisms) > 0 {
		s.mechs = slices.Clone(opts.AuthMechanisms)
	}
	for _, m := range s.mechs {
		if m != sasl.Plain && m != sasl.Login {
			return nil, fmt.Errorf("start mailcatch: unknown AUTH mechanism %q", m)
		}
	}
	s.drained = sync.NewCond(&s.mu)
	s.readers.New = func() any { return bufio.NewReaderSize(nil, 4096) }
	if opts.Maildir != "" {
		dir, err := filepath.Abs(opts.Maildir)
		if err != nil {
			return nil, fmt.Errorf("start mailcatch: resolve maildir: %w", err)
		}
		for _, sub := range []string{"tmp", "new", "cur"} {
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
				return nil, fmt.Errorf("start mailcatch: create maildir: %w", err)
			}
		}
		s.maildir = dir
		s.maxFiles = int64(max(opts.MaxFiles, 0))
	}

	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		nc := c.Conn()
		if tc, ok := nc.(*tls.Conn); ok {
			nc = tc.NetConn()
		}
		bc, _ := nc.(*batchConn)
		return &session{srv: s, smtp: c, conn: bc}, nil
	}))
	srv.Domain = domain
	srv.MaxMessageBytes = MaxMessageBytes
	srv.MaxRecipients = MaxRecipients
	srv.MaxLineLength = maxLineLength
	srv.ReadTimeout = readTimeout
	srv.WriteTimeout = writeTimeout
	srv.EnableSMTPUTF8 = true
	srv.TLSConfig = opts.TLSConfig
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	s.smtp = srv

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("start mailcatch: listen: %w", err)
	}
	s.ln = ln
	s.addr = ln.Addr().String()
	s.handler = s.newHandler()
	var served net.Listener = batchListener{ln}
	if opts.ImplicitTLS {
		// TLS above batchConn: the handshake's records, like replies, go
		// out when the server next waits for the client.
		served = tls.NewListener(served, opts.TLSConfig)
	}
	go func() {
		defer close(s.serveDone)
		if err := srv.Serve(served); err != nil {
			log.Error("serve smtp", "err", err)
		}
	}()
	log.Info("mailcatch listening", "smtp", s.addr, "maildir", s.maildir,
		"implicit_tls", opts.ImplicitTLS, "require_tls", opts.RequireTLS, "auth", opts.Auth != nil)
	return s, nil
}

// SMTPAddr returns the address the SMTP server listens on, as host:port.
func (s *Server) SMTPAddr() string { return s.addr }

// Maildir returns the absolute path of the Maildir, or empty in sink mode.
func (s *Server) Maildir() string { return s.maildir }

// SetFault installs f to be asked about every message at the end of its
// content; nil removes it. It takes effect for messages finishing after it
// returns.
func (s *Server) SetFault(f func(from string, to []string) *smtp.SMTPError) {
	if f == nil {
		s.fault.Store(nil)
		return
	}
	ff := FaultFunc(f)
	s.fault.Store(&ff)
}

// Stats returns the counters at this moment.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Has reports whether a message with this Message-ID was accepted. Angle
// brackets around messageID are ignored.
func (s *Server) Has(messageID string) bool {
	id := normalizeID(messageID)
	if id == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.ids[id]
	return ok
}

// Messages returns every accepted message in arrival order. It copies all
// metadata, so it costs time and memory in proportion to the number of
// messages.
func (s *Server) Messages() []Message {
	chunks := s.snapshot()
	n := 0
	for _, c := range chunks {
		n += len(c)
	}
	out := make([]Message, 0, n)
	for _, c := range chunks {
		for i := range c {
			out = append(out, s.message(&c[i]))
		}
	}
	return out
}

// Close stops accepting connections, closes open ones and waits for messages
// being stored to finish. Later calls do nothing.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()

	err := s.smtp.Close()
	// go-smtp closes only the listeners Serve has registered; one that Serve
	// has not reached yet would keep it accepting forever.
	_ = s.ln.Close()
	<-s.serveDone
	s.mu.Lock()
	for s.active > 0 {
		s.drained.Wait()
	}
	s.mu.Unlock()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close mailcatch: %w", err)
	}
	s.log.Info("mailcatch closed", "messages", s.Stats().Messages)
	return nil
}

// snapshot returns the stored records. The outer slice is a copy and every
// record it reaches is complete and never written again, so the caller may
// read it without holding the lock.
func (s *Server) snapshot() [][]record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.chunks)
}

// message converts a record for callers.
func (s *Server) message(r *record) Message {
	m := Message{
		MessageID: r.id,
		From:      r.from,
		To:        slices.Clone(r.to),
		Subject:   r.subject,
		Received:  time.Unix(0, r.received),
		Size:      r.size,
	}
	if r.file != "" {
		m.Path = filepath.Join(s.maildir, "new", r.file)
	}
	return m
}

// session holds one SMTP connection's transaction state. go-smtp calls its
// methods from the connection's goroutine, and starts a new session after
// STARTTLS, so authed never outlives the plain-text part of a connection.
type session struct {
	srv    *Server
	smtp   *smtp.Conn
	conn   *batchConn // nil if the connection is not one of ours
	authed bool
	from   string
	to     []string
}

func (ss *session) Reset() {
	ss.from = ""
	ss.to = ss.to[:0]
}

func (ss *session) Logout() error { return nil }

// Refusals of MAIL on a relay that requires TLS or AUTH, worded as
// submission servers word them (RFC 3207 section 4, RFC 4954 section 6).
var (
	errTLSRequired = &smtp.SMTPError{
		Code:         530,
		EnhancedCode: smtp.EnhancedCode{5, 7, 0},
		Message:      "Must issue a STARTTLS command first",
	}
	errAuthRequired = &smtp.SMTPError{
		Code:         530,
		EnhancedCode: smtp.EnhancedCode{5, 7, 0},
		Message:      "Authentication required",
	}
)

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	_, encrypted := ss.smtp.TLSConnectionState()
	var refusal error
	switch {
	case ss.srv.requireTLS && !encrypted:
		refusal = errTLSRequired
	case ss.srv.auth != nil && !ss.authed:
		refusal = errAuthRequired
	}
	if refusal != nil {
		ss.srv.mu.Lock()
		ss.srv.stats.RefusedMail++
		ss.srv.mu.Unlock()
		return refusal
	}
	ss.from = from
	return nil
}

// AuthMechanisms lists what AUTH takes. go-smtp offers them only over TLS
// (Server.AllowInsecureAuth stays false) and answers AUTH over plain text
// with a refusal, before any credentials are read.
func (ss *session) AuthMechanisms() []string {
	if ss.srv.auth == nil {
		return nil
	}
	return ss.srv.mechs
}

// Auth starts one AUTH exchange.
func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.srv.auth == nil {
		return nil, smtp.ErrAuthUnsupported
	}
	if !slices.Contains(ss.srv.mechs, mech) {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return ss.srv.authFailed()
			}
			return ss.login(username, password)
		}), nil
	case sasl.Login:
		return &loginServer{check: ss.login}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// login checks credentials in constant time and marks the session
// authenticated.
func (ss *session) login(username, password string) error {
	want := ss.srv.auth
	userOK := subtle.ConstantTimeCompare([]byte(username), []byte(want.Username))
	passOK := subtle.ConstantTimeCompare([]byte(password), []byte(want.Password))
	if userOK&passOK != 1 {
		return ss.srv.authFailed()
	}
	ss.authed = true
	return nil
}

// authFailed counts a refused AUTH and returns its reply, 535 5.7.8.
func (s *Server) authFailed() error {
	s.mu.Lock()
	s.stats.AuthFailures++
	s.mu.Unlock()
	return smtp.ErrAuthFailed
}

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login), which go-sasl implements only as a client
// and which many relays still offer beside PLAIN: the user name and then
// the password, each asked for with a challenge. A client may send the user
// name as the initial response.
type loginServer struct {
	check    func(username, password string) error
	username []byte
	step     int
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step = 1
		if response == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		l.username = response
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.check(string(l.username), string(response))
	}
	return nil, false, sasl.ErrUnexpectedClientResponse
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	return ss.srv.receive(ss.from, slices.Clone(ss.to), r, ss.conn.ended)
}

// errClientGone is returned for a message whose client closed the
// connection before the server had all of it. A BDAT chunk cut short by
// the end of the connection reads as complete through go-smtp; the client
// cannot hear the answer either way, so the message is refused.
var errClientGone = &smtp.SMTPError{
	Code:         451,
	EnhancedCode: smtp.EnhancedCode{4, 4, 2},
	Message:      "Connection closed during the message",
}

// errShuttingDown is returned for messages that finish while the server is
// closing.
var errShuttingDown = &smtp.SMTPError{
	Code:         421,
	EnhancedCode: smtp.EnhancedCode{4, 3, 2},
	Message:      "Server shutting down",
}

// reserveFile takes one of the Maildir's places for a message, reporting
// false when MaxFiles are already taken.
func (s *Server) reserveFile() bool {
	if s.files.Add(1) <= s.maxFiles || s.maxFiles == 0 {
		return true
	}
	s.files.Add(-1)
	return false
}

// errStorage is returned when a message cannot be written to the Maildir.
var errStorage = &smtp.SMTPError{
	Code:         451,
	EnhancedCode: smtp.EnhancedCode{4, 3, 0},
	Message:      "Cannot store message, try again later",
}

// receive reads one message, stores it in Maildir mode and records it;
// ended reports whether the client's connection ended meanwhile.
func (s *Server) receive(from string, to []string, r io.Reader, ended func() bool) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errShuttingDown
	}
	s.active++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.active--
		if s.active == 0 {
			s.drained.Broadcast()
		}
		s.mu.Unlock()
	}()

	counter := &countingReader{r: r}
	var src io.Reader = counter
	var file *os.File
	var tmpPath, name string
	if s.maildir != "" && s.reserveFile() {
		name = s.fileName()
		tmpPath = filepath.Join(s.maildir, "tmp", name)
		f, err := os.OpenFile(tmpPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			s.files.Add(-1)
			s.log.Error("create message file", "err", err)
			return errStorage
		}
		file = f
		src = io.TeeReader(counter, fileWriter{f})
	}
	discard := func() {
		if file != nil {
			_ = file.Close()
			_ = os.Remove(tmpPath)
			s.files.Add(-1)
		}
	}

	br := s.readers.Get().(*bufio.Reader)
	br.Reset(src)
	// A malformed header block still yields the fields read before the
	// error; a catcher accepts the message regardless.
	header, _ := textproto.NewReader(br).ReadMIMEHeader()
	_, err := io.Copy(io.Discard, br)
	br.Reset(nil)
	s.readers.Put(br)
	if err != nil {
		discard()
		var smtpErr *smtp.SMTPError
		if errors.As(err, &smtpErr) {
			return smtpErr // such as ErrDataTooLarge
		}
		if errors.Is(err, errWrite) {
			s.log.Error("write message file", "err", err)
			return errStorage
		}
		return fmt.Errorf("read message: %w", err)
	}

	if ended() {
		discard()
		return errClientGone
	}

	if f := s.fault.Load(); f != nil {
		if smtpErr := (*f)(from, to); smtpErr != nil {
			discard()
			s.mu.Lock()
			s.stats.Rejected++
			s.mu.Unlock()
			return smtpErr
		}
	}

	if file != nil {
		if err := file.Close(); err != nil {
			_ = os.Remove(tmpPath)
			s.files.Add(-1)
			s.log.Error("close message file", "err", err)
			return errStorage
		}
		if err := os.Rename(tmpPath, filepath.Join(s.maildir, "new", name)); err != nil {
			_ = os.Remove(tmpPath)
			s.files.Add(-1)
			s.log.Error("deliver message file", "err", err)
			return errStorage
		}
	}

	s.record(record{
		id:       normalizeID(header.Get("Message-Id")),
		from:     from,
		to:       to,
		subject:  decodeSubject(header.Get("Subject")),
		file:     name,
		received: time.Now().UnixNano(),
		size:     int(counter.n),
	})
	return nil
}

// record counts an accepted message and appends it to the log.
func (s *Server) record(r record) {
	s.mu.Lock()
	defer s.mu.Unlock()

	st := &s.stats
	st.Messages++
	st.Recipients += int64(len(r.to))
	switch _, seen := s.ids[r.id]; {
	case r.id == "":
		st.MissingMessageIDs++
	case seen:
		st.DuplicateMessageIDs++
	default:
		st.DistinctMessageIDs++
		s.ids[r.id] = struct{}{}
	}
	for i, addr := range r.to {
		if shared, ok := s.rcpts[addr]; ok {
			st.DuplicateRecipients++
			r.to[i] = shared
		} else {
			st.DistinctRecipients++
			s.rcpts[addr] = addr
		}
	}
	if shared, ok := s.senders[r.from]; ok {
		r.from = shared
	} else {
		s.senders[r.from] = r.from
	}

	if n := len(s.chunks); n == 0 || len(s.chunks[n-1]) == chunkSize {
		s.chunks = append(s.chunks, make([]record, 0, chunkSize))
	}
	last := len(s.chunks) - 1
	s.chunks[last] = append(s.chunks[last], r)
}

// fileName returns a new unique Maildir file name: seconds, microseconds,
// process id, a sequence number and the host, in the spirit of the Maildir
// convention, ending in ".eml" so that desktop mail programs open it.
func (s *Server) fileName() string {
	now := time.Now()
	return fmt.Sprintf("%d.M%06dP%dQ%d.%s.eml",
		now.Unix(), now.Nanosecond()/1000, os.Getpid(), s.fileSeq.Add(1), s.host)
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// errWrite marks a failure to write the message file inside io.TeeReader,
// which otherwise looks like a read error.
var errWrite = errors.New("write message file")

// fileWriter writes a message file, marking its errors with errWrite.
type fileWriter struct{ f *os.File }

func (w fileWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		return n, fmt.Errorf("%w: %w", errWrite, err)
	}
	return n, nil
}

// normalizeID trims spaces and the angle brackets around a Message-ID.
func normalizeID(id string) string {
	id = strings.TrimSpace(id)
	id = strings.TrimPrefix(id, "<")
	id = strings.TrimSuffix(id, ">")
	return strings.TrimSpace(id)
}

// decodeSubject decodes RFC 2047 encoded words, keeping the raw header when
// it uses a charset the standard library does not know.
func decodeSubject(raw string) string {
	if !strings.Contains(raw, "=?") {
		return raw
	}
	var dec mime.WordDecoder
	decoded, err := dec.DecodeHeader(raw)
	if err != nil {
		return raw
	}
	return decoded
}

// fileSafe replaces the characters of a host name that do not belong in a
// Maildir file name.
func fileSafe(host string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			return r
		default:
			return '_'
		}
	}, host)
}
