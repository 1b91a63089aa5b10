package email

import (
	"bytes"
	"math/rand/v2"
	"mime/quotedprintable"
	"strings"
	"testing"
)

func stdQP(body []byte) []byte {
	var buf bytes.Buffer
	w := quotedprintable.NewWriter(&buf)
	_, _ = w.Write(body)
	_ = w.Close()
	return buf.Bytes()
}

func TestAppendQPMatchesStandardWriter(t *testing.T) {
	cases := []string{
		"", " ", "\t", "=", "a\r\nb", "a\rb", "a\nb", "a \r\nb", "a\t\n", "\r\n\r\n", "\r\r\n\n",
		strings.Repeat("x", 75), strings.Repeat("x", 76), strings.Repeat("x", 77), strings.Repeat("x", 200),
		strings.Repeat("x", 74) + "é", strings.Repeat("x", 73) + "==", strings.Repeat("x", 75) + " ",
		strings.Repeat("x", 74) + " \n", "\r=\n", "héllo wörld ★ 日本",
		"<td class=\"card\">\n  <a href=\"https://x.example/p?utm=a&amp;b=c\">Shop now &rarr;</a>\n</td>\n",
	}
	r := rand.New(rand.NewPCG(7, 9))
	alphabet := []byte("ab =\t\r\n\xc3\xa9<>&\"'~!")
	for range 5000 {
		b := make([]byte, r.IntN(300))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		cases = append(cases, string(b))
	}
	for _, c := range cases {
		if got, want := appendQP(nil, []byte(c)), stdQP([]byte(c)); !bytes.Equal(got, want) {
			t.Fatalf("appendQP(%q) =\n%q\nwant\n%q", c, got, want)
		}
	}
}

func FuzzAppendQP(f *testing.F) {
	f.Add([]byte("hello = world \r\n\t"))
	f.Add([]byte(strings.Repeat("a", 80) + "\xff"))
	f.Fuzz(func(t *testing.T, body []byte) {
		if got, want := appendQP([]byte("prefix"), body), append([]byte("prefix"), stdQP(body)...); !bytes.Equal(got, want) {
			t.Fatalf("appendQP(%q) =\n%q\nwant\n%q", body, got, want)
		}
	})
}
