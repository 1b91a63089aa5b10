package fasttmpl

import (
	"bytes"
	"errors"
	"html/template"
	"reflect"
	"strings"
	"testing"
	texttemplate "text/template"
)

func TestCompileErrors(t *testing.T) {
	typ := reflect.TypeFor[*corpusData]()
	for _, src := range []string{
		`{{.S`,                         // parse error
		`{{if .B}}x`,                   // unclosed action
		`{{nosuchfunc .S}}`,            // undefined function
		`<a href="{{.S}}`,              // ends in a non-text context
		`<a {{if .B}}href="{{end}}x">`, // branches end in different contexts
		`{{template "nope"}}`,          // undefined template
	} {
		_, err := Compile("t", src, nil, typ)
		if err == nil {
			t.Errorf("Compile(%q) succeeded, want error", src)
			continue
		}
		// html/template must reject it too (at parse or execution).
		ht, perr := template.New("t").Parse(src)
		if perr == nil {
			if eerr := ht.Execute(&bytes.Buffer{}, &corpusData{}); eerr == nil {
				t.Errorf("Compile(%q) failed with %v but html/template renders it", src, err)
			}
		}
	}
	// Templates without output are valid for html/template.
	for _, src := range []string{``, `{{define "x"}}only a define{{end}}`, `{{/* c */}}`} {
		ft, err := Compile("t", src, nil, typ)
		if err != nil {
			t.Errorf("Compile(%q): %v", src, err)
			continue
		}
		if diff := renderBoth(template.Must(template.New("t").Parse(src)), ft, &corpusData{}); diff != "" {
			t.Errorf("%q: %s", src, diff)
		}
	}
	if _, err := Compile("t", "x", nil, nil); err == nil {
		t.Error("Compile with nil type succeeded")
	}
	if _, err := Compile("t", "x", template.FuncMap{"bad": 1}, typ); err == nil {
		t.Error("Compile with a non-function in FuncMap succeeded")
	}
}

func TestExecuteErrorKinds(t *testing.T) {
	ft, err := Compile("t", `a{{.NilPtr.Name}}b`, nil, reflect.TypeFor[*corpusData]())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	err = ft.Execute(&buf, &corpusData{})
	var ee texttemplate.ExecError
	if !errors.As(err, &ee) {
		t.Fatalf("error %v (%T) is not a text/template ExecError", err, err)
	}
	if !strings.Contains(err.Error(), "nil pointer") || buf.String() != "a" {
		t.Errorf("err = %v, partial output %q", err, buf.String())
	}
	// Errors from functions are wrapped so callers can inspect them.
	sentinel := errors.New("sentinel")
	ft, err = Compile("t", `{{f}}`, template.FuncMap{"f": func() (string, error) { return "", sentinel }}, reflect.TypeFor[*corpusData]())
	if err != nil {
		t.Fatal(err)
	}
	if err := ft.Execute(&buf, &corpusData{}); !errors.Is(err, sentinel) {
		t.Errorf("Execute error %v does not wrap the function's error", err)
	}
}

func TestFallbackPaths(t *testing.T) {
	src := `<p>{{.S}}</p>`
	ft, err := Compile("t", src, nil, reflect.TypeFor[*corpusData]())
	if err != nil || !ft.Fast() || ft.FallbackReason() != "" {
		t.Fatalf("Compile: %v, fast=%v reason=%q", err, ft.Fast(), ft.FallbackReason())
	}
	ht := template.Must(template.New("t").Parse(src))
	// Data of another type than compiled for, and nil, go through
	// html/template and still match it.
	for _, data := range []any{corpusData{S: "<v>"}, map[string]any{"S": "<m>"}, nil, 42} {
		if diff := renderBoth(ht, ft, data); diff != "" {
			t.Errorf("%T: %s", data, diff)
		}
	}
	// A template html/template derives for a script context falls back.
	ft, err = Compile("t", `<script>var x = {{template "v" .}};</script>{{define "v"}}{{.S}}{{end}}`, nil, reflect.TypeFor[*corpusData]())
	if err != nil {
		t.Fatal(err)
	}
	if ft.Fast() || !strings.Contains(ft.FallbackReason(), "derived") {
		t.Errorf("fast=%v reason=%q, want fallback for derived template", ft.Fast(), ft.FallbackReason())
	}
	ht = template.Must(template.New("t").Parse(`<script>var x = {{template "v" .}};</script>{{define "v"}}{{.S}}{{end}}`))
	if diff := renderBoth(ht, ft, &corpusData{S: `a"b</script>`}); diff != "" {
		t.Error(diff)
	}
}

