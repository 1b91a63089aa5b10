package email

import (
	"crypto/sha256"
	"encoding/hex"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"
)

// Message is what goes into one recipient's email.
type Message struct {
	From           string // RFC 5322 From value
	To             mail.Address
	Subject        string
	MessageID      string // without angle brackets
	Date           time.Time
	UnsubscribeURL string
	// FeedbackID groups complaints by tenant and campaign for mailbox
	// providers' feedback loops (see FeedbackID).
	FeedbackID string
	HTML       []byte
	Text       []byte
}

// FeedbackID is the Feedback-ID of a campaign's messages for a tenant:
// campaign:tenant:herald, as Gmail's feedback loop reads it
// (identifiers:SenderId). Each field is made of letters, digits, '.', '_'
// and '-' only, so neither 8-bit bytes nor a ':' in a campaign's name can
// corrupt the header or shift its fields.
func FeedbackID(campaign, tenant string) string {
	return feedbackField(campaign) + ":" + feedbackField(tenant) + ":herald"
}

// feedbackField is s if it is 1 to 64 safe characters; otherwise its first
// safe characters, the others turned to '-', and 8 hex digits of its hash,
// so that fields stay readable and campaigns that differ only in what was
// replaced stay apart.
func feedbackField(s string) string {
	safe := func(c byte) bool {
		return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
	}
	ok := len(s) > 0 && len(s) <= 64
	for i := 0; i < len(s) && ok; i++ {
		ok = safe(s[i])
	}
	if ok {
		return s
	}
	b := make([]byte, 0, 64)
	for i := 0; i < len(s) && len(b) < 40; i++ {
		switch {
		case safe(s[i]):
			b = append(b, s[i])
		case len(b) > 0 && b[len(b)-1] != '-':
			b = append(b, '-')
		}
	}
	if len(b) > 0 && b[len(b)-1] != '-' {
		b = append(b, '-')
	}
	sum := sha256.Sum256([]byte(s))
	return string(hex.AppendEncode(b, sum[:4]))
}

// AppendMIME appends m as an RFC 5322 message with a multipart/alternative
// body (text, then HTML, both quoted-printable) to dst and returns the
// extended slice. The boundary is derived from the Message-ID, so the same
// input gives the same bytes.
func AppendMIME(dst []byte, m *Message) []byte {
	boundary := "herald-" + strings.SplitN(m.MessageID, "@", 2)[0]
	header := func(k, v string) { dst = appendHeader(dst, k, v) }
	header("From", m.From)
	header("To", m.To.String())
	dst = appendSubject(dst, m.Subject)
	header("Date", m.Date.UTC().Format(time.RFC1123Z))
	header("Message-ID", "<"+m.MessageID+">")
	header("MIME-Version", "1.0")
	if m.UnsubscribeURL != "" {
		// RFC 8058: the POST form lets mailbox providers unsubscribe in one
		// click without fetching the page.
		header("List-Unsubscribe", "<"+m.UnsubscribeURL+">")
		header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
	}
	if m.FeedbackID != "" {
		header("Feedback-ID", m.FeedbackID)
	}
	if len(m.Text) == 0 {
		header("Content-Type", "text/html; charset=utf-8")
		header("Content-Transfer-Encoding", "quoted-printable")
		dst = append(dst, "\r\n"...)
		return appendQP(dst, m.HTML)
	}
	header("Content-Type", `multipart/alternative; boundary="`+boundary+`"`)
	dst = append(dst, "\r\n"...)
	part := func(contentType string, body []byte) {
		dst = append(dst, "--"...)
		dst = append(dst, boundary...)
		dst = append(dst, "\r\n"...)
		header("Content-Type", contentType)
		header("Content-Transfer-Encoding", "quoted-printable")
		dst = append(dst, "\r\n"...)
		dst = appendQP(dst, body)
		dst = append(dst, "\r\n"...)
	}
	part("text/plain; charset=utf-8", m.Text)
	part("text/html; charset=utf-8", m.HTML)
	dst = append(dst, "--"...)
	dst = append(dst, boundary...)
	return append(dst, "--\r\n"...)
}

