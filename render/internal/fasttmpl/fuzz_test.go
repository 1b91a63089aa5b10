package fasttmpl

import (
	"bytes"
	"errors"
	"html/template"
	"math"
	"strings"
	"testing"

	"herald/shared/emailtemplate"
)

// fuzzData is the data FuzzRender renders: its strings, numbers and
// booleans come from the fuzzer.
func fuzzData(s, s2, u string, n int, fl float64, b bool) *emailtemplate.Data {
	email := ""
	if b {
		email = "e@example.com"
	}
	return &emailtemplate.Data{
		Subject: s, Preheader: s2,
		Customer: emailtemplate.Customer{ID: u, FirstName: s, LastName: s2, Email: email},
		Brand:    emailtemplate.Brand{Name: s2, URL: u},
		Job:      emailtemplate.Job{Year: n},
		Items: []emailtemplate.Item{
			{Title: s, Rating: fl, RowStart: b},
			{Title: s2, Rating: fl, URL: u},
			{Title: "stop", RowStart: !b},
			{Title: u},
		},
	}
}

// Building blocks for fuzzed templates. Markup pieces move the HTML parser
// between contexts (text, attributes, URLs, CSS, JS, comments, RCDATA);
// actions cover field access, builtins and pipelines.
var (
	fuzzMarkup = []string{
		"<p>", "</p>", "text & more ", `<a href="`, `<a href='`, "<a href=", `">`, "'>", ">", `<img src="`,
		`" alt="`, `<div title=`, " ", `<div class="c" title="`, `"`, "'", "<style>", "</style>", "p { color: ",
		"; } ", `<p style="color: `, `<p style="background: url(`, ")", `url("`, `<script>`, "</script>",
		"var x = ", ";", " + ", `"`, "/", "/re/", "`", "${", "}", "<!--", "-->", "<textarea>", "</textarea>",
		"<title>", "</title>", "?q=", "&amp;", "#", "=", ` onclick="f(`, ` onmouseover='g(`, ", ",
		`<img srcset="`, " 2x", "mailto:", "javascript:", "https://h.example/", "<b>", "</b>", "\n", "<br/>",
		`<a href="/x?a=1&b=`, `<meta http-equiv="refresh" content="0; url=`, "<svg><a xlink:href=\"",
		`<input value=`, " data-x=", "<!-- c -->", "<i>", "</i>", "{", "(", "]", "'", "\\",
	}
	fuzzActions = []string{
		"{{.Customer.FirstName}}", "{{$.Customer.LastName}}", "{{$.Brand.URL}}", "{{$.Job.Year}}", "{{.Subject}}",
		"{{$.Preheader}}", "{{$.Customer}}", "{{$.Items}}", "{{.Customer.ID}}", "{{$.Customer.Email}}",
		"{{(index $.Items 0).Title}}", "{{(index $.Items 1).Rating}}", "{{(index $.Items 2).RowStart}}",
		"{{html $.Customer.FirstName}}", "{{$.Customer.FirstName | html}}", "{{urlquery $.Customer.FirstName $.Customer.LastName}}",
		"{{$.Brand.URL | urlquery}}", "{{js $.Customer.FirstName}}", `{{printf "%q" $.Customer.FirstName}}`,
		`{{printf "%s-%d" $.Customer.LastName $.Job.Year}}`, `{{printf "%.1f" (index $.Items 1).Rating}}`,
		"{{print $.Customer.FirstName $.Job.Year}}", "{{len $.Customer.FirstName}}", "{{index $.Items 0}}",
		"{{slice $.Customer.FirstName 0 1}}", "{{not $.Customer.Email}}", "{{and $.Customer.FirstName $.Customer.LastName}}",
		"{{or $.Customer.FirstName $.Customer.LastName}}", `{{eq $.Customer.FirstName "x"}}`, "{{lt $.Job.Year 3}}",
		"{{$.Customer.FirstName | len}}", "{{$}}", "{{.}}", "{{/* comment */}}", "{{- $.Customer.FirstName -}}",
		`{{template "sub" $.Customer.FirstName}}`, `{{template "sub" .}}`, "{{with $v := $.Customer.LastName}}{{$v}}{{end}}",
		"{{range $k, $v := $.Items}}{{$k}}={{$v.Title}}{{end}}", "{{.Title}}", "{{.Rating}}", "{{.RowStart}}",
		`{{$.Customer.FirstName | printf "%s|%v" $.Customer.LastName}}`, "{{urlquery $.Customer.FirstName}}",
		"{{$.Job.Year}}{{(index $.Items 1).Rating}}", "{{$.Items | len}}",
		`{{if (index $.Items 2).RowStart}}{{$.Customer.FirstName}}{{else}}{{$.Customer.LastName}}{{end}}`,
	}
	// fuzzUnits are self-contained markup fragments with action slots (%s):
	// each leaves the HTML parser in the text context, so generated
	// templates escape cleanly while visiting every context.
	fuzzUnits = []string{
		"<p>%s</p>", `<a href="%s">x</a>`, `<a href='/p/%s?q=%s&amp;r=1#%s'>x</a>`, "<a href=%s>x</a>",
		`<img src="%s" alt="%s">`, "<div title=%s>d</div>", `<div class="a %s">d</div>`,
		"<style>p { color: %s; } q { background: url('%s') } r::after { content: \"%s\" }</style>",
		`<p style="color: %s; background: url(%s)">x</p>`, "<script>var x = %s;</script>",
		`<script>var s = "%s", t = '%s';</script>`, "<script>var r = /%s/;</script>",
		"<script>var t = `a%s`;</script>", `<button onclick="f(%s, '%s')">b</button>`,
		`<img srcset="%s 1x, %s 2x">`, "<!-- %s -->", "<textarea>%s</textarea>", "<title>%s</title>",
		`<a href="mailto:%s">m</a>`, `<a href="javascript:%s">j</a>`, `<meta http-equiv="refresh" content="0; url=%s">`,
		`<input %s="v">`, `<p %s>x</p>`, `<a href="%s%s">c</a>`, `<script type="application/ld+json">{"a": %s}</script>`,
		`<svg><a xlink:href="%s">s</a></svg>`, `<iframe srcdoc="%s"></iframe>`, `<object data="%s"></object>`,
	}
	fuzzConds = []string{"$.Customer.Email", "$.Customer.FirstName", "$.Job.Year", "$.Items", "(index $.Items 2).RowStart",
		`eq $.Customer.FirstName "a"`, "and $.Customer.FirstName $.Customer.Email", "not $.Customer.LastName", "$.Customer", "."}
)

