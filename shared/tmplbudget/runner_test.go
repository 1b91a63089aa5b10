package tmplbudget_test

import (
	"bytes"
	htmltemplate "html/template"
	"strings"
	"sync"
	"testing"
	texttemplate "text/template"
	"time"

	"github.com/google/go-cmp/cmp"

	"herald/shared/tmplbudget"
)

type item struct {
	Name string
	Tags []string
}

type data struct {
	S, Big string
	N      int
	P      *string
	Items  []item
	M      map[string]int
}

func testData() *data {
	s := `<a href="x">O'Neil & "co"</a>`
	items := make([]item, 40)
	for i := range items {
		items[i] = item{Name: strings.Repeat("n", i%5), Tags: []string{"t", "u"}}
	}
	return &data{S: s, Big: strings.Repeat("b", 1000), N: 7, P: &s, Items: items, M: map[string]int{"z": 1, "a": 2}}
}

// sources exercise every construct the instrumentation touches (loops,
// template calls, blocks, break and continue, else branches) and every
// builtin it replaces, in all of html/template's contexts.
var sources = []string{
	`<p>{{.S}}</p>`,
	`{{range $i, $x := .Items}}{{if eq $i 3}}{{continue}}{{end}}{{if eq $i 6}}{{break}}{{end}}<b>{{$x.Name}}</b>{{else}}none{{end}}`,
	`{{range .M}}{{.}}{{end}}{{range $k, $v := .M}}{{$k}}={{$v}};{{end}}{{range 3}}{{.}}{{end}}{{range .Items}}{{range .Tags}}{{.}}{{end}}{{end}}`,
	`{{define "card"}}<td title="{{.Name}}">{{template "tag" .Tags}}</td>{{end}}{{define "tag"}}{{range .}}<i>{{.}}</i>{{end}}{{end}}{{range .Items}}{{template "card" .}}{{end}}`,
	`{{block "head" .}}<h1>{{.S}}</h1>{{end}}{{with .Items}}{{len .}}{{else}}empty{{end}}`,
	`<script>var x = {{template "v" .}}; var s = "{{.S}}";</script>{{define "v"}}{{.S}}{{end}}`,
	`<a href="/p?q={{.S}}" onclick="f({{.S}})" style="color: {{.S}}">{{template "t" .}}</a>{{define "t"}}{{range .Items}}{{.Name}}{{end}}{{end}}`,
	`{{printf "%s|%5d|%.2f|%q|%v" .S .N 3.14159 .S .Items}}{{print .S .N .P}}{{println .S}}`,
	`{{html .S}}{{js .S}}{{urlquery .S}}{{html .S .N .P}}{{urlquery .S .P}}{{.S | html}}{{.S | urlquery}}`,
	`{{$x := printf "%s%s" .S .S}}{{$x}}{{$y := print .N}}{{$y}}`,
}

func TestRunnerMatchesStandardEngines(t *testing.T) {
	d := testData()
	for _, src := range sources {
		for _, lim := range []tmplbudget.Limits{{}, {Steps: 1e6, Bytes: 1 << 20, Deadline: time.Now().Add(time.Hour)}} {
			ht := htmltemplate.Must(htmltemplate.New("root").Parse(src))
			hr, err := tmplbudget.NewHTML(ht, nil)
			if err != nil {
				t.Fatal(err)
			}
			var want, got bytes.Buffer
			werr := htmltemplate.Must(ht.Clone()).Execute(&want, d)
			gerr := hr.Execute(&got, d, lim)
			if (werr == nil) != (gerr == nil) {
				t.Fatalf("html %q: html/template error %v, Runner error %v", src, werr, gerr)
			}
			if diff := cmp.Diff(want.String(), got.String()); diff != "" {
				t.Errorf("html %q (-html/template +Runner):\n%s", src, diff)
			}

			tt := texttemplate.Must(texttemplate.New("root").Parse(src))
			tr, err := tmplbudget.NewText(tt, nil)
			if err != nil {
				t.Fatal(err)
			}
			want.Reset()
			got.Reset()
			werr = tt.Execute(&want, d)
			gerr = tr.Execute(&got, d, lim)
			if (werr == nil) != (gerr == nil) {
				t.Fatalf("text %q: text/template error %v, Runner error %v", src, werr, gerr)
			}
			if diff := cmp.Diff(want.String(), got.String()); diff != "" {
				t.Errorf("text %q (-text/template +Runner):\n%s", src, diff)
			}
		}
	}
}