// Size estimates the length of m's MIME form, to allocate it once.
func Size(m *Message) int {
	return 1024 + len(m.UnsubscribeURL) + len(m.Subject)*4 + (len(m.HTML)+len(m.Text))*11/10
}

// Header lines are folded (RFC 5322 §2.2.3) to at most maxLine bytes where
// the value allows, and a subject always can be: RFC 5322 caps a line at
// 998 bytes and asks for 78, RFC 2047 caps an encoded word at 75 and a
// line with encoded words at 76.
const (
	maxLine        = 78
	maxEncodedLine = 76
	maxEncodedWord = 75
)

// appendHeader appends the header field name: value, folded before single
// spaces (a space between two other characters) so that its lines are at
// most maxLine bytes where its words allow. Folding only there keeps the
// value as it was for readers that take all the white space around a fold
// for one space (net/textproto does).
func appendHeader(dst []byte, name, value string) []byte {
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	col := len(name) + 2
	if col+len(value) <= maxLine {
		return append(append(dst, value...), "\r\n"...)
	}
	for start := 0; start < len(value); {
		end := nextFold(value, start+1)
		if start > 0 && col+end-start > maxLine {
			dst = append(dst, "\r\n"...)
			col = 0
		}
		dst = append(dst, value[start:end]...)
		col += end - start
		start = end
	}
	return append(dst, "\r\n"...)
}

// nextFold is the first place at or after i where value can be folded, or
// len(value).
func nextFold(value string, i int) int {
	for ; i < len(value)-1; i++ {
		if value[i] == ' ' && value[i-1] != ' ' && value[i+1] != ' ' {
			return i
		}
	}
	return len(value)
}

// appendSubject appends the Subject field. A subject of printable ASCII
// whose words fit on folded lines goes as it is; any other is encoded as
// RFC 2047 Q-encoded words, which can be folded between any two
// characters.
func appendSubject(dst []byte, subject string) []byte {
	const name = "Subject"
	if plainFits(name, subject) {
		return appendHeader(dst, name, subject)
	}
	const open, closing = "=?utf-8?q?", "?="
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	room := maxEncodedLine - len(name) - 2 // for the first word
	word := append(make([]byte, 0, maxEncodedWord), open...)
	var q [12]byte
	for i := 0; i < len(subject); {
		// A word holds whole characters (RFC 2047 §5).
		_, size := utf8.DecodeRuneInString(subject[i:])
		enc := appendQ(q[:0], subject[i:i+size])
		if len(word) > len(open) && len(word)+len(enc)+len(closing) > min(room, maxEncodedWord) {
			dst = append(append(dst, word...), closing...)
			dst = append(dst, "\r\n "...)
			room = maxEncodedLine - 1
			word = append(word[:0], open...)
		}
		word = append(word, enc...)
		i += size
	}
	dst = append(append(dst, word...), closing...)
	return append(dst, "\r\n"...)
}

// plainFits reports whether value can go unencoded in field name: all
// printable ASCII, nothing a reader would take for an encoded word, and
// words that fit on folded lines.
func plainFits(name, value string) bool {
	if strings.Contains(value, "=?") {
		return false
	}
	for i := 0; i < len(value); i++ {
		if value[i] < ' ' || value[i] > '~' {
			return false
		}
	}
	col := len(name) + 2
	for start := 0; start < len(value); {
		end := nextFold(value, start+1)
		if col+end-start > maxLine {
			return false
		}
		col, start = 0, end
	}
	return true
}

// appendQ appends s in RFC 2047 Q encoding, as in an unstructured field:
// printable ASCII but =, ? and _ as itself, space as _, the rest as =XX.
func appendQ(dst []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b == ' ':
			dst = append(dst, '_')
		case b > ' ' && b <= '~' && b != '=' && b != '?' && b != '_':
			dst = append(dst, b)
		default:
			dst = append(dst, '=', hex[b>>4], hex[b&15])
		}
	}
	return dst
}
