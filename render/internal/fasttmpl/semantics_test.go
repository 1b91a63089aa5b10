package fasttmpl

import (
	"bytes"
	"html/template"
	"iter"
	"reflect"
	"strings"
	"testing"
)

// edgeData carries values for the edge-case templates below.
type edgeData struct {
	corpusData
	Seq   iter.Seq[int]
	Seq2  iter.Seq2[string, int]
	AnyM  map[any]string
	PtrM  *map[string]int
	Arr   [3]string
	PArr  *[2]int
	Bytes []byte
	Iface interface{ String() string }
	Deep  ***corpusItem
	Embed
	*PEmbed
}

type Embed struct{ EmbName string }
type PEmbed struct{ PName string }

func edgeVariant(i int) *edgeData {
	d := &edgeData{corpusData: *corpusVariant(i)}
	n := i % 4
	d.Seq = func(yield func(int) bool) {
		for k := 0; k < n; k++ {
			if !yield(k * 10) {
				return
			}
		}
	}
	d.Seq2 = func(yield func(string, int) bool) {
		for k := 0; k < n; k++ {
			if !yield(strings.Repeat("k", k+1), k) {
				return
			}
		}
	}
	d.AnyM = map[any]string{"a": "x", 2: "two", 1.5: "f"}
	if i%2 == 0 {
		m := map[string]int{"one": 1}
		d.PtrM = &m
		d.PArr = &[2]int{4, 5}
		d.PEmbed = &PEmbed{PName: "pe<>"}
		it := &corpusItem{Name: "deep"}
		pit := &it
		d.Deep = &pit
	}
	d.Arr = [3]string{"x", d.S, "z"}
	d.Bytes = []byte(d.T)
	if i%3 == 0 {
		d.Iface = stringerT{"if"}
	}
	d.EmbName = "emb&"
	return d
}

