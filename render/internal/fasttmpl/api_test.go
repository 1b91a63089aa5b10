package fasttmpl

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"reflect"
	"slices"
	"strings"
	"testing"
	texttemplate "text/template"

	"github.com/google/go-cmp/cmp"

	"herald/shared/emailtemplate"
)

func TestCompileErrors(t *testing.T) {
	for _, src := range []string{
		`{{.Customer`,                           // parse error
		`{{if .Customer.Email}}x`,               // unclosed action
		`<a href="{{.Brand.URL}}`,               // ends in a non-text context
		`<a {{if .Subject}}href="{{end}}x">`,    // branches end in different contexts
		`{{template "nope"}}`,                   // undefined template
		`{{range $a, $b, $c := .Items}}{{end}}`, // too many variables
	} {
		_, err := Compile("t", src)
		if err == nil {
			t.Errorf("Compile(%q) succeeded, want error", src)
			continue
		}
		// html/template must reject it too (at parse or execution).
		ht, perr := template.New("t").Parse(src)
		if perr == nil {
			if eerr := ht.Execute(&bytes.Buffer{}, &emailtemplate.Data{}); eerr == nil {
				t.Errorf("Compile(%q) failed with %v but html/template renders it", src, err)
			}
		}
	}
	// Templates without output are valid for html/template.
	for _, src := range []string{``, `{{define "x"}}only a define{{end}}`, `{{/* c */}}`} {
		ft, err := Compile("t", src)
		if err != nil {
			t.Errorf("Compile(%q): %v", src, err)
			continue
		}
		if diff := renderBoth(template.Must(template.New("t").Parse(src)), ft, &emailtemplate.Data{}); diff != "" {
			t.Errorf("%q: %s", src, diff)
		}
	}
}

// refused are templates emailtemplate.Check refuses, one for each thing
// the engine does not implement.
var refused = []struct{ what, src string }{
	{"call", `{{call .Customer.FirstName}}`},
	{"a function that is not a builtin", `{{upper .Customer.FirstName}}`},
	{"a function in a pipeline", `{{.Customer.FirstName | upper}}`},
	{"a range over a number", `{{range 3}}{{.}}{{end}}`},
	{"a range over a variable's number", `{{$n := 5}}{{range $n}}{{end}}`},
	{"a range over a field that holds no list", `{{range .Job.Year}}{{end}}`},
	{"a range over a struct", `{{range .Customer}}{{end}}`},
	{"a range over dot", `{{with .Items}}{{range .}}{{end}}{{end}}`},
	{"a range over a computed value", `{{range (slice .Items 1)}}{{end}}`},
	{"a range over a function's result", `{{range print .Items}}{{end}}`},
	{"loops three deep", `{{range .Items}}{{range $.Items}}{{range $.Items}}{{end}}{{end}}{{end}}`},
	{"loops three deep through a template", `{{define "l"}}{{range .Items}}{{end}}{{end}}{{range .Items}}{{range $.Items}}{{template "l" $}}{{end}}{{end}}`},
	{"recursion", `{{define "t"}}{{template "t" .}}{{end}}{{template "t" .}}`},
	{"mutual recursion", `{{define "a"}}{{template "b"}}{{end}}{{define "b"}}{{template "a"}}{{end}}{{template "a"}}`},
	{"template calls nested too deep", nested(emailtemplate.MaxCallDepth + 1)},
	{"too many template calls", doubling(9)},
}

// nested is templates whose calls nest levels deep.
func nested(levels int) string {
	var b strings.Builder
	for i := range levels - 1 {
		fmt.Fprintf(&b, `{{define "n%d"}}{{template "n%d"}}{{end}}`, i, i+1)
	}
	fmt.Fprintf(&b, `{{define "n%d"}}x{{end}}{{template "n0"}}`, levels-1)
	return b.String()
}

// TestCompileRefuses checks that Compile and CompileText refuse what
// emailtemplate.Check refuses, saying what: the engine implements nothing
// else, and no such template reaches render.
func TestCompileRefuses(t *testing.T) {
	for _, tc := range refused {
		t.Run(tc.what, func(t *testing.T) {
			problems := emailtemplate.Check("t", tc.src)
			if len(problems) == 0 {
				t.Fatalf("emailtemplate.Check accepts %q", tc.src)
			}
			for name, compile := range map[string]func(string, string) (*Template, error){"Compile": Compile, "CompileText": CompileText} {
				ft, err := compile("t", tc.src)
				if !errors.Is(err, ErrNotAllowed) || ft != nil {
					t.Errorf("%s: %v, want ErrNotAllowed", name, err)
					continue
				}
				if !strings.Contains(err.Error(), problems[0]) {
					t.Errorf("%s: error %q does not say %q", name, err, problems[0])
				}
			}
		})
	}
}

// TestCompileAcceptsCheckLimits compiles templates right at Check's limits.
func TestCompileAcceptsCheckLimits(t *testing.T) {
	for _, src := range []string{
		nested(emailtemplate.MaxCallDepth),
		doubling(8),
		`{{range .Items}}{{range $.Items}}{{end}}{{end}}`,
		`{{range slice .Items 1}}{{end}}{{range index $.Items}}{{end}}{{range $.Items}}{{end}}`,
	} {
		ft, err := Compile("t", src)
		if err != nil {
			t.Errorf("%.60q: %v", src, err)
			continue
		}
		if !ft.Fast() {
			t.Errorf("%.60q fell back: %s", src, ft.FallbackReason())
		}
	}
}

