package fasttmpl

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"reflect"
	"strings"
	"testing"
	texttemplate "text/template"
	"time"

	"github.com/google/go-cmp/cmp"

	"herald/shared/tmplbudget"
)

// renderTextBoth renders data with text/template and the compiled text
// template and reports a difference in output or in failure.
func renderTextBoth(tt *texttemplate.Template, ft *Template, data any) string {
	var want, got bytes.Buffer
	werr := tt.Execute(&want, data)
	gerr := ft.Execute(&got, data)
	if (werr == nil) != (gerr == nil) {
		return fmt.Sprintf("error mismatch: text/template: %v; fasttmpl: %v", werr, gerr)
	}
	if d := cmp.Diff(want.String(), got.String()); d != "" {
		return fmt.Sprintf("output mismatch (-text/template +fasttmpl):\n%s", d)
	}
	return ""
}

// TestTextCorpusDifferential renders the whole corpus (HTML-looking
// templates are plain text to text/template) in text mode, on every data
// variant, and compares with text/template.
func TestTextCorpusDifferential(t *testing.T) {
	corpusSets, refSets := corpusDataSets(t), referenceDataSets(t)
	for _, ct := range loadCorpus(t) {
		t.Run(ct.name, func(t *testing.T) {
			tt, err := texttemplate.New(ct.name).Funcs(texttemplate.FuncMap(corpusFuncs)).Parse(ct.src)
			if err != nil {
				t.Fatal(err)
			}
			sets := corpusSets
			if ct.name == "44_reference" {
				sets = refSets
			}
			for _, set := range sets {
				ft, err := CompileText(ct.name, ct.src, texttemplate.FuncMap(corpusFuncs), set.typ)
				if err != nil {
					t.Fatalf("CompileText(%v): %v", set.typ, err)
				}
				if !ft.Fast() && !strings.Contains(ft.FallbackReason(), "parenthesized") {
					t.Errorf("%v: unexpected fallback: %s", set.typ, ft.FallbackReason())
				}
				for i, v := range set.values {
					if diff := renderTextBoth(tt, ft, v); diff != "" {
						t.Errorf("%v variant %d: %s", set.typ, i, diff)
					}
				}
				for i, v := range otherForm(sets, set) {
					if diff := renderTextBoth(tt, ft, v); diff != "" {
						t.Errorf("%v on the fallback, variant %d: %s", set.typ, i, diff)
					}
				}
			}
		})
	}
}

type ptrStringer string

func (p *ptrStringer) String() string { return "ptr<" + string(*p) + ">" }

type textEdge struct {
	PS   ptrStringer
	F    float64
	F32  float32
	HTML template.HTML
	U8   uint8
	Sub  struct{ S string }
}

// TestTextEdgeSemantics covers values text/template prints differently from
// html/template: a String method on the pointer (text/template calls it on
// addressable values), trusted HTML (printed as is), special floats.
func TestTextEdgeSemantics(t *testing.T) {
	srcs := []string{
		"{{.PS}}", "{{.F}} {{.F32}}", "{{.HTML}}", "{{.U8}}", "{{.Sub.S}}", "{{.Sub}}", `{{printf "%v|%s" .PS .HTML}}`,
		"{{.HTML | html}}", "{{.Sub.S | urlquery}}", "{{js .Sub.S}}", "{{with .Sub}}{{.S}}{{end}}",
	}
	values := []textEdge{
		{PS: "a", F: 1.5, F32: 0.1, HTML: "<b>x</b>", U8: 7, Sub: struct{ S string }{"a b&c"}},
		{PS: "", F: 1e21, F32: -0, HTML: "", Sub: struct{ S string }{"<'\">"}},
	}
	values[1].F = inf()
	for _, src := range srcs {
		tt := texttemplate.Must(texttemplate.New("e").Parse(src))
		for _, typ := range []reflect.Type{reflect.TypeFor[*textEdge](), reflect.TypeFor[textEdge]()} {
			ft, err := CompileText("e", src, nil, typ)
			if err != nil {
				t.Fatal(err)
			}
			for i := range values {
				var v any = &values[i]
				if typ.Kind() == reflect.Struct {
					v = values[i]
				}
				if diff := renderTextBoth(tt, ft, v); diff != "" {
					t.Errorf("%q (%v) value %d: %s", src, typ, i, diff)
				}
			}
		}
	}
}

