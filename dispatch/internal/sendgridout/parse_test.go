package sendgridout_test

import (
	"net/mail"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"herald/dispatch/internal/sendgridout"
)

// rendered is a message as render builds it (email.AppendMIME): an
// encoded subject, a folded Content-Type, quoted-printable text and HTML.
func rendered(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/rendered.eml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseRenderedMessage(t *testing.T) {
	got, err := sendgridout.Parse(rendered(t))
	if err != nil {
		t.Fatal(err)
	}
	want := sendgridout.Parts{
		From:    mail.Address{Name: "Shop – Black Friday", Address: "news@shop.example"},
		Subject: "Zoë, your Black Friday picks ★",
		Text:    "Hi Zoë,\r\n\r\nour picks for you: a very long line of text that goes past seventy-six characters so that quoted-printable has to break it with soft line breaks = and an equals sign.\r\n",
		HTML:    `<p>Hi Zoë,</p><p>Our picks: <a href="https://shop.example/p/1?a=1&amp;b=2">Lamp</a> — 19,99&nbsp;€</p>`,
		Headers: map[string]string{
			"List-Unsubscribe":      "<https://shop.example/u/eyJ0IjoiYWNtZSIsImMiOiJhbm4iLCJqIjoiMGI3YzZkMmUtOWYzYS00YzFiLThlNWQtMmE2ZjdiOGM5ZDBlIn0.c2lnbmF0dXJl>",
			"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
			"Feedback-ID":           "black-friday:acme.eu:herald",
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parts (-want +got):\n%s", diff)
	}
}

func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

func TestParseOtherShapes(t *testing.T) {
	tests := []struct {
		name string
		msg  string
		want sendgridout.Parts
	}{
		{"html only, base64, with Reply-To", `From: news@shop.example
Reply-To: Help <help@shop.example>
Subject: plain subject
Content-Type: text/html; charset=UTF-8
Content-Transfer-Encoding: base64

PHA+aMOpbGxvPC9wPg==
`, sendgridout.Parts{From: mail.Address{Address: "news@shop.example"}, ReplyTo: &mail.Address{Name: "Help", Address: "help@shop.example"},
			Subject: "plain subject", HTML: "<p>héllo</p>"}},
		{"alternative inside mixed, attachment skipped", `From: news@shop.example
Subject: s
Content-Type: multipart/mixed; boundary=outer

--outer
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain

text body
--inner
Content-Type: text/html

<b>html body</b>
--inner--
--outer
Content-Type: application/pdf
Content-Transfer-Encoding: base64

JVBERi0=
--outer--
`, sendgridout.Parts{From: mail.Address{Address: "news@shop.example"}, Subject: "s", Text: "text body", HTML: "<b>html body</b>"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := sendgridout.Parse(crlf(tt.msg))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	tests := map[string]string{
		"no header":        "just text",
		"no From":          "Subject: s\n\nbody\n",
		"two From":         "From: a@shop.example, b@shop.example\nSubject: s\n\nbody\n",
		"latin-1 body":     "From: a@shop.example\nSubject: s\nContent-Type: text/plain; charset=iso-8859-1\n\nbody\n",
		"bad utf-8":        "From: a@shop.example\nSubject: s\nContent-Type: text/plain; charset=utf-8\n\nb\xffody\n",
		"no body":          "From: a@shop.example\nSubject: s\nContent-Type: image/png\n\nPNG\n",
		"unknown encoding": "From: a@shop.example\nSubject: s\nContent-Type: text/plain\nContent-Transfer-Encoding: x-uuencode\n\nbody\n",
	}
	for name, msg := range tests {
		if p, err := sendgridout.Parse(crlf(msg)); err == nil {
			t.Errorf("%s: parsed as %+v", name, p)
		}
	}
}
