package fasttmpl

import (
	"bytes"
	"html/template"
	"strings"
	"testing"
)

var edgeTemplates = []string{
	// Static typing that the unsafe field reads rely on: a variable
	// assigned values of different types, and "and"/"or" of mixed types,
	// must not be read at the offsets of the wrong type.
	`{{$x := .Brand}}{{if .Customer.Email}}{{range .Items}}{{$x = .}}{{end}}{{end}}{{$x.URL}}`,
	`{{$x := .Brand}}{{range .Items}}{{$x = .}}{{end}}{{$x.URL}}{{$x.Name}}`,
	`{{with .Items}}{{(or (index . 0) $.Brand).URL}} {{(and $.Brand (index . 0)).URL}}{{end}}`,
	`{{range $i, $x := .Items}}{{$x.Title}}{{$x = $.Brand}}{{$x.URL}}{{end}}`,
	`{{define "n"}}{{.URL}}{{end}}{{template "n" .Brand}}{{range .Items}}{{template "n" .}}{{end}}{{template "n" .Recipient}}`,
	// Variable scoping quirks: vars from an if-branch are visible to the
	// parser in the else branch but not at run time.
	`{{$x := "outer"}}{{if .Customer.Email}}{{$x := "inner"}}{{$x}}{{else}}{{$x}}{{end}}{{$x}}`,
	`{{range $i, $v := slice .Items 0 0}}{{else}}[{{$i}}|{{$v}}]{{end}}{{range $v := .Items}}{{$v.SKU}}{{else}}{{$v}}{{end}}`,
	`{{$x := 0}}{{range $x = .Items}}{{$x.SKU}};{{end}}{{$x}}`,
	`{{$i := 9}}{{$v := "v"}}{{range $i, $v = .Items}}{{$i}}{{$v.SKU}};{{end}}{{$i}}{{$v}}`,
	`{{$ = .Customer}}{{with $}}{{.}}{{end}}`,
	`{{define "t"}}[{{.}}]{{end}}{{template "t"}}{{template "t" .Job.Year}}{{template "t" $x := .Customer.FirstName}}{{$x}}`,
	`{{if $x := .Customer.FirstName}}{{$x}}{{else}}{{$x}}!{{end}}`,
	`{{with $x := .Customer}}{{$x.FirstName}}{{end}}{{with $x := .Customer.Email}}{{$x}}{{else}}{{$x}}-{{end}}`,
	`{{template "t"}}{{define "t"}}{{.Title}} {{len .}}{{end}}`,
	// Lists and strings.
	`{{.Items}} {{printf "%v" .Items}} {{len .Items}} {{slice .Items 1 2}} {{slice .Items 1 2 2}}`,
	`{{index .Customer.FirstName 0}} {{index .Customer.FirstName 0 | printf "%c"}} {{eq (index .Customer.FirstName 0) 65}} {{lt (index .Customer.FirstName 0) 100}}`,
	// Loops over what Check lets through but is no list at run time.
	`{{range index .Items 0}}x{{end}}`,
	`{{define "r"}}{{range .Items}}x{{else}}none{{end}}{{end}}{{template "r"}}`,
	`{{define "r"}}{{range .Items}}x{{end}}{{end}}{{template "r" .Customer}}`,
	// Errors that must happen in both engines.
	`{{.Customer.FirstName.Foo}}`,
	`{{index .Items "a"}}`,
	`{{len 3}}`,
	`{{printf}}`,
	`{{printf 1}}`,
	`{{printf nil}}`,
	`{{.Job.Year | printf}}`,
	`{{eq .Subject}}`,
	`{{lt .Subject 1}}`,
	`{{lt true true}}`,
	`{{eq .Items .Items}}`,
	`{{eq $ $}} {{eq .Customer .Customer}}`,
	`{{not}}`,
	`{{and}}`,
	`{{slice .Subject 2 1}}`,
	`{{slice .Subject 0 1 2}}`,
	`{{index .Items -1}}`,
	`{{index nil 1}}`,
	`{{.Job.Year 1}}`,
	`{{.Customer.ID 1}}`,
	`{{1 | .Job.Year}}`,
	`{{$x := 1}}{{$x 2}}`,
	`{{(.Subject) 1}}`,
	`{{(index .Items 0).Title 1}}`,
	`{{(index .Items 0).Nope}}`,
	`{{$.Nope}}`,
	`{{with .Customer}}{{.Nope}}{{end}}`,
	`{{template "missing"}}`,
	`{{. | printf "%T"}}`,
	// Builtins in odd positions.
	`{{.Customer.FirstName | print "x" | printf "%s|%s" "y"}} {{.Job.Year | eq 0 | not}} {{.Subject | len | eq 3}}`,
	`{{and .Subject .Job.Year .Customer}} {{or .Customer.Email .Items 0 ""}}`,
	`{{and .Customer.ID .Customer.Email | printf "%v"}} {{or .Subject "default"}}`,
	`{{if and .Items (eq (index .Items 0).SKU "a")}}A{{else}}notA{{end}}`,
	`{{print nil}} {{print .Items}} {{print $}} {{html nil}} {{urlquery $}}`,
	`{{print 1 2 "a" "b" 3.5 true}} {{println}} {{print}}{{printf "%v %d" 1}}`,
	`{{eq .Job.Year 200}} {{eq .Subject "a" "b" .Preheader}} {{le .Job.Year 3}} {{ge .Subject "m"}}`,
	`{{eq 1 1.0}}`,
	`{{ne 1 "a"}}`,
	`{{"%d items" | printf}} {{printf "%s" | print}}`,
	`{{1 | printf "%d %d" 2}}`,
	`<a href="{{.Brand.URL | urlquery}}">u</a> <a href="{{.Brand.URL | html}}">h</a>`,
	// Break and continue in nested constructs.
	`{{range $i, $x := .Items}}{{range $.Items}}{{if eq .SKU "c"}}{{break}}{{end}}.{{end}}{{if eq $i 0}}{{continue}}{{end}}{{$x.SKU}}{{end}}`,
	// Comments, trim markers, empty actions.
	"{{/* c */}}a {{- /* c */ -}} b{{- \"\" -}}c",
	// Parenthesized declarations fall back to html/template.
	`{{print ($x := .Subject) $x}}`,
	// Constants in holes and contexts.
	`{{"<b>"}} {{1e3}} {{0b101}} {{0o17}} {{1_000}} {{'\n'}} {{true}} <a title="{{"\""}}">x</a> <script>var x = {{"</script>"}};</script>`,
	`{{.}}`,
}

func TestEdgeSemantics(t *testing.T) {
	data := corpusVariants()[:12]
	for k, src := range edgeTemplates {
		name := "edge"
		ht, herr := template.New(name).Parse(src)
		ft, ferr := Compile(name, src)
		if herr != nil {
			if ferr == nil {
				t.Errorf("template %d %q: html/template parse error %v, Compile succeeded", k, src, herr)
			}
			continue
		}
		if ferr != nil {
			// Compile reports escaping errors; html/template must
			// then fail every execution.
			var b bytes.Buffer
			if err := ht.Execute(&b, data[0]); err == nil {
				t.Errorf("template %d %q: Compile failed (%v) but html/template executes", k, src, ferr)
			}
			continue
		}
		if !ft.Fast() && !strings.Contains(src, "($x :=") {
			t.Errorf("template %d %q: unexpected fallback: %s", k, src, ft.FallbackReason())
		}
		for i, d := range data {
			if diff := renderBoth(ht, ft, d); diff != "" {
				t.Errorf("template %d %q variant %d: %s", k, src, i, diff)
			}
		}
	}
}