func inf() float64 { var z float64; return 1 / z }

// FuzzRenderText is FuzzRender for text mode: generated templates on
// fuzzed data must print exactly as text/template prints them.
func FuzzRenderText(f *testing.F) {
	f.Add("plain", "<b>&'\"", 3, 1.5, true, []byte{0, 110, 1, 120, 3, 130, 6, 203, 1, 112})
	f.Add("", "x\u2028y", -1, -0.0, false, []byte{17, 20, 18, 21, 200, 5, 112, 1, 113, 255})
	f.Fuzz(func(t *testing.T, s, s2 string, n int, fl float64, b bool, tmpl []byte) {
		src := genFuzzTemplate(tmpl)
		tt, terr := texttemplate.New("fuzz").Parse(src)
		ft, ferr := CompileText("fuzz", src, nil, reflect.TypeFor[*fuzzData]())
		if (terr == nil) != (ferr == nil) {
			t.Fatalf("template %q: text/template parse error %v, CompileText error %v", src, terr, ferr)
		}
		if terr != nil {
			return
		}
		d := &fuzzData{S: s, T: s2, U: s, N: n, F: fl, B: b, H: template.HTML(s2), P: &s,
			Items: []string{s, s2, "stop"}, M: map[string]string{"k": s2}, Item: &fuzzItem{Name: s, Tags: []string{s2}}}
		if diff := renderTextBoth(tt, ft, d); diff != "" {
			t.Fatalf("template %q: %s", src, diff)
		}
	})
}

type limitData struct {
	Items []string
	Big   string
	N     int
}

// doubling is templates in which every level calls the next twice:
// 2^levels calls that write nothing.
func doubling(levels int) string {
	var b strings.Builder
	for i := range levels {
		fmt.Fprintf(&b, `{{define "l%d"}}{{template "l%d"}}{{template "l%d"}}{{end}}`, i, i+1, i+1)
	}
	fmt.Fprintf(&b, `{{define "l%d"}}{{end}}{{template "l0"}}`, levels)
	return b.String()
}