// doubling is a set of templates in which every level calls the next
// twice: 2^levels calls, and not a byte of output.
func doubling(levels int) string {
	var b strings.Builder
	for i := range levels {
		b.WriteString(`{{define "l` + string(rune('a'+i)) + `"}}{{template "l` + string(rune('a'+i+1)) + `"}}{{template "l` + string(rune('a'+i+1)) + `"}}{{end}}`)
	}
	b.WriteString(`{{define "l` + string(rune('a'+levels)) + `"}}{{end}}{{template "la"}}`)
	return b.String()
}

func TestRunnerBudgets(t *testing.T) {
	past := time.Now().Add(-time.Second)
	tests := []struct {
		name string
		src  string
		lim  tmplbudget.Limits
		want string // the budget exceeded, "" for none
	}{
		// One step for the template, one for each of the 40 items.
		{"a loop that writes nothing", `{{range .Items}}{{end}}`, tmplbudget.Limits{Steps: 40}, "steps"},
		{"the same loop within its steps", `{{range .Items}}{{end}}`, tmplbudget.Limits{Steps: 41}, ""},
		{"nested loops that write nothing", `{{range .Items}}{{range $.Items}}{{end}}{{end}}`, tmplbudget.Limits{Steps: 1000}, "steps"},
		{"template calls that double", doubling(20), tmplbudget.Limits{Steps: 1000}, "steps"},
		{"doubling calls from a script", `<script>var x = {{template "la"}};</script>` + doubling(20), tmplbudget.Limits{Steps: 1000}, "steps"},
		// The template, la, 2 lb, 4 lc and 8 ld.
		{"template calls within their steps", doubling(3), tmplbudget.Limits{Steps: 16}, ""},
		{"template calls one step over", doubling(3), tmplbudget.Limits{Steps: 15}, "steps"},
		{"a loop past the deadline", `{{range .Items}}{{range $.Items}}{{end}}{{end}}`, tmplbudget.Limits{Deadline: past}, "time"},
		{"output in a loop", `{{range .Items}}{{$.Big}}{{end}}`, tmplbudget.Limits{Bytes: 5000}, "bytes"},
		{"a wide printf field", `{{printf "%0999999d" 1}}`, tmplbudget.Limits{Bytes: 1000}, "bytes"},
		{"a wide printf field from an argument", `{{printf "%*d" 999999 1}}`, tmplbudget.Limits{Bytes: 1000}, "bytes"},
		{"a printf precision", `{{printf "%.999999f" 1.0}}`, tmplbudget.Limits{Bytes: 1000}, "bytes"},
		{"a printf that writes nothing", `{{$x := printf "%0999999d" 1}}`, tmplbudget.Limits{Bytes: 1000}, "bytes"},
		{"printf repeating an argument", `{{$x := printf "%[1]s%[1]s%[1]s" .Big}}`, tmplbudget.Limits{Bytes: 2500}, "bytes"},
		{"a value that doubles", `{{$x := .Big}}{{$x = print $x $x}}{{$x = print $x $x}}{{$x = print $x $x}}`, tmplbudget.Limits{Bytes: 5000}, "bytes"},
		{"html of many arguments", `{{$x := html .Big .Big .Big}}`, tmplbudget.Limits{Bytes: 2500}, "bytes"},
		{"html/template's _eval_args_", `<p>{{html .Big .Big .Big}}</p>`, tmplbudget.Limits{Bytes: 2500}, "bytes"},
		{"js that grows", `{{$x := js .Big .S .S .S .S .S .S .S .S .S .S .S .S .S .S .S .S .S .S .S .S .S .S .S .S .S .S .S .S .S}}`, tmplbudget.Limits{Bytes: 2000}, "bytes"},
		{"printf within budget", `{{printf "%5d|%s" 1 .S}}`, tmplbudget.Limits{Bytes: 100}, ""},
	}
	d := testData()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			runners := map[string]func() (*tmplbudget.Runner, error){
				"html": func() (*tmplbudget.Runner, error) {
					return tmplbudget.NewHTML(htmltemplate.Must(htmltemplate.New("t").Parse(tc.src)), nil)
				},
				"text": func() (*tmplbudget.Runner, error) {
					return tmplbudget.NewText(texttemplate.Must(texttemplate.New("t").Parse(tc.src)), nil)
				},
			}
			for engine, newRunner := range runners {
				r, err := newRunner()
				if err != nil {
					t.Fatal(err)
				}
				var out bytes.Buffer
				err = r.Execute(&out, d, tc.lim)
				if got := tmplbudget.Exceeded(err); got != tc.want || tc.want == "" && err != nil {
					t.Errorf("%s: error %v, want the %q budget exceeded", engine, err, tc.want)
				}
				if tc.lim.Bytes > 0 && out.Len() > tc.lim.Bytes {
					t.Errorf("%s: %d bytes written past a %d-byte budget", engine, out.Len(), tc.lim.Bytes)
				}
			}
		})
	}
}

