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

// TestLimits checks that a template over its output or time budget fails
// with the matching error, on the compiled engine and on the fallbacks.
func TestLimits(t *testing.T) {
	big := strings.Repeat("x", 1000)
	items := make([]string, 200)
	d := &limitData{Items: items, Big: big, N: 1 << 40}
	tests := []struct {
		name string
		src  string
		lim  Limits
		want error
	}{
		{"output of one hole", "{{.Big}}{{.Big}}", Limits{MaxBytes: 1500}, ErrOutputLimit},
		{"output in a loop", "{{range .Items}}{{$.Big}}{{end}}", Limits{MaxBytes: 10_000}, ErrOutputLimit},
		{"static text in a loop", "{{range .Items}}" + big + "{{end}}", Limits{MaxBytes: 10_000}, ErrOutputLimit},
		{"a loop that writes nothing", "{{range .N}}{{end}}", Limits{Timeout: 20 * time.Millisecond}, ErrTimeLimit},
		{"nested loops", "{{range .Items}}{{range $.Items}}{{range $.Items}}{{end}}{{end}}{{end}}x",
			Limits{Timeout: time.Millisecond}, ErrTimeLimit},
		{"within budget", "{{range .Items}}{{end}}{{.Big}}", Limits{MaxBytes: 1000, Timeout: time.Minute}, nil},
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
			for _, ft := range []*Template{html, text} {
				if !ft.Fast() {
					t.Fatalf("fell back: %s", ft.FallbackReason())
				}
				var buf bytes.Buffer
				start := time.Now()
				err := ft.ExecuteLimited(&buf, d, tc.lim)
				if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
					t.Fatalf("error %v, want %v", err, tc.want)
				}
				if tc.lim.MaxBytes > 0 && buf.Len() > tc.lim.MaxBytes+len(big)+100 {
					t.Errorf("%d bytes written past a %d-byte limit", buf.Len(), tc.lim.MaxBytes)
				}
				if time.Since(start) > 10*time.Second {
					t.Errorf("took %v", time.Since(start))
				}
			}
		})
	}
	// The fallback engines enforce the output limit through the writer.
	fb, err := Compile("l", "{{range .Items}}{{$.Big}}{{end}}", nil, reflect.TypeFor[*limitData]())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := fb.ExecuteLimited(&buf, map[string]any{"Items": items, "Big": big}, Limits{MaxBytes: 5000}); !errors.Is(err, ErrOutputLimit) {
		t.Errorf("html/template fallback over budget: %v", err)
	}
	if buf.Len() > 5000 {
		t.Errorf("fallback wrote %d bytes past a 5000-byte limit", buf.Len())
	}
}
