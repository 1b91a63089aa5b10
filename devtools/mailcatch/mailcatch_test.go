package mailcatch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func startServer(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	s, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// rawMessage builds a message with CRLF line ends. An empty id leaves out
// the Message-ID header.
func rawMessage(id, subject, body string) string {
	var b strings.Builder
	b.WriteString("From: Sender <sender@example.com>\r\n")
	b.WriteString("To: someone@example.com\r\n")
	if id != "" {
		b.WriteString("Message-ID: <" + id + ">\r\n")
	}
	b.WriteString("Subject: " + subject + "\r\n")
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	b.WriteString(body + "\r\n")
	return b.String()
}

// send delivers one message over its own connection.
func send(t testing.TB, addr, from string, to []string, msg string) error {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	return c.SendMail(from, to, strings.NewReader(msg))
}

func TestMaildirCapture(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mail")
	s := startServer(t, Options{Maildir: dir, Domain: "catch.test"})
	if ok, _ := extension(t, s.SMTPAddr(), "PIPELINING"); !ok {
		t.Error("PIPELINING is not advertised")
	}
	if ok, _ := extension(t, s.SMTPAddr(), "8BITMIME"); !ok {
		t.Error("8BITMIME is not advertised")
	}
	if _, size := extension(t, s.SMTPAddr(), "SIZE"); size != fmt.Sprint(MaxMessageBytes) {
		t.Errorf("SIZE = %q, want %d", size, MaxMessageBytes)
	}

	msgs := []struct {
		from string
		to   []string
		raw  string
	}{
		{"a@example.com", []string{"x@example.org", "y@example.org"}, rawMessage("one@herald", "=?UTF-8?B?R3LDvMOfZQ==?= from Herald", "first")},
		{"a@example.com", []string{"x@example.org"}, rawMessage("two@herald", "plain", "second\r\n.leading dot")},
		{"b@example.com", []string{"z@example.org"}, rawMessage("one@herald", "resent", "third")},
		{"b@example.com", []string{"z@example.org"}, rawMessage("", "no id", "fourth")},
	}
	for _, m := range msgs {
		if err := send(t, s.SMTPAddr(), m.from, m.to, m.raw); err != nil {
			t.Fatal(err)
		}
	}

	wantStats := Stats{
		Messages:            4,
		Recipients:          5,
		DistinctMessageIDs:  2,
		DuplicateMessageIDs: 1,
		MissingMessageIDs:   1,
		DistinctRecipients:  3,
		DuplicateRecipients: 2,
	}
	if diff := cmp.Diff(wantStats, s.Stats()); diff != "" {
		t.Errorf("Stats() mismatch (-want +got):\n%s", diff)
	}
	for id, want := range map[string]bool{"one@herald": true, "<two@herald>": true, " <two@herald> ": true, "three@herald": false, "": false} {
		if got := s.Has(id); got != want {
			t.Errorf("Has(%q) = %v, want %v", id, got, want)
		}
	}

	got := s.Messages()
	want := []Message{
		{MessageID: "one@herald", From: "a@example.com", To: []string{"x@example.org", "y@example.org"}, Subject: "Grüße from Herald", Size: len(msgs[0].raw)},
		{MessageID: "two@herald", From: "a@example.com", To: []string{"x@example.org"}, Subject: "plain", Size: len(msgs[1].raw)},
		{MessageID: "one@herald", From: "b@example.com", To: []string{"z@example.org"}, Subject: "resent", Size: len(msgs[2].raw)},
		{MessageID: "", From: "b@example.com", To: []string{"z@example.org"}, Subject: "no id", Size: len(msgs[3].raw)},
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Message{}, "Path", "Received")); diff != "" {
		t.Errorf("Messages() mismatch (-want +got):\n%s", diff)
	}
	for i, m := range got {
		if time.Since(m.Received) > time.Minute || m.Received.After(time.Now()) {
			t.Errorf("message %d received at %v", i, m.Received)
		}
		if filepath.Dir(m.Path) != filepath.Join(s.Maildir(), "new") || !strings.HasSuffix(m.Path, ".eml") {
			t.Errorf("message %d path %q is not an .eml file in %s/new", i, m.Path, s.Maildir())
			continue
		}
		content, err := os.ReadFile(m.Path)
		if err != nil {
			t.Fatal(err)
		}
		if string(content) != msgs[i].raw {
			t.Errorf("file of message %d holds %q, want %q", i, content, msgs[i].raw)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(entries) != 0 {
		t.Errorf("tmp/ holds %d files after delivery", len(entries))
	}
}

// extension asks the server for an EHLO extension over a new connection.
func extension(t *testing.T, addr, name string) (bool, string) {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	return c.Extension(name)
}

func TestSinkModeStoresNoFiles(t *testing.T) {
	s := startServer(t, Options{})
	if err := send(t, s.SMTPAddr(), "a@example.com", []string{"b@example.com"}, rawMessage("sink@herald", "s", "body")); err != nil {
		t.Fatal(err)
	}
	msgs := s.Messages()
	if len(msgs) != 1 || msgs[0].Path != "" || msgs[0].MessageID != "sink@herald" {
		t.Errorf("Messages() = %+v, want one message without a path", msgs)
	}
	if s.Maildir() != "" {
		t.Errorf("Maildir() = %q in sink mode", s.Maildir())
	}
}

func TestMaxFilesBoundsTheMaildir(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, Options{Maildir: dir, MaxFiles: 2})
	for i := range 5 {
		id := fmt.Sprintf("m%d@herald", i)
		if err := send(t, s.SMTPAddr(), "a@example.com", []string{"b@example.com"}, rawMessage(id, "s", "body")); err != nil {
			t.Fatal(err)
		}
	}
	kept := 0
	for _, m := range s.Messages() {
		if m.Path != "" {
			kept++
		}
	}
	files, err := os.ReadDir(filepath.Join(dir, "new"))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().Messages; got != 5 || kept != 2 || len(files) != 2 {
		t.Errorf("5 messages with MaxFiles 2: %d counted, %d with a path, %d files; want 5, 2, 2", got, kept, len(files))
	}
}

func TestFaultInjection(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, Options{Maildir: dir})
	var calls []string
	var mu sync.Mutex
	s.SetFault(func(from string, to []string) *smtp.SMTPError {
		mu.Lock()
		calls = append(calls, from+" "+strings.Join(to, ","))
		mu.Unlock()
		if strings.HasPrefix(to[0], "fail") {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "try later"}
		}
		return nil
	})

	err := send(t, s.SMTPAddr(), "a@example.com", []string{"fail@example.com"}, rawMessage("f1@herald", "x", "y"))
	var smtpErr *smtp.SMTPError
	if !errors.As(err, &smtpErr) || smtpErr.Code != 451 || smtpErr.EnhancedCode != (smtp.EnhancedCode{4, 7, 1}) {
		t.Fatalf("send to a faulted recipient: %v, want SMTP error 451 4.7.1", err)
	}
	if err := send(t, s.SMTPAddr(), "a@example.com", []string{"ok@example.com"}, rawMessage("f2@herald", "x", "y")); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a@example.com fail@example.com", "a@example.com ok@example.com"}; !cmp.Equal(calls, want) {
		t.Errorf("fault hook saw %q, want %q", calls, want)
	}
	st := s.Stats()
	if st.Messages != 1 || st.Recipients != 1 || st.Rejected != 1 || st.DistinctMessageIDs != 1 {
		t.Errorf("Stats() = %+v, want one accepted and one rejected message", st)
	}
	if s.Has("f1@herald") || !s.Has("f2@herald") {
		t.Error("Has reports the refused message or misses the accepted one")
	}
	for sub, want := range map[string]int{"tmp": 0, "new": 1} {
		if entries, _ := os.ReadDir(filepath.Join(dir, sub)); len(entries) != want {
			t.Errorf("%s/ holds %d files, want %d", sub, len(entries), want)
		}
	}

	s.SetFault(nil)
	if err := send(t, s.SMTPAddr(), "a@example.com", []string{"fail@example.com"}, rawMessage("f3@herald", "x", "y")); err != nil {
		t.Fatalf("send after removing the fault: %v", err)
	}
}