// TestLimits checks that a template over its steps, output or time budget
// fails with the matching error, on the compiled engine and on the
// fallbacks, for HTML and text alike; loops and calls that write nothing
// included.
func TestLimits(t *testing.T) {
	big := strings.Repeat("x", 1000)
	items := make([]string, 200)
	d := &limitData{Items: items, Big: big, N: 1 << 40}
	past := time.Now().Add(-time.Second)
	tests := []struct {
		name string
		src  string
		lim  tmplbudget.Limits
		want error
	}{
		{"output of one hole", "{{.Big}}{{.Big}}", tmplbudget.Limits{Bytes: 1500}, tmplbudget.ErrBytes},
		{"output in a loop", "{{range .Items}}{{$.Big}}{{end}}", tmplbudget.Limits{Bytes: 10_000}, tmplbudget.ErrBytes},
		{"static text in a loop", "{{range .Items}}" + big + "{{end}}", tmplbudget.Limits{Bytes: 10_000}, tmplbudget.ErrBytes},
		// A step for the template, one for each of the 200 items.
		{"a loop that writes nothing", "{{range .Items}}{{end}}", tmplbudget.Limits{Steps: 200}, tmplbudget.ErrSteps},
		{"the same loop within its steps", "{{range .Items}}{{end}}{{.Big}}", tmplbudget.Limits{Steps: 201, Bytes: 1000}, nil},
		{"a long loop past the deadline", "{{range .N}}{{end}}", tmplbudget.Limits{Deadline: past}, tmplbudget.ErrTime},
		{"nested loops past the deadline", "{{range .Items}}{{range $.Items}}{{range $.Items}}{{end}}{{end}}{{end}}x",
			tmplbudget.Limits{Deadline: past}, tmplbudget.ErrTime},
		{"template calls that double", doubling(20), tmplbudget.Limits{Steps: 1000}, tmplbudget.ErrSteps},
		// The template, l0, 2 l1, 4 l2 and 8 l3.
		{"template calls within their steps", doubling(3), tmplbudget.Limits{Steps: 16}, nil},
		{"template calls one step over", doubling(3), tmplbudget.Limits{Steps: 15}, tmplbudget.ErrSteps},
		{"a wide printf field", `{{printf "%0999999d" 1}}`, tmplbudget.Limits{Bytes: 1000}, tmplbudget.ErrBytes},
		{"a wide printf field kept in a variable", `{{$x := printf "%0999999d" 1}}`, tmplbudget.Limits{Bytes: 1000}, tmplbudget.ErrBytes},
		{"a value that doubles", `{{$x := .Big}}{{$x = print $x $x}}{{$x = print $x $x}}{{$x = print $x $x}}`,
			tmplbudget.Limits{Bytes: 5000}, tmplbudget.ErrBytes},
		{"html of many arguments", `{{html .Big .Big .Big}}`, tmplbudget.Limits{Bytes: 2500}, tmplbudget.ErrBytes},
		{"within budget", "{{range .Items}}{{end}}{{.Big}}{{printf \"%5d\" 3}}",
			tmplbudget.Limits{Steps: 1000, Bytes: 1005, Deadline: time.Now().Add(time.Hour)}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			html, err := Compile("l", tc.src, nil, reflect.TypeFor[*limitData]())
			if err != nil {
				t.Fatal(err)
			}
			text, err := CompileText("l", tc.src, nil, reflect.TypeFor[*limitData]())
			if err != nil {
				t.Fatal(err)
			}
			// Data of another type than compiled for runs on the
			// fallbacks, html/template and text/template.
			for _, run := range []struct {
				engine string
				ft     *Template
				data   any
			}{{"compiled html", html, d}, {"compiled text", text, d}, {"html/template", html, *d}, {"text/template", text, *d}} {
				if !run.ft.Fast() {
					t.Fatalf("fell back: %s", run.ft.FallbackReason())
				}
				var buf bytes.Buffer
				err := run.ft.ExecuteLimited(&buf, run.data, tc.lim)
				if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
					t.Errorf("%s: error %v, want %v", run.engine, err, tc.want)
				}
				if tc.lim.Bytes > 0 && buf.Len() > tc.lim.Bytes+len(big)+100 {
					t.Errorf("%s: %d bytes written past a %d-byte budget", run.engine, buf.Len(), tc.lim.Bytes)
				}
			}
		})
	}
}

// TestFallbackLimits runs templates that fall back to html/template as a
// whole (a template called inside <script>) over their budgets: loops and
// calls that write nothing are stopped there too.
func TestFallbackLimits(t *testing.T) {
	script := `<script>var x = {{template "v" .}};</script>{{define "v"}}{{.N}}{{end}}`
	d := &limitData{Items: make([]string, 200), N: 1 << 40}
	past := time.Now().Add(-time.Second)
	tests := []struct {
		name string
		src  string
		lim  tmplbudget.Limits
		want error
	}{
		{"a loop that writes nothing", script + "{{range .Items}}{{range $.Items}}{{end}}{{end}}", tmplbudget.Limits{Steps: 1000}, tmplbudget.ErrSteps},
		{"a long loop past the deadline", script + "{{range .N}}{{end}}", tmplbudget.Limits{Deadline: past}, tmplbudget.ErrTime},
		{"template calls that double", script + doubling(20), tmplbudget.Limits{Steps: 1000}, tmplbudget.ErrSteps},
		{"calls that double inside the script", `<script>var x = {{template "l0"}};</script>` + doubling(20), tmplbudget.Limits{Steps: 1000}, tmplbudget.ErrSteps},
		// The template, v and 200 items.
		{"within budget", script + "{{range .Items}}{{end}}", tmplbudget.Limits{Steps: 202}, nil},
		{"one step over", script + "{{range .Items}}{{end}}", tmplbudget.Limits{Steps: 201}, tmplbudget.ErrSteps},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ft, err := Compile("l", tc.src, nil, reflect.TypeFor[*limitData]())
			if err != nil {
				t.Fatal(err)
			}
			if ft.Fast() {
				t.Fatal("compiled; the test needs a template that falls back")
			}
			var buf bytes.Buffer
			if err := ft.ExecuteLimited(&buf, d, tc.lim); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
		})
	}
}
