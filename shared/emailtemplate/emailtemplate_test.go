package emailtemplate_test

import (
	"errors"
	"strings"
	"testing"

	"herald/shared/emailtemplate"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name, src string
		want      string // a substring of the problem; "" for none
	}{
		{"builtins", `{{if and .Items (gt (len .Items) 1)}}{{printf "%s" .Customer.FirstName | html}}{{index .Items 0}}{{end}}`, ""},
		{"call", `{{call .Customer.FirstName}}`, `function "call" is not allowed`},
		{"unknown function", `{{exec "rm -rf /"}}`, `function "exec" is not allowed`},
		{"disallowed function in a nested pipeline", `{{if (env "HOME")}}x{{end}}`, `function "env" is not allowed`},
		{"range over the items", `{{range $i, $p := .Items}}{{$p.Title}}{{end}}{{range slice .Items 1}}{{.SKU}}{{end}}`, ""},
		{"range over a number", `{{range .Job.Year}}x{{end}}`, "must range over a field holding a list"},
		{"range over a literal", `{{range 1000000000}}x{{end}}`, "must range over a field holding a list"},
		{"range over a computed value", `{{range len .Items}}x{{end}}`, "must range over a field holding a list"},
		{"two nested loops", `{{range .Items}}{{range $.Items}}x{{end}}{{end}}`, ""},
		{"three nested loops", `{{range .Items}}{{range $.Items}}{{range $.Items}}x{{end}}{{end}}{{end}}`, "loops nest 3 deep"},
		{"nesting through templates", `{{define "card"}}{{range $.Items}}{{range $.Items}}.{{end}}{{end}}{{end}}{{range .Items}}{{template "card" $}}{{end}}`, "loops nest 3 deep"},
		{"recursion", `{{define "a"}}{{template "b" .}}{{end}}{{define "b"}}{{template "a" .}}{{end}}{{template "a" .}}`, "recursion is not allowed"},
		{"syntax", `{{if}}`, "missing value for if"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			problems := emailtemplate.Check("html", tc.src)
			if tc.want == "" {
				if len(problems) > 0 {
					t.Fatalf("problems %q, want none", problems)
				}
				return
			}
			if len(problems) == 0 || !strings.Contains(strings.Join(problems, "\n"), tc.want) {
				t.Fatalf("problems %q, want one containing %q", problems, tc.want)
			}
		})
	}
}

func source() emailtemplate.Source {
	return emailtemplate.Source{FromName: "Acme", FromEmail: "deals@acme.example", Subject: "Hi {{.Customer.FirstName}}",
		HTML: `<p>{{range .Items}}{{.Title}}{{end}}</p>`, Text: "{{range .Items}}{{.Title}}\n{{end}}"}
}

func TestParseRejectsUntrustedCode(t *testing.T) {
	for _, part := range []string{"subject", "preheader", "html", "text"} {
		src := source()
		bad := `{{call .Customer.FirstName}}`
		switch part {
		case "subject":
			src.Subject = bad
		case "preheader":
			src.Preheader = bad
		case "html":
			src.HTML = bad
		case "text":
			src.Text = bad
		}
		_, err := emailtemplate.Parse(src)
		var pe *emailtemplate.ProblemError
		if !errors.As(err, &pe) || !strings.Contains(pe.Error(), part+`: function "call" is not allowed`) {
			t.Errorf("%s: %v", part, err)
		}
	}
}

func TestRenderOutputBudget(t *testing.T) {
	tmpl, err := emailtemplate.Parse(source())
	if err != nil {
		t.Fatal(err)
	}
	d := emailtemplate.Sample()
	var out emailtemplate.Rendered
	if err := tmpl.Render(d, &out); err != nil {
		t.Fatalf("sample: %v", err)
	}
	d.Items[0].Title = strings.Repeat("x", emailtemplate.MaxOutputBytes)
	if err := tmpl.Render(d, &out); !errors.Is(err, emailtemplate.ErrOutputTooLarge) {
		t.Fatalf("render over budget: %v", err)
	}
}