var edgeTemplates = []string{
	// Static typing that the unsafe field reads rely on: a variable
	// assigned values of different types, and "and"/"or" of mixed types,
	// must not be read at the offsets of the wrong type.
	`{{$x := .Item}}{{if .B}}{{$x = .Val}}{{end}}{{$x.Name}} {{$x.Price}}`,
	`{{$x := .Val}}{{range .PItems}}{{$x = .}}{{end}}{{$x.Name}}{{$x.Rating}}`,
	`{{$x := .Val}}{{with .Item}}{{$x = .Sub}}{{end}}{{with $x}}{{.Name}}{{end}}`,
	`{{(or .NilPtr .Val).Name}} {{(and .Item .Val).Name}} {{(or .Val .Item).Price}}`,
	`{{range $i, $x := .Items}}{{$x.Name}}{{$x = $.Item}}{{$x.Price}}{{end}}`,
	`{{define "n"}}{{.Name}}/{{.Price}}{{end}}{{template "n" .Val}}{{template "n" .Item}}{{range .PItems}}{{template "n" .}}{{end}}`,
	// Variable scoping quirks: vars from an if-branch are visible to the
	// parser in the else branch but not at run time.
	`{{$x := "outer"}}{{if .B}}{{$x := "inner"}}{{$x}}{{else}}{{$x}}{{end}}{{$x}}`,
	`{{range $i, $v := .Empty}}{{else}}[{{$i}}|{{$v}}]{{end}}{{range $v := .Strs}}{{$v}}{{else}}{{$v}}{{end}}`,
	`{{$x := 0}}{{range $x = .Strs}}{{$x}};{{end}}{{$x}}`,
	`{{$i := 9}}{{$v := "v"}}{{range $i, $v = .Strs}}{{$i}}{{$v}};{{end}}{{$i}}{{$v}}`,
	`{{$ = .Item}}{{with $}}{{.}}{{end}}`,
	`{{define "t"}}[{{.}}]{{end}}{{template "t"}}{{template "t" .N}}{{template "t" $x := .S}}{{$x}}`,
	`{{if $x := .S}}{{$x}}{{else}}{{$x}}!{{end}}`,
	`{{with $x := .Item}}{{$x.Name}}{{end}}{{with $x := .NilPtr}}{{$x.Name}}{{else}}{{$x}}{{end}}`,
	// Iterators and unusual collections.
	`{{range .Seq}}{{.}},{{else}}none{{end}}|{{range $k, $v := .Seq2}}{{$k}}={{$v}};{{end}}|{{range $k := .Seq2}}{{$k}}{{end}}`,
	`{{range $k, $v := .AnyM}}{{$k}}:{{$v}} {{end}}`,
	`{{range $k, $v := .PtrM}}{{$k}}={{$v}}{{end}}{{.PtrM}}`,
	`{{range .Arr}}{{.}}{{end}} {{index .Arr 1}} {{len .Arr}} {{slice .Arr 1 2}} {{range .PArr}}{{.}}{{end}}`,
	`{{.Bytes}} {{printf "%s" .Bytes}} {{len .Bytes}} {{index .Bytes 0}}`,
	`{{range 0}}x{{else}}empty{{end}}{{range -2}}x{{else}}neg{{end}}`,
	// Errors that must happen in both engines.
	`{{.Item.Greet}}`,
	`{{.S.Foo}}`,
	`{{index .M 1}}`,
	`{{len 3}}`,
	`{{printf}}`,
	`{{eq .S}}`,
	`{{lt .S 1}}`,
	`{{lt .B .B}}`,
	`{{eq .Items .Items}}`,
	`{{eq .Item .Item}} {{eq .NilPtr nil}} {{ne .Item .NilPtr}}`,
	`{{not}}`,
	`{{and}}`,
	`{{slice .S 2 1}}`,
	`{{slice .S 0 1 2}}`,
	`{{index .Strs -1}}`,
	`{{index nil 1}}`,
	`{{call .S}}`,
	`{{call .Fn}}`,
	`{{call .Fn 1}}`,
	`{{.Fn .S}}`,
	`{{.N 1}}`,
	`{{.M.a 1}}`,
	`{{1 | .N}}`,
	`{{$x := 1}}{{$x 2}}`,
	`{{(.S) 1}}`,
	`{{template "missing"}}`,
	`{{.Item.Sub.Sub.Sub.Name}}`,
	`{{.Deep}} {{.Deep.Name}}`,
	`{{.EmbName}} {{.PName}}`,
	`{{.Iface}} {{.Iface.String}} {{if .Iface}}y{{end}}`,
	`{{.Val.Greet "a"}} {{.Val.Greet .S}} {{.Val.Greet .Ptr}}`,
	`{{.Val.Greet 1}}`,
	`{{.Val.Greet nil}}`,
	`{{add 1 2}} {{add -1 .N}} {{3 | add 4}}`,
	`{{add 1}}`,
	`{{add 1 2 3}}`,
	`{{add "a" 1}}`,
	`{{add 1.5 1}}`,
	`{{add .U 1}}`,
	`{{upper .Ptr}}`,
	`{{upper .NilStr}}`,
	`{{upper 1}}`,
	`{{upper nil}}`,
	`{{upper .Named}}`,
	`{{upper .MA.x}}`,
	`{{variadic .S .T}} {{"x" | variadic "y"}} {{anyf .Item}} {{anyf .Empty}}`,
	`{{boom}}`,
	`{{. | printf "%T"}}`,
	// Builtins in odd positions.
	`{{.S | print "x" | printf "%s|%s" "y"}} {{.N | eq 0 | not}} {{.S | len | eq 3}}`,
	`{{and .S .N .B}} {{or .NilPtr .Empty 0 "" }} {{or 1 .NilPtr.Name}} {{and 0 .NilPtr.Name}}`,
	`{{and 1 .NilPtr.Name}}`,
	`{{and .Item .Item.Name | printf "%v"}} {{or .S "default"}}`,
	`{{if and .Item (eq .Item.Name "a")}}A{{else}}notA{{end}}`,
	`{{print nil}} {{print .NilPtr}} {{print .Empty}} {{print .M.missing}} {{printf "%v" .MA.missing}} {{html .MA.missing}}`,
	`{{.MA.missing | html}} {{.MA.missing | js}} {{.MA.missing | urlquery}} <a href="/?q={{.MA.missing}}">x</a>`,
	`{{print 1 2 "a" "b" 3.5 true}} {{println}} {{print}}{{printf "%v %d" 1}}`,
	`{{eq .U 200}} {{lt .I64 .N}} {{eq .S "a" "b" .T}} {{le .U 3}} {{gt .F 1.5}} {{ge .S "m"}} {{eq .N .U}} {{lt .N .U}} {{lt .U .N}} {{eq .NilPtr nil}}`,
	`{{eq 1 1.0}}`,
	`{{ne 1 "a"}}`,
	`{{eq .Item.Sub .Item.Sub}} {{eq .M .M}}`,
	`{{"%d items" | printf}} {{printf "%s" | print}}`,
	`{{1 | printf "%d %d" 2}}`,
	`<a href="{{.URL | urlquery}}">u</a> <a href="{{.URL | html}}">h</a>`,
	// Break and continue in nested constructs.
	`{{range $i, $x := .Strs}}{{range $.Strs}}{{if eq . "three"}}{{break}}{{end}}.{{end}}{{if eq $i 0}}{{continue}}{{end}}{{$x}}{{end}}`,
	// Comments, trim markers, empty actions.
	"{{/* c */}}a {{- /* c */ -}} b{{- \"\" -}}c",
	// Parenthesized declarations fall back to html/template.
	`{{print ($x := .S) $x}}`,
	// Constants in holes and contexts.
	`{{"<b>"}} {{1e3}} {{0b101}} {{0o17}} {{1_000}} {{'\n'}} {{true}} <a title="{{"\""}}">x</a> <script>var x = {{"</script>"}};</script>`,
	`{{.}}`,
}

func TestEdgeSemantics(t *testing.T) {
	data := make([]*edgeData, 12)
	for i := range data {
		data[i] = edgeVariant(i)
	}
	for k, src := range edgeTemplates {
		name := "edge"
		ht, herr := template.New(name).Funcs(corpusFuncs).Parse(src)
		for _, typ := range []reflect.Type{reflect.TypeFor[*edgeData](), reflect.TypeFor[edgeData]()} {
			ft, ferr := Compile(name, src, corpusFuncs, typ)
			if herr != nil {
				if ferr == nil {
					t.Errorf("template %d %q: html/template parse error %v, Compile succeeded", k, src, herr)
				}
				continue
			}
			if ferr != nil {
				// Compile reports escaping errors; html/template
				// must then fail every execution.
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
				var v any = d
				if typ.Kind() == reflect.Struct {
					v = *d
				}
				if diff := renderBoth(ht, ft, v); diff != "" {
					t.Errorf("template %d %q (%v) variant %d: %s", k, src, typ, i, diff)
				}
			}
		}
	}
}
