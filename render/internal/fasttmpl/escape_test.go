package fasttmpl

import (
	"html/template"
	"math/rand/v2"
	"testing"

	"herald/shared/emailtemplate"
)

// escapeContexts puts one value in every context html/template knows, so
// each escaper (and fused escaper chain) is compared on the same inputs.
var escapeContexts = []string{
	`<p>{{.Customer.FirstName}}</p>`,
	`<p title="{{.Customer.FirstName}}">x</p>`,
	`<p title='{{.Customer.FirstName}}'>x</p>`,
	`<p title={{.Customer.FirstName}}>x</p>`,
	`<a href="{{.Customer.FirstName}}">x</a>`,
	`<a href="/x/{{.Customer.FirstName}}">x</a>`,
	`<a href="/x?q={{.Customer.FirstName}}">x</a>`,
	`<a href={{.Customer.FirstName}}>x</a>`,
	`<a href=/x/{{.Customer.FirstName}}>x</a>`,
	`<img srcset="{{.Customer.FirstName}}">`,
	`<img srcset="{{.Customer.FirstName}} 2x, /b.png {{.Customer.FirstName}}">`,
	`<img srcset={{.Customer.FirstName}}>`,
	`<p style="color: {{.Customer.FirstName}}">x</p>`,
	`<p style="background: url({{.Customer.FirstName}})">x</p>`,
	`<p style="background: url('{{.Customer.FirstName}}')">x</p>`,
	`<p style="background: url(&quot;/a?b={{.Customer.FirstName}}&quot;)">x</p>`,
	`<p style='font-family: "{{.Customer.FirstName}}"'>x</p>`,
	`<style>p { color: {{.Customer.FirstName}} }</style>`,
	`<style>p { background: url({{.Customer.FirstName}}) }</style>`,
	`<style>p::after { content: '{{.Customer.FirstName}}' }</style>`,
	`<script>var x = {{.Customer.FirstName}};</script>`,
	`<script>var x = "{{.Customer.FirstName}}";</script>`,
	`<script>var x = '{{.Customer.FirstName}}';</script>`,
	`<script>var x = /{{.Customer.FirstName}}/;</script>`,
	"<script>var x = `{{.Customer.FirstName}}`;</script>",
	`<p onclick="f({{.Customer.FirstName}})">x</p>`,
	`<p onclick="f('{{.Customer.FirstName}}')">x</p>`,
	`<p onclick=f({{.Customer.FirstName}})>x</p>`,
	`<title>{{.Customer.FirstName}}</title>`,
	`<textarea>{{.Customer.FirstName}}</textarea>`,
	`<!-- {{.Customer.FirstName}} -->`,
	`<p {{.Customer.FirstName}}>x</p>`,
	`<p {{.Customer.FirstName}}="v">x</p>`,
	`<meta http-equiv="refresh" content="1; url={{.Customer.FirstName}}">`,
	`{{.Customer.FirstName | html}} {{js .Customer.FirstName}} {{.Customer.FirstName | urlquery}} {{html .Customer.FirstName .Customer.FirstName}}`,
	`<a href="{{.Customer.FirstName | urlquery}}">x</a>`,
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
		ft, err := Compile("e", src)
		if err != nil {
			t.Errorf("%q: %v", src, err)
			continue
		}
		if !ft.Fast() {
			t.Errorf("%q: fell back: %s", src, ft.FallbackReason())
		}
		failures := 0
		for _, in := range inputs {
			d := &emailtemplate.Data{Customer: emailtemplate.Customer{FirstName: in}}
			if diff := renderBoth(ht, ft, d); diff != "" {
				t.Errorf("%q with %q: %s", src, in, diff)
				if failures++; failures > 3 {
					break
				}
			}
		}
	}
}
