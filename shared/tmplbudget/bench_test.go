package tmplbudget_test

import (
	"bytes"
	htmltemplate "html/template"
	"io"
	"testing"

	"herald/shared/tmplbudget"
)

// BenchmarkLoop measures a loop of 100 short iterations on html/template
// and on a Runner of it: the cost of counting steps on the standard engine.
func BenchmarkLoop(b *testing.B) {
	src := `{{range .Items}}<li>{{.Name}}</li>{{end}}`
	d := testData()
	d.Items = append(d.Items, d.Items...)
	d.Items = append(d.Items, d.Items[:20]...)
	b.Run("html_template", func(b *testing.B) {
		t := htmltemplate.Must(htmltemplate.New("t").Parse(src))
		for b.Loop() {
			if err := t.Execute(io.Discard, d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("runner", func(b *testing.B) {
		r, err := tmplbudget.NewHTML(htmltemplate.Must(htmltemplate.New("t").Parse(src)), nil)
		if err != nil {
			b.Fatal(err)
		}
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			if err := r.Execute(&buf, d, tmplbudget.Limits{Steps: 1000, Bytes: 1 << 20}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
