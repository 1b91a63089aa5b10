package email

import (
	"crypto/sha256"
	"encoding/hex"
	"mime"
	"net/mail"
	"strings"
	"time"
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
	// providers' feedback loops.
	FeedbackID string
	HTML       []byte
	Text       []byte
}

// MessageID derives the Message-ID of the ledger key (tenant, job, channel,
// customer): the same delivery always carries the same id, which is how a
// send with an unknown outcome is reconciled with the provider.
func MessageID(tenant, job, channel, customer, domain string) string {
	h := sha256.New()
	for _, s := range []string{tenant, job, channel, customer} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16]) + "@" + domain
}

// AppendMIME appends m as an RFC 5322 message with a multipart/alternative
// body (text, then HTML, both quoted-printable) to dst and returns the
// extended slice. The boundary is derived from the Message-ID, so the same
// input gives the same bytes.
func AppendMIME(dst []byte, m *Message) []byte {
	boundary := "herald-" + strings.SplitN(m.MessageID, "@", 2)[0]
	header := func(k, v string) {
		dst = append(dst, k...)
		dst = append(dst, ": "...)
		dst = append(dst, v...)
		dst = append(dst, "\r\n"...)
	}
	header("From", m.From)
	header("To", m.To.String())
	header("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
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
	return 1024 + len(m.UnsubscribeURL) + len(m.Subject)*3 + (len(m.HTML)+len(m.Text))*11/10
}