// fuzzGen turns fuzzer bytes into a syntactically valid template.
type fuzzGen struct {
	in    []byte
	pos   int
	depth int
	sb    strings.Builder
}

func (g *fuzzGen) next() int {
	if g.pos >= len(g.in) {
		return 0
	}
	c := g.in[g.pos]
	g.pos++
	return int(c)
}

func (g *fuzzGen) list() {
	for items := 0; items < 24 && g.pos < len(g.in); items++ {
		c := g.next()
		switch {
		case c < 60:
			g.unit(fuzzUnits[c%len(fuzzUnits)])
		case c < 110:
			g.sb.WriteString(fuzzMarkup[c%len(fuzzMarkup)])
		case c < 200:
			g.sb.WriteString(fuzzActions[c%len(fuzzActions)])
		case c < 245 && g.depth < 3:
			g.block(c)
		default:
			return
		}
	}
}

// unit writes a markup unit, filling each slot with an action.
func (g *fuzzGen) unit(u string) {
	parts := strings.Split(u, "%s")
	for i, p := range parts {
		if i > 0 {
			g.sb.WriteString(fuzzActions[g.next()%len(fuzzActions)])
		}
		g.sb.WriteString(p)
	}
}

func (g *fuzzGen) block(c int) {
	g.depth++
	defer func() { g.depth-- }()
	cond := fuzzConds[g.next()%len(fuzzConds)]
	switch c % 5 {
	case 0, 1:
		g.sb.WriteString("{{if " + cond + "}}")
	case 2:
		g.sb.WriteString("{{with " + cond + "}}")
	case 3:
		g.sb.WriteString("{{range $i, $x := $.Items}}{{$i}}")
	default:
		g.sb.WriteString(`{{range $.Items}}{{if eq .Title "stop"}}{{break}}{{end}}`)
	}
	g.list()
	if g.next()%2 == 0 {
		g.sb.WriteString("{{else}}")
		g.list()
	}
	g.sb.WriteString("{{end}}")
}

