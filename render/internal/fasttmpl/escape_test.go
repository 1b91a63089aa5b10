package fasttmpl

import (
	"html/template"
	"math/rand/v2"
	"reflect"
	"testing"
)

// escapeContexts puts one value in every context html/template knows, so
// each escaper (and fused escaper chain) is compared on the same inputs.
var escapeContexts = []string{
	`<p>{{.S}}</p>`,
	`<p title="{{.S}}">x</p>`,
	`<p title='{{.S}}'>x</p>`,
	`<p title={{.S}}>x</p>`,
	`<a href="{{.S}}">x</a>`,
	`<a href="/x/{{.S}}">x</a>`,
	`<a href="/x?q={{.S}}">x</a>`,
	`<a href={{.S}}>x</a>`,
	`<a href=/x/{{.S}}>x</a>`,
	`<img srcset="{{.S}}">`,
	`<img srcset="{{.S}} 2x, /b.png {{.S}}">`,
	`<img srcset={{.S}}>`,
	`<p style="color: {{.S}}">x</p>`,
	`<p style="background: url({{.S}})">x</p>`,
	`<p style="background: url('{{.S}}')">x</p>`,
	`<p style="background: url(&quot;/a?b={{.S}}&quot;)">x</p>`,
	`<p style='font-family: "{{.S}}"'>x</p>`,
	`<style>p { color: {{.S}} }</style>`,
	`<style>p { background: url({{.S}}) }</style>`,
	`<style>p::after { content: '{{.S}}' }</style>`,
	`<script>var x = {{.S}};</script>`,
	`<script>var x = "{{.S}}";</script>`,
	`<script>var x = '{{.S}}';</script>`,
	`<script>var x = /{{.S}}/;</script>`,
	"<script>var x = `{{.S}}`;</script>",
	`<p onclick="f({{.S}})">x</p>`,
	`<p onclick="f('{{.S}}')">x</p>`,
	`<p onclick=f({{.S}})>x</p>`,
	`<title>{{.S}}</title>`,
	`<textarea>{{.S}}</textarea>`,
	`<!-- {{.S}} -->`,
	`<p {{.S}}>x</p>`,
	`<p {{.S}}="v">x</p>`,
	`<meta http-equiv="refresh" content="1; url={{.S}}">`,
	`{{.S | html}} {{js .S}} {{.S | urlquery}} {{html .S .S}}`,
	`<a href="{{.S | urlquery}}">x</a>`,
	`<p title="{{.H}}" data-x={{.H}}>{{.H}}</p><a href="{{.U}}">u</a><img srcset="{{.U}}">`,
}

type escapeData struct {
	S string
	H template.HTML
	U template.URL
}

func escapeInputs() []string {
	in := append([]string(nil), adversarial...)
	in = append(in, urls...)
	// Pseudo-random strings over bytes that matter to some escaper.
	alphabet := []string{"<", ">", "&", "'", "\"", "`", "+", "=", "/", "\\", ":", ";", "(", ")", "{", "}",
		"%", "#", "?", ",", " ", "\t", "\n", "\r", "\x00", "\x7f", "a", "Z", "0", "f", "-", ".", "é",
		"\u2028", "\ufdd0", "\ufffd", "\xff", "java", "script", "http", "expression", "\\3c", "!--", "url("}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 400; i++ {
		var b []byte
		for n := r.IntN(12); n >= 0; n-- {
			b = append(b, alphabet[r.IntN(len(alphabet))]...)
		}
		in = append(in, string(b))
	}
	return in
}

func TestEscapersInEveryContext(t *testing.T) {
	inputs := escapeInputs()
	for _, src := range escapeContexts {
		ht, err := template.New("e").Parse(src)
		if err != nil {
			t.Fatal(err)
		}
		ft, err := Compile("e", src, nil, reflect.TypeFor[*escapeData]())
		if err != nil {
			t.Errorf("%q: %v", src, err)
			continue
		}
		if !ft.Fast() {
			t.Errorf("%q: fell back: %s", src, ft.FallbackReason())
		}
		failures := 0
		for _, in := range inputs {
			d := &escapeData{S: in, H: template.HTML(in), U: template.URL(in)}
			if diff := renderBoth(ht, ft, d); diff != "" {
				t.Errorf("%q with %q: %s", src, in, diff)
				if failures++; failures > 3 {
					break
				}
			}
		}
	}
}
