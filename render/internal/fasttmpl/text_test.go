package fasttmpl

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	texttemplate "text/template"
	"time"

	"github.com/google/go-cmp/cmp"

	"herald/shared/emailtemplate"
	"herald/shared/tmplbudget"
)

// renderTextBoth renders data with text/template and the compiled text
// template and reports a difference in output or in failure.
func renderTextBoth(tt *texttemplate.Template, ft *Template, data *emailtemplate.Data) string {
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
	variants := corpusVariants()
	_, base := loadReference(t)
	refJob := append(buildJob(base, 50, 40), base)
	for _, ct := range loadCorpus(t) {
		t.Run(ct.name, func(t *testing.T) {
			tt, err := texttemplate.New(ct.name).Parse(ct.src)
			if err != nil {
				t.Fatal(err)
			}
			ft, err := CompileText(ct.name, ct.src)
			if err != nil {
				t.Fatalf("CompileText: %v", err)
			}
			if !ft.Fast() {
				t.Errorf("unexpected fallback: %s", ft.FallbackReason())
			}
			data := variants
			if ct.name == "44_reference" {
				data = refJob
			}
			for i, d := range data {
				if diff := renderTextBoth(tt, ft, d); diff != "" {
					t.Errorf("variant %d: %s", i, diff)
				}
			}
		})
	}
}

// TestTextEdgeSemantics renders the edge templates in text mode, where
// values print as text/template prints them (a missing value as
// "<no value>", say) and nothing is escaped.
func TestTextEdgeSemantics(t *testing.T) {
	data := corpusVariants()[:12]
	for k, src := range edgeTemplates {
		tt, terr := texttemplate.New("edge").Parse(src)
		ft, ferr := CompileText("edge", src)
		if (terr == nil) != (ferr == nil) {
			t.Errorf("template %d %q: text/template parse error %v, CompileText error %v", k, src, terr, ferr)
			continue
		}
		if terr != nil {
			continue
		}
		// text/template finds an undefined template only when it
		// executes it; so does the fallback.
		if !ft.Fast() && !strings.Contains(src, "($x :=") && !strings.Contains(src, `"missing"`) {
			t.Errorf("template %d %q: unexpected fallback: %s", k, src, ft.FallbackReason())
		}
		for i, d := range data {
			if diff := renderTextBoth(tt, ft, d); diff != "" {
				t.Errorf("template %d %q variant %d: %s", k, src, i, diff)
			}
		}
	}
}

// FuzzRenderText is FuzzRender for text mode: generated templates on
// fuzzed data must print exactly as text/template prints them.
func FuzzRenderText(f *testing.F) {
	f.Add("plain", "<b>&'\"", 3, 1.5, true, []byte{0, 110, 1, 120, 3, 130, 6, 203, 1, 112})
	f.Add("", "x\u2028y", -1, math.Copysign(0, -1), false, []byte{17, 20, 18, 21, 200, 5, 112, 1, 113, 255})
	f.Fuzz(func(t *testing.T, s, s2 string, n int, fl float64, b bool, tmpl []byte) {
		src := genFuzzTemplate(tmpl)
		if len(emailtemplate.Check("fuzz", src)) > 0 {
			return // refused; FuzzRender checks that Compile refuses it too
		}
		tt, terr := texttemplate.New("fuzz").Parse(src)
		ft, ferr := CompileText("fuzz", src)
		if (terr == nil) != (ferr == nil) {
			t.Fatalf("template %q: text/template parse error %v, CompileText error %v", src, terr, ferr)
		}
		if terr != nil {
			return
		}
		if diff := renderTextBoth(tt, ft, fuzzData(s, s2, s, n, fl, b)); diff != "" {
			t.Fatalf("template %q: %s", src, diff)
		}
	})
}

