package email

import (
	"bytes"
	"mime"
	"net/mail"
	"regexp"
	"strings"
	"testing"
	"time"
)

var encodedWord = regexp.MustCompile(`=\?[^?\s]+\?[qQbB]\?[^?\s]*\?=`)

// headerLines returns the lines of msg's header section.
func headerLines(msg []byte) []string {
	head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	return strings.Split(string(head), "\r\n")
}

func TestHeadersAreFolded(t *testing.T) {
	// Subjects come single-lined, without surrounding space
	// (emailtemplate.OneLine).
	long := "Black Friday starts now, and these picks were chosen for you from the things you looked at"
	for len(long) < 1227 {
		long += " " + long
	}
	long = strings.TrimSpace(long[:1227])
	tests := []struct {
		name    string
		subject string
		plain   bool // no encoded words needed
	}{
		{"short", "Your Black Friday picks", true},
		{"short, not ASCII", "Zoë, your Black Friday picks ★", false},
		{"long, in words", long, true},
		{"long, not ASCII", strings.TrimSpace(strings.Repeat("Zoë, les soldes d'été ★ commencent ", 40)), false},
		{"one long word", strings.Repeat("x", 1200), false},
		{"long words that fit a line", strings.TrimSpace(strings.Repeat("supercalifragilisticexpialidocious-and-then-some-more-letters ", 20)), true},
		{"words too long for a line", strings.TrimSpace(strings.Repeat("supercalifragilisticexpialidocious-and-then-some-more-letters-past-a-line ", 20)), false},
		{"runs of spaces", strings.Repeat("a  b   c ", 100) + "d", true},
		{"looks encoded", "=?utf-8?q?not_encoded?= but written so", false},
		{"not UTF-8", "caf\xe9 " + strings.Repeat("au lait ", 20), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &Message{From: "Shop <news@shop.example>", To: mail.Address{Name: "Ann", Address: "ann@example.com"},
				Subject: tc.subject, MessageID: "0123@shop.example", Date: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC),
				Text: []byte("hi"), HTML: []byte("<p>hi</p>")}
			raw := AppendMIME(nil, m)
			for _, l := range headerLines(raw) {
				if len(l) > 78 {
					t.Errorf("a header line of %d bytes: %q", len(l), l)
				}
				ws := encodedWord.FindAllString(l, -1)
				if len(ws) > 0 && len(l) > 76 {
					t.Errorf("a line with encoded words of %d bytes: %q", len(l), l)
				}
				for _, w := range ws {
					if len(w) > 75 {
						t.Errorf("an encoded word of %d bytes: %q", len(w), w)
					}
				}
			}
			msg, err := mail.ReadMessage(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			h := msg.Header.Get("Subject")
			if got, err := new(mime.WordDecoder).DecodeHeader(h); err != nil || got != strings.ToValidUTF8(tc.subject, "\ufffd") && got != tc.subject {
				t.Errorf("subject decodes to %q (%v), want %q", got, err, tc.subject)
			}
			if plain := !encodedWord.MatchString(h); plain != tc.plain {
				t.Errorf("plain %v, want %v: %q", plain, tc.plain, h)
			}
		})
	}
}

func TestFeedbackID(t *testing.T) {
	tests := []struct {
		campaign, tenant string
		want             string // "" to check the form only
	}{
		{"cmp_2026_bf_0042", "acme", "cmp_2026_bf_0042:acme:herald"},
		{"job1", "tenant1", "job1:tenant1:herald"},
		{"black-friday.2026", "acme.eu", "black-friday.2026:acme.eu:herald"},
		{"bf:2026", "acme", ""},
		{"bf 2026", "acme", ""},
		{"Été ★ 2026", "acme", ""},
		{"\xff\xfe", "acme", ""},
		{strings.Repeat("c", 100), "acme", ""},
		{"", "acme", ""},
	}
	field := regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	seen := map[string]string{}
	for _, tc := range tests {
		got := FeedbackID(tc.campaign, tc.tenant)
		if tc.want != "" && got != tc.want {
			t.Errorf("FeedbackID(%q, %q) = %q, want %q", tc.campaign, tc.tenant, got, tc.want)
		}
		fields := strings.Split(got, ":")
		if len(fields) != 3 || fields[2] != "herald" {
			t.Errorf("FeedbackID(%q, %q) = %q: not campaign:tenant:herald", tc.campaign, tc.tenant, got)
		}
		for _, f := range fields {
			if !field.MatchString(f) {
				t.Errorf("FeedbackID(%q, %q) = %q: field %q is not 1-64 of A-Za-z0-9._-", tc.campaign, tc.tenant, got, f)
			}
		}
		if other, dup := seen[got]; dup {
			t.Errorf("campaigns %q and %q share the Feedback-ID %q", other, tc.campaign, got)
		}
		seen[got] = tc.campaign
	}
	// Campaigns that differ only in what had to be replaced stay apart.
	if a, b := FeedbackID("bf:2026", "acme"), FeedbackID("bf-2026", "acme"); a == b {
		t.Errorf("bf:2026 and bf-2026 share %q", a)
	}
}