// TestCompileRunsNoUserCode checks that forcing html/template's escaping at
// compile time does not call the template's functions.
func TestCompileRunsNoUserCode(t *testing.T) {
	calls := 0
	funcs := template.FuncMap{"count": func() string { calls++; return "" }}
	if _, err := Compile("t", `{{count}}<p>{{.S}}</p>`, funcs, reflect.TypeFor[*corpusData]()); err != nil {
		t.Fatal(err)
	}
	if calls != 0 {
		t.Errorf("Compile called a template function %d times", calls)
	}
}

// TestCompileRunsNoTemplateCode checks that forcing html/template's
// escaping at compile time runs none of the template: not a loop that
// writes nothing, nor template calls that double.
func TestCompileRunsNoTemplateCode(t *testing.T) {
	for _, src := range []string{
		`{{range 4611686018427387904}}{{end}}<p>{{.S}}</p>`,
		`{{range $i := 4611686018427387904}}{{$x := $i}}{{end}}`,
		doubling(62),
	} {
		ft, err := Compile("t", src, nil, reflect.TypeFor[*corpusData]())
		if err != nil {
			t.Fatalf("%.40q: %v", src, err)
		}
		if !ft.Fast() {
			t.Errorf("%.40q fell back: %s", src, ft.FallbackReason())
		}
	}
}

func TestExecuteAppends(t *testing.T) {
	ft, err := Compile("t", `<b>{{.S}}</b>`, nil, reflect.TypeFor[*corpusData]())
	if err != nil {
		t.Fatal(err)
	}
	buf := bytes.NewBufferString("prefix:")
	for i := 0; i < 3; i++ {
		if err := ft.Execute(buf, &corpusData{S: strings.Repeat("<x>", i*1000)}); err != nil {
			t.Fatal(err)
		}
	}
	want := "prefix:<b></b><b>" + strings.Repeat("&lt;x&gt;", 1000) + "</b><b>" + strings.Repeat("&lt;x&gt;", 2000) + "</b>"
	if buf.String() != want {
		t.Errorf("appended output differs (len %d, want %d)", buf.Len(), len(want))
	}
}

type panicky struct{ Mode int }

func (p panicky) String() string {
	if p.Mode == 1 {
		panic("String exploded")
	}
	return "fine"
}

func (p panicky) MarshalJSON() ([]byte, error) {
	if p.Mode == 2 {
		panic("MarshalJSON exploded")
	}
	if p.Mode == 3 {
		return nil, errors.New("cannot */ marshal <script>")
	}
	return []byte(`{"ok":true}`), nil
}

type panickyData struct{ P, Q panicky }

// TestPanickingMethods checks that panics in user methods invoked while
// escaping become execution errors (or output) exactly when they do in
// html/template.
func TestPanickingMethods(t *testing.T) {
	for _, src := range []string{
		`<p>{{.P}}</p>`,
		`<script>var x = {{.P}};</script>`,
		`<a title="{{.P}}" href="/{{.P}}">x</a>`,
		`{{printf "%v|%s" .P .Q}}`,
	} {
		ht := template.Must(template.New("t").Parse(src))
		ft, err := Compile("t", src, nil, reflect.TypeFor[*panickyData]())
		if err != nil || !ft.Fast() {
			t.Fatalf("%q: %v %v", src, err, ft.FallbackReason())
		}
		for mode := 0; mode < 4; mode++ {
			d := &panickyData{P: panicky{mode}, Q: panicky{(mode + 1) % 4}}
			if diff := renderBoth(ht, ft, d); diff != "" {
				t.Errorf("%q mode %d: %s", src, mode, diff)
			}
		}
	}
}
