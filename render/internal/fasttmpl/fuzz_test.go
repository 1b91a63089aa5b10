package fasttmpl

import (
	"bytes"
	"html/template"
	"reflect"
	"strings"
	"testing"
)

// fuzzData is the data rendered by FuzzRender; its string fields come from
// the fuzzer.
type fuzzData struct {
	S, T, U string
	N       int
	F       float64
	B       bool
	H       template.HTML
	URL     template.URL
	P, NilP *string
	Items   []string
	M       map[string]string
	Item    *fuzzItem
	Any     any
}

type fuzzItem struct {
	Name string
	Tags []string
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
		"{{.S}}", "{{.T}}", "{{.U}}", "{{.N}}", "{{.F}}", "{{.B}}", "{{.H}}", "{{.URL}}", "{{.P}}", "{{.NilP}}",
		"{{.Items}}", "{{.M}}", "{{.Item}}", "{{.Any}}", "{{.M.k}}", "{{.M.missing}}", "{{.Item.Name}}",
		"{{html .S}}", "{{.S | html}}", "{{urlquery .S .T}}", "{{.U | urlquery}}", "{{js .S}}",
		`{{printf "%q" .S}}`, `{{printf "%s-%d" .T .N}}`, `{{printf "%.1f" .F}}`, "{{print .S .N}}",
		"{{len .S}}", "{{index .Items 0}}", `{{index .M "k"}}`, "{{slice .S 0 1}}", "{{not .B}}",
		"{{and .S .T}}", "{{or .S .T}}", `{{eq .S "x"}}`, "{{lt .N 3}}", "{{.S | len}}", "{{$}}", "{{.}}",
		"{{/* comment */}}", "{{- .S -}}", "{{$.T}}",
		`{{template "sub" .S}}`, `{{template "sub" .}}`, "{{with $v := .T}}{{$v}}{{end}}",
		"{{range $k, $v := .M}}{{$k}}={{$v}}{{end}}", "{{.Item.Tags}}", "{{range .Item.Tags}}{{.}}{{end}}",
		`{{.S | printf "%s|%v" .T}}`, "{{urlquery .S}}", "{{.F}}{{.N}}", `{{if .B}}{{.S}}{{else}}{{.T}}{{end}}`,
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
	fuzzConds = []string{".B", ".S", ".N", ".P", ".NilP", ".Items", ".M.k", `eq .S "a"`, "and .S .B", "not .T", ".Any", ".Item"}
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
		g.sb.WriteString("{{range $i, $x := .Items}}{{$i}}")
	default:
		g.sb.WriteString(`{{range .Items}}{{if eq . "stop"}}{{break}}{{end}}`)
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
		{"\x00\u2028\u2029", "é★日本", "%zz%41", 0, -0.0, true, []byte{3, 115, 6, 9, 116, 6, 20, 119, 21}},
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
		ht, herr := template.New("fuzz").Parse(src)
		d := &fuzzData{
			S: s, T: s2, U: u, N: n, F: fl, B: b, H: template.HTML(s2), URL: template.URL(u), P: &s,
			Items: []string{s, s2, "stop", u}, M: map[string]string{"k": s2}, Item: &fuzzItem{Name: s, Tags: []string{u}},
		}
		if n%2 == 0 {
			d.Any = s
		} else {
			d.Any = n
		}
		for _, typ := range []reflect.Type{reflect.TypeFor[*fuzzData](), reflect.TypeFor[fuzzData]()} {
			ft, ferr := Compile("fuzz", src, nil, typ)
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
			var v, other any = d, *d
			if typ.Kind() == reflect.Struct {
				v, other = *d, d
			}
			if diff := renderBoth(ht, ft, v); diff != "" {
				t.Fatalf("template %q (%v): %s", src, typ, diff)
			}
			// Data of the other type runs on the fallback.
			if diff := renderBoth(ht, ft, other); diff != "" {
				t.Fatalf("template %q (%v) on the fallback: %s", src, typ, diff)
			}
		}
	})
}