// TestRunnerCopiesHaveTheirOwnMeter runs executions with different budgets
// at once: each is held to its own.
func TestRunnerCopiesHaveTheirOwnMeter(t *testing.T) {
	r, err := tmplbudget.NewHTML(htmltemplate.Must(htmltemplate.New("t").Parse(`{{range .Items}}{{.Name}}{{end}}`)), nil)
	if err != nil {
		t.Fatal(err)
	}
	d := testData()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			lim, want := tmplbudget.Limits{}, ""
			if g%2 == 1 {
				lim, want = tmplbudget.Limits{Steps: 10}, "steps"
			}
			for range 50 {
				var out bytes.Buffer
				if err := r.Execute(&out, d, lim); tmplbudget.Exceeded(err) != want || want == "" && err != nil {
					t.Errorf("goroutine %d: error %v, want %q", g, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestRunnerReservesItsFunctionName(t *testing.T) {
	ht := htmltemplate.Must(htmltemplate.New("t").Parse(`x`))
	if _, err := tmplbudget.NewHTML(ht, htmltemplate.FuncMap{"_tmplbudget_step": func() bool { return true }}); err == nil {
		t.Error("NewHTML accepted a function named like its step")
	}
}

// A template's own function of a builtin's name stays its own.
func TestRunnerKeepsUserFunctions(t *testing.T) {
	funcs := texttemplate.FuncMap{"print": func(a ...any) string { return "mine" }}
	tt := texttemplate.Must(texttemplate.New("t").Funcs(funcs).Parse(`{{print .S}}`))
	r, err := tmplbudget.NewText(tt, funcs)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := r.Execute(&out, testData(), tmplbudget.Limits{Bytes: 100}); err != nil || out.String() != "mine" {
		t.Errorf("output %q, error %v", out.String(), err)
	}
}

// TestPrepareRunsNothing checks that making a copy ready (which escapes it
// on html/template) runs none of the template.
func TestPrepareRunsNothing(t *testing.T) {
	calls := 0
	count := func() string { calls++; return "" }
	src := `{{count}}{{range .Items}}{{count}}{{end}}`
	hr, err := tmplbudget.NewHTML(htmltemplate.Must(htmltemplate.New("t").Funcs(htmltemplate.FuncMap{"count": count}).Parse(src)),
		htmltemplate.FuncMap{"count": count})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := tmplbudget.NewText(texttemplate.Must(texttemplate.New("t").Funcs(texttemplate.FuncMap{"count": count}).Parse(src)),
		texttemplate.FuncMap{"count": count})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*tmplbudget.Runner{hr, tr} {
		if err := r.Prepare(); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 0 {
		t.Fatalf("Prepare ran the template: %d calls", calls)
	}
	for _, r := range []*tmplbudget.Runner{hr, tr} {
		if err := r.Execute(&bytes.Buffer{}, testData(), tmplbudget.Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 2*41 {
		t.Errorf("%d calls, want 82", calls)
	}
}