// limitData is data for the budget tests: a 1,000-byte name and 200
// items.
func limitData() *emailtemplate.Data {
	return &emailtemplate.Data{
		Customer: emailtemplate.Customer{FirstName: strings.Repeat("x", 1000)},
		Items:    make([]emailtemplate.Item, 200),
	}
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
	d := limitData()
	past := time.Now().Add(-time.Second)
	tests := []struct {
		name string
		src  string
		lim  tmplbudget.Limits
		want error
	}{
		{"output of one hole", "{{.Customer.FirstName}}{{.Customer.FirstName}}", tmplbudget.Limits{Bytes: 1500}, tmplbudget.ErrBytes},
		{"output in a loop", "{{range .Items}}{{$.Customer.FirstName}}{{end}}", tmplbudget.Limits{Bytes: 10_000}, tmplbudget.ErrBytes},
		{"static text in a loop", "{{range .Items}}" + big + "{{end}}", tmplbudget.Limits{Bytes: 10_000}, tmplbudget.ErrBytes},
		// A step for the template, one for each of the 200 items.
		{"a loop that writes nothing", "{{range .Items}}{{end}}", tmplbudget.Limits{Steps: 200}, tmplbudget.ErrSteps},
		{"the same loop within its steps", "{{range .Items}}{{end}}{{.Customer.FirstName}}", tmplbudget.Limits{Steps: 201, Bytes: 1000}, nil},
		{"nested loops past the deadline", "{{range .Items}}{{range $.Items}}{{end}}{{end}}x",
			tmplbudget.Limits{Deadline: past}, tmplbudget.ErrTime},
		{"template calls that double", doubling(8), tmplbudget.Limits{Steps: 100}, tmplbudget.ErrSteps},
		// The template, l0, 2 l1, 4 l2 and 8 l3.
		{"template calls within their steps", doubling(3), tmplbudget.Limits{Steps: 16}, nil},
		{"template calls one step over", doubling(3), tmplbudget.Limits{Steps: 15}, tmplbudget.ErrSteps},
		{"a wide printf field", `{{printf "%0999999d" 1}}`, tmplbudget.Limits{Bytes: 1000}, tmplbudget.ErrBytes},
		{"a wide printf field kept in a variable", `{{$x := printf "%0999999d" 1}}`, tmplbudget.Limits{Bytes: 1000}, tmplbudget.ErrBytes},
		{"a value that doubles", `{{$x := .Customer.FirstName}}{{$x = print $x $x}}{{$x = print $x $x}}{{$x = print $x $x}}`,
			tmplbudget.Limits{Bytes: 5000}, tmplbudget.ErrBytes},
		{"html of many arguments", `{{html .Customer.FirstName .Customer.FirstName .Customer.FirstName}}`, tmplbudget.Limits{Bytes: 2500}, tmplbudget.ErrBytes},
		{"within budget", "{{range .Items}}{{end}}{{.Customer.FirstName}}{{printf \"%5d\" 3}}",
			tmplbudget.Limits{Steps: 1000, Bytes: 1005, Deadline: time.Now().Add(time.Hour)}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			html, err := Compile("l", tc.src)
			if err != nil {
				t.Fatal(err)
			}
			text, err := CompileText("l", tc.src)
			if err != nil {
				t.Fatal(err)
			}
			if !html.Fast() || !text.Fast() {
				t.Fatalf("fell back: %s%s", html.FallbackReason(), text.FallbackReason())
			}
			// The fallbacks, html/template and text/template, count
			// the same budget.
			for _, run := range []struct {
				engine string
				exec   func(*bytes.Buffer, *emailtemplate.Data, tmplbudget.Limits) error
			}{
				{"compiled html", html.ExecuteLimited}, {"compiled text", text.ExecuteLimited},
				{"html/template", execFallback(html)}, {"text/template", execFallback(text)},
			} {
				var buf bytes.Buffer
				err := run.exec(&buf, d, tc.lim)
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

// execFallback executes ft on its fallback engine.
func execFallback(ft *Template) func(*bytes.Buffer, *emailtemplate.Data, tmplbudget.Limits) error {
	return func(buf *bytes.Buffer, d *emailtemplate.Data, lim tmplbudget.Limits) error {
		return ft.fallback.Execute(buf, d, lim)
	}
}

// TestFallbackLimits runs templates that fall back to html/template as a
// whole (a template called inside <script>) over their budgets: loops and
// calls that write nothing are stopped there too.
func TestFallbackLimits(t *testing.T) {
	script := `<script>var x = {{template "v" .}};</script>{{define "v"}}{{.Job.Year}}{{end}}`
	d := limitData()
	past := time.Now().Add(-time.Second)
	tests := []struct {
		name string
		src  string
		lim  tmplbudget.Limits
		want error
	}{
		{"a loop that writes nothing", script + "{{range .Items}}{{range $.Items}}{{end}}{{end}}", tmplbudget.Limits{Steps: 1000}, tmplbudget.ErrSteps},
		{"nested loops past the deadline", script + "{{range .Items}}{{range $.Items}}{{end}}{{end}}", tmplbudget.Limits{Deadline: past}, tmplbudget.ErrTime},
		{"template calls that double", script + doubling(8), tmplbudget.Limits{Steps: 100}, tmplbudget.ErrSteps},
		{"calls that double inside the script", `<script>var x = {{template "l0"}};</script>` + doubling(7), tmplbudget.Limits{Steps: 100}, tmplbudget.ErrSteps},
		// The template, v and 200 items.
		{"within budget", script + "{{range .Items}}{{end}}", tmplbudget.Limits{Steps: 202}, nil},
		{"one step over", script + "{{range .Items}}{{end}}", tmplbudget.Limits{Steps: 201}, tmplbudget.ErrSteps},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ft, err := Compile("l", tc.src)
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