func TestRejectsOversizedMessage(t *testing.T) {
	s := startServer(t, Options{Maildir: t.TempDir()})
	big := rawMessage("big@herald", "big", strings.Repeat(strings.Repeat("x", 998)+"\r\n", MaxMessageBytes/1000+10))
	err := send(t, s.SMTPAddr(), "a@example.com", []string{"b@example.com"}, big)
	var smtpErr *smtp.SMTPError
	if !errors.As(err, &smtpErr) || smtpErr.Code != 552 {
		t.Fatalf("send of %d bytes: %v, want SMTP error 552", len(big), err)
	}
	if st := s.Stats(); st.Messages != 0 {
		t.Errorf("oversized message counted: %+v", st)
	}
	if entries, _ := os.ReadDir(filepath.Join(s.Maildir(), "tmp")); len(entries) != 0 {
		t.Errorf("tmp/ holds %d files after a refused message", len(entries))
	}
}

func TestConcurrentSenders(t *testing.T) {
	s := startServer(t, Options{Maildir: t.TempDir()})
	const conns, perConn = 8, 40
	var wg sync.WaitGroup
	for c := range conns {
		wg.Go(func() {
			client, err := smtp.Dial(s.SMTPAddr())
			if err != nil {
				t.Error(err)
				return
			}
			defer client.Close()
			for i := range perConn {
				id := fmt.Sprintf("c%d-m%d@herald", c, i)
				to := []string{fmt.Sprintf("user%d@example.com", i%10)}
				if err := client.SendMail("a@example.com", to, strings.NewReader(rawMessage(id, "load", "hi"))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	want := Stats{Messages: conns * perConn, Recipients: conns * perConn, DistinctMessageIDs: conns * perConn, DistinctRecipients: 10, DuplicateRecipients: conns*perConn - 10}
	if diff := cmp.Diff(want, s.Stats()); diff != "" {
		t.Errorf("Stats() mismatch (-want +got):\n%s", diff)
	}
	if n := len(s.Messages()); n != conns*perConn {
		t.Errorf("Messages() has %d entries, want %d", n, conns*perConn)
	}
	entries, err := os.ReadDir(filepath.Join(s.Maildir(), "new"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != conns*perConn {
		t.Errorf("new/ holds %d files, want %d", len(entries), conns*perConn)
	}
}

func TestManyRecipients(t *testing.T) {
	s := startServer(t, Options{})
	to := make([]string, 500)
	for i := range to {
		to[i] = fmt.Sprintf("r%d@example.com", i)
	}
	if err := send(t, s.SMTPAddr(), "a@example.com", to, rawMessage("many@herald", "m", "b")); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Recipients != 500 || st.DistinctRecipients != 500 {
		t.Errorf("Stats() = %+v, want 500 distinct recipients", st)
	}
}

func TestCloseStopsListening(t *testing.T) {
	s, err := Start(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	idle, err := smtp.Dial(s.SMTPAddr()) // an open connection must not block Close
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if conn, err := net.DialTimeout("tcp", s.SMTPAddr(), time.Second); err == nil {
		conn.Close()
		t.Error("server still accepts connections after Close")
	}
}

func TestHTTPAPI(t *testing.T) {
	s := startServer(t, Options{})
	for i, to := range []string{"x@example.org", "y@example.org", "X@example.org"} {
		if err := send(t, s.SMTPAddr(), "a@example.com", []string{to}, rawMessage(fmt.Sprintf("m%d@herald", i), fmt.Sprint("subject ", i), "b")); err != nil {
			t.Fatal(err)
		}
	}
	api := httptest.NewServer(s.Handler())
	defer api.Close()

	var st Stats
	if code := call(t, api, http.MethodGet, "/api/stats", "", &st); code != http.StatusOK || st.Messages != 3 || st.DistinctRecipients != 3 {
		t.Errorf("GET /api/stats = %d %+v", code, st)
	}

	var list MessageList
	if code := call(t, api, http.MethodGet, "/api/messages?to=x@EXAMPLE.org&limit=1", "", &list); code != http.StatusOK {
		t.Fatalf("GET /api/messages status %d", code)
	}
	if list.Total != 2 || len(list.Messages) != 1 || list.Messages[0].MessageID != "m2@herald" {
		t.Errorf("GET /api/messages?to=x@EXAMPLE.org&limit=1 = %+v, want the newest of 2", list)
	}
	if code := call(t, api, http.MethodGet, "/api/messages", "", &list); code != http.StatusOK || len(list.Messages) != 3 || list.Messages[0].MessageID != "m0@herald" {
		t.Errorf("GET /api/messages = %d %+v, want all 3 oldest first", code, list)
	}

	var found LookupResponse
	code := call(t, api, http.MethodPost, "/api/lookup", `{"message_ids":["<m1@herald>","nope@herald","m0@herald","m1@herald"]}`, &found)
	if code != http.StatusOK || !cmp.Equal(found.Found, []string{"<m1@herald>", "m0@herald"}) {
		t.Errorf("POST /api/lookup = %d %+v", code, found)
	}
	for _, body := range []string{`{"message_ids":[]}`, `{"message_ids":null}`, `{}`} {
		found = LookupResponse{}
		if code := call(t, api, http.MethodPost, "/api/lookup", body, &found); code != http.StatusOK || found.Found == nil || len(found.Found) != 0 {
			t.Errorf("POST /api/lookup %s = %d %+v, want an empty list", body, code, found)
		}
	}

	tooMany, _ := json.Marshal(LookupRequest{MessageIDs: make([]string, MaxLookupIDs+1)})
	tooBig := `{"message_ids":["` + strings.Repeat("x", MaxLookupBytes) + `"]}`
	for _, tc := range []struct{ method, path, body string }{
		{http.MethodPost, "/api/lookup", `{"message_ids":`},
		{http.MethodPost, "/api/lookup", `{"ids":["a"]}`},
		{http.MethodPost, "/api/lookup", ``},
		{http.MethodPost, "/api/lookup", `[]`},
		{http.MethodPost, "/api/lookup", `{"message_ids":"a"}`},
		{http.MethodPost, "/api/lookup", `{"message_ids":["a"]} {}`},
		{http.MethodPost, "/api/lookup", string(tooMany)},
		{http.MethodPost, "/api/lookup", tooBig},
		{http.MethodGet, "/api/messages?limit=abc", ""},
		{http.MethodGet, "/api/messages?limit=0", ""},
		{http.MethodGet, fmt.Sprintf("/api/messages?limit=%d", MaxListLimit+1), ""},
	} {
		var e apiError
		code := call(t, api, tc.method, tc.path, tc.body, &e)
		if code != http.StatusBadRequest || e.Error.Message == "" {
			t.Errorf("%s %s %.40q = %d %+v, want 400 with a message", tc.method, tc.path, tc.body, code, e)
		}
	}

	var e apiError
	if code := call(t, api, http.MethodGet, "/api/lookup", "", &e); code != http.StatusMethodNotAllowed || e.Error.Message == "" {
		t.Errorf("GET /api/lookup = %d %+v, want 405 with a message", code, e)
	}
	if code := call(t, api, http.MethodGet, "/api/nothing", "", &e); code != http.StatusNotFound || e.Error.Message == "" {
		t.Errorf("GET /api/nothing = %d %+v, want 404 with a message", code, e)
	}
}

// call sends a request to the API and decodes the JSON response into out.
func call(t *testing.T, api *httptest.Server, method, path, body string, out any) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, api.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := api.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(out); err != nil {
		t.Errorf("%s %s: decode %q: %v", method, path, raw, err)
	}
	return resp.StatusCode
}

func TestDecodeSubject(t *testing.T) {
	for raw, want := range map[string]string{
		"plain":                                  "plain",
		"=?ISO-8859-1?Q?caf=E9?= au lait":        "café au lait",
		"=?UTF-8?Q?a?= =?UTF-8?Q?b?=":            "ab",
		"=?KOI8-R?B?8NLJ18XU?=":                  "=?KOI8-R?B?8NLJ18XU?=", // unknown charset: kept raw
		"=?UTF-8?B?not base64!?= still readable": "=?UTF-8?B?not base64!?= still readable",
	} {
		if got := decodeSubject(raw); got != want {
			t.Errorf("decodeSubject(%q) = %q, want %q", raw, got, want)
		}
	}
}

// TestMemoryPerMessage checks that the metadata kept per message stays
// small enough for a million-message run: a realistic Message-ID and
// subject, one recipient out of ten thousand, sink mode.
func TestMemoryPerMessage(t *testing.T) {
	const n = 200_000
	s := startServer(t, Options{})
	rcpts := make([]string, 10_000)
	for i := range rcpts {
		rcpts[i] = fmt.Sprintf("user%d@example.com", i)
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	for i := range n {
		// Fresh strings, as the SMTP session would produce them.
		s.record(record{
			id:       fmt.Sprintf("%08x-%04x@herald.example", i, i%65536),
			from:     strings.Clone("noreply@herald.example"),
			to:       []string{strings.Clone(rcpts[i%len(rcpts)])},
			subject:  fmt.Sprintf("Your order %d has shipped", i),
			received: int64(i),
			size:     1024,
		})
	}
	perMessage := float64(heap()-before) / n
	t.Logf("%.0f bytes of heap per message", perMessage)
	if perMessage > 400 {
		t.Errorf("%.0f bytes of heap per message, want at most 400", perMessage)
	}
	if st := s.Stats(); st.Messages != n || st.DistinctRecipients != int64(len(rcpts)) {
		t.Errorf("Stats() = %+v", st)
	}
}

// TestChunkCutShortIsRefused sends one message as a whole BDAT chunk and
// one whose chunk the connection's end cuts short: the first is kept, the
// second is not, though go-smtp hands it over as if complete.
func TestChunkCutShortIsRefused(t *testing.T) {
	s := startServer(t, Options{})
	bdat := func(id string, cut int) {
		t.Helper()
		nc, err := net.DialTimeout("tcp", s.SMTPAddr(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		msg := rawMessage(id, "chunk", "body")
		fmt.Fprintf(nc, "EHLO client.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nBDAT %d LAST\r\n%s", len(msg), msg[:len(msg)-cut])
		if cut == 0 {
			fmt.Fprintf(nc, "QUIT\r\n")
		} else {
			_ = nc.(*net.TCPConn).CloseWrite()
		}
		// Read the replies until the server closes the connection.
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(nc); err != nil {
			t.Fatal(err)
		}
	}
	bdat("whole", 0)
	bdat("cut", 10)
	if !s.Has("whole") {
		t.Error("the whole chunk was not kept")
	}
	if s.Has("cut") {
		t.Error("the chunk cut short by the connection's end was kept")
	}
}