// TestBuiltinsAreAllowedFuncs checks that the engine implements exactly
// the functions Check lets a template call (and html/template's
// _eval_args_): a function added to emailtemplate.AllowedFuncs must be
// implemented here first, and one taken out of it deleted here.
func TestBuiltinsAreAllowedFuncs(t *testing.T) {
	var got []string
	for name := range builtinCompilers {
		if name != "_eval_args_" {
			got = append(got, name)
		}
	}
	want := append([]string(nil), emailtemplate.AllowedFuncs...)
	slices.Sort(got)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("builtins differ from emailtemplate.AllowedFuncs (-allowed +implemented):\n%s", diff)
	}
}

// TestDataIsPlain checks what the engine relies on instead of implementing
// it: every type reachable from emailtemplate.Data is a struct, a string, a
// bool, a number or a slice of structs, and none has methods. So no
// template can reach a method, a map, an interface or a nil pointer but
// the data's own; should Data change, the engine must learn the new case
// (with differential tests) before this test is changed.
func TestDataIsPlain(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var visit func(t2 reflect.Type, path string)
	visit = func(typ reflect.Type, path string) {
		if seen[typ] {
			return
		}
		seen[typ] = true
		if typ.NumMethod() > 0 || reflect.PointerTo(typ).NumMethod() > 0 {
			t.Errorf("%s (%s) has methods", path, typ)
		}
		switch typ.Kind() {
		case reflect.String, reflect.Bool, reflect.Int, reflect.Float64:
		case reflect.Slice:
			if typ.Elem().Kind() != reflect.Struct {
				t.Errorf("%s is a slice of %s", path, typ.Elem())
			}
			visit(typ.Elem(), path+"[]")
		case reflect.Struct:
			for i := range typ.NumField() {
				f := typ.Field(i)
				if !f.IsExported() || f.Anonymous {
					t.Errorf("%s.%s is unexported or embedded", path, f.Name)
				}
				visit(f.Type, path+"."+f.Name)
			}
		default:
			t.Errorf("%s is a %s", path, typ.Kind())
		}
	}
	visit(reflect.TypeFor[emailtemplate.Data](), "Data")
}

func TestExecuteErrorKinds(t *testing.T) {
	ft, err := Compile("t", `a{{.Customer.FirstName}}b`)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	err = ft.Execute(&buf, nil)
	var ee texttemplate.ExecError
	if !errors.As(err, &ee) {
		t.Fatalf("error %v (%T) is not a text/template ExecError", err, err)
	}
	if !strings.Contains(err.Error(), "nil pointer") || buf.String() != "a" {
		t.Errorf("err = %v, partial output %q", err, buf.String())
	}
	ht := template.Must(template.New("t").Parse(`a{{.Customer.FirstName}}b`))
	if diff := renderBoth(ht, ft, nil); diff != "" {
		t.Error(diff)
	}
	// A builtin's error fails the execution where html/template fails.
	ft, err = Compile("t", `x{{index .Items 10}}`)
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if err := ft.Execute(&buf, corpusVariant(1)); !errors.As(err, &ee) || !strings.Contains(err.Error(), "index out of range") {
		t.Errorf("Execute error %v, want index out of range", err)
	}
	if buf.String() != "x" {
		t.Errorf("partial output %q", buf.String())
	}
}

func TestFallbackPaths(t *testing.T) {
	ft, err := Compile("t", `<p>{{.Customer.FirstName}}</p>`)
	if err != nil || !ft.Fast() || ft.FallbackReason() != "" {
		t.Fatalf("Compile: %v, fast=%v reason=%q", err, ft.Fast(), ft.FallbackReason())
	}
	// A template html/template derives for a script context falls back.
	src := `<script>var x = {{template "v" .}};</script>{{define "v"}}{{.Customer.FirstName}}{{end}}`
	ft, err = Compile("t", src)
	if err != nil {
		t.Fatal(err)
	}
	if ft.Fast() || !strings.Contains(ft.FallbackReason(), "derived") {
		t.Errorf("fast=%v reason=%q, want fallback for derived template", ft.Fast(), ft.FallbackReason())
	}
	ht := template.Must(template.New("t").Parse(src))
	if diff := renderBoth(ht, ft, &emailtemplate.Data{Customer: emailtemplate.Customer{FirstName: `a"b</script>`}}); diff != "" {
		t.Error(diff)
	}
}

// TestCompileRunsNoTemplateCode checks that forcing html/template's
// escaping at compile time runs none of the template: not loops that
// write nothing, nor template calls that double.
func TestCompileRunsNoTemplateCode(t *testing.T) {
	for _, src := range []string{
		`{{range .Items}}{{range $.Items}}{{end}}{{end}}<p>{{.Customer.FirstName}}</p>`,
		`{{range $i := .Items}}{{$x := $i}}{{end}}`,
		doubling(8),
	} {
		ft, err := Compile("t", src)
		if err != nil {
			t.Fatalf("%.40q: %v", src, err)
		}
		if !ft.Fast() {
			t.Errorf("%.40q fell back: %s", src, ft.FallbackReason())
		}
	}
}

func TestExecuteAppends(t *testing.T) {
	ft, err := Compile("t", `<b>{{.Customer.FirstName}}</b>`)
	if err != nil {
		t.Fatal(err)
	}
	buf := bytes.NewBufferString("prefix:")
	for i := 0; i < 3; i++ {
		if err := ft.Execute(buf, &emailtemplate.Data{Customer: emailtemplate.Customer{FirstName: strings.Repeat("<x>", i*1000)}}); err != nil {
			t.Fatal(err)
		}
	}
	want := "prefix:<b></b><b>" + strings.Repeat("&lt;x&gt;", 1000) + "</b><b>" + strings.Repeat("&lt;x&gt;", 2000) + "</b>"
	if buf.String() != want {
		t.Errorf("appended output differs (len %d, want %d)", buf.Len(), len(want))
	}
}