func genFuzzTemplate(b []byte) string {
	g := &fuzzGen{in: b}
	g.list()
	g.sb.WriteString(`{{define "sub"}}<em title="{{.}}">{{.}}</em>{{end}}`)
	return g.sb.String()
}

func FuzzRender(f *testing.F) {
	seeds := []struct {
		s, t, u string
		n       int
		fl      float64
		b       bool
		tmpl    []byte
	}{
		{"plain", "x", "https://example.com/?a=b&c=d", 1, 1.5, true, []byte{0, 110, 1, 120, 3, 130, 6}},
		{`<script>alert("x")</script>`, "'\"&<>", "javascript:alert(1)", -1, 0, false, []byte{16, 18, 130, 19, 24, 26, 140, 27, 25}},
		{"\x00\u2028\u2029", "é★日本", "%zz%41", 0, math.Copysign(0, -1), true, []byte{3, 115, 6, 9, 116, 6, 20, 119, 21}},
		{"expression(x)", "a,b 1x", "//evil", 42, 1e21, false, []byte{49, 121, 50, 38, 122, 39, 41, 123, 42}},
		{"", "", "", 0, 0, false, []byte{200, 5, 112, 1, 113, 255, 0, 114}},
		{"stop", "a\\b`c${d}", "mailto:x@y", 7, 3.25, true, []byte{203, 1, 112, 24, 28, 132, 25, 1, 144}},
		{"\xff\xfe", "\ufdd0", "data:x", 255, 0.1, true, []byte{11, 113, 14, 47, 150, 48, 56, 160}},
		{"a b", "<i>x</i>", "https://h.example/p?q=1", 3, 2.5, true, []byte{0, 0, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
		{"O'Neil & co", "x\u2028y", "/rel/a b", -5, -1.25, false, []byte{17, 20, 18, 21, 19, 22, 20, 23, 21, 24, 22, 25, 23, 26, 24, 27, 25, 28, 26, 29, 27, 30}},
		{"</script><b>", "}{", "JAVASCRIPT:x", 9, 1e-9, true, []byte{28, 31, 29, 32, 30, 33, 31, 34, 32, 35, 33, 36, 34, 37, 35, 38, 36, 39, 37, 40, 38, 41, 39, 42}},
		{"q", "r", "s", 1, 1, true, []byte{201, 4, 9, 3, 210, 2, 13, 6, 1, 40, 2, 0, 1}},
	}
	for _, sd := range seeds {
		f.Add(sd.s, sd.t, sd.u, sd.n, sd.fl, sd.b, sd.tmpl)
	}
	f.Fuzz(func(t *testing.T, s, s2, u string, n int, fl float64, b bool, tmpl []byte) {
		src := genFuzzTemplate(tmpl)
		ft, ferr := Compile("fuzz", src)
		if len(emailtemplate.Check("fuzz", src)) > 0 {
			// Loops nested too deep: refused, as at upload.
			if !errors.Is(ferr, ErrNotAllowed) {
				t.Fatalf("template %q: Check refuses it, Compile: %v", src, ferr)
			}
			return
		}
		ht, herr := template.New("fuzz").Parse(src)
		d := fuzzData(s, s2, u, n, fl, b)
		if herr != nil {
			if ferr == nil {
				t.Fatalf("template %q: html/template rejects it (%v) but Compile accepts it", src, herr)
			}
			return
		}
		if ferr != nil {
			var out bytes.Buffer
			if err := ht.Execute(&out, d); err == nil {
				t.Fatalf("template %q: Compile failed (%v) but html/template renders it", src, ferr)
			}
			return
		}
		if !ft.Fast() && !strings.Contains(ft.FallbackReason(), "derived") {
			t.Fatalf("template %q fell back: %s", src, ft.FallbackReason())
		}
		if diff := renderBoth(ht, ft, d); diff != "" {
			t.Fatalf("template %q: %s", src, diff)
		}
	})
}
