package emailtemplate_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"herald/shared/emailtemplate"
)

// doubling is templates in which every level calls the next twice:
// 2^levels calls that write nothing, from a few hundred bytes.
func doubling(levels int) string {
	var b strings.Builder
	for i := range levels {
		fmt.Fprintf(&b, `{{define "l%d"}}{{template "l%d"}}{{template "l%d"}}{{end}}`, i, i+1, i+1)
	}
	fmt.Fprintf(&b, `{{define "l%d"}}{{end}}{{template "l0"}}`, levels)
	return b.String()
}

// chain is templates in which every level calls the next once: calls
// nest levels+1 deep.
func chain(levels int) string {
	var b strings.Builder
	for i := range levels {
		fmt.Fprintf(&b, `{{define "l%d"}}{{template "l%d"}}{{end}}`, i, i+1)
	}
	fmt.Fprintf(&b, `{{define "l%d"}}x{{end}}{{template "l0"}}`, levels)
	return b.String()
}

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
		{"template calls that double", doubling(20), "template calls make more than 1000 calls"},
		{"template calls that double a little", doubling(8), ""},
		{"template calls nested too deep", chain(10), "template calls nest 11 deep; at most 10"},
		{"template calls nested deep enough", chain(9), ""},
		{"many calls, each loop body counted once", `{{define "c"}}x{{end}}{{range .Items}}` + strings.Repeat(`{{template "c"}}`, 999) + `{{end}}`, ""},
		{"too many calls", `{{define "c"}}x{{end}}` + strings.Repeat(`{{template "c"}}`, 1001), "more than 1000 calls"},
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
		_, err := emailtemplate.Parse(src, emailtemplate.DefaultBudget)
		var pe *emailtemplate.ProblemError
		if !errors.As(err, &pe) || !strings.Contains(pe.Error(), part+`: function "call" is not allowed`) {
			t.Errorf("%s: %v", part, err)
		}
	}
}

// TestParseFromName checks that the From header a template makes always
// fits a header line: a display name of one long word cannot be folded.
func TestParseFromName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"Acme", true},
		{strings.Repeat("A", emailtemplate.MaxFromNameBytes), true},
		{strings.Repeat("A", emailtemplate.MaxFromNameBytes+1), false},
	} {
		src := source()
		src.FromName = tc.name
		_, err := emailtemplate.Parse(src, emailtemplate.DefaultBudget)
		if (err == nil) != tc.ok || err != nil && !strings.Contains(err.Error(), "from_name must be at most") {
			t.Errorf("from_name of %d bytes: %v", len(tc.name), err)
		}
	}
}

// TestParseWithinBudget checks that the sample render at upload is held
// to the budget: templates that pass the static checks but run out of
// steps or bytes on the sample are refused, naming the budget.
func TestParseWithinBudget(t *testing.T) {
	fourCalls := `{{define "a"}}{{template "b"}}{{template "b"}}{{end}}{{define "b"}}{{template "c"}}{{template "c"}}{{end}}{{define "c"}}{{end}}`
	tests := []struct {
		name   string
		edit   func(*emailtemplate.Source)
		budget emailtemplate.Budget
		want   *emailtemplate.BudgetError // nil: accepted
	}{
		{"a printf field a million wide in two loops, in 71 bytes of subject", func(s *emailtemplate.Source) {
			s.Subject = `{{range .Items}}{{range $.Items}}{{printf "%0999999d" 0}}{{end}}{{end}}`
		}, emailtemplate.DefaultBudget, &emailtemplate.BudgetError{Part: "subject", Budget: "bytes"}},
		{"a printf field a million wide kept in a variable", func(s *emailtemplate.Source) {
			s.Text = `{{range .Items}}{{$x := printf "%09999999d" 0}}{{end}}`
		}, emailtemplate.DefaultBudget, &emailtemplate.BudgetError{Part: "text", Budget: "bytes"}},
		{"calls that double, in nested loops", func(s *emailtemplate.Source) {
			s.HTML = fourCalls + `{{range .Items}}{{range $.Items}}{{template "a"}}{{end}}{{end}}`
		}, emailtemplate.Budget{Steps: 200}, &emailtemplate.BudgetError{Part: "html", Budget: "steps"}},
		{"loops that write nothing, on html/template's fallback", func(s *emailtemplate.Source) {
			s.HTML = `<script>var x = {{template "v" .}};</script>{{define "v"}}1{{end}}{{range .Items}}{{range $.Items}}{{end}}{{end}}`
		}, emailtemplate.Budget{Steps: 40}, &emailtemplate.BudgetError{Part: "html", Budget: "steps"}},
		{"the same loops within the steps", func(s *emailtemplate.Source) { // html, v, 6 items and 36 more
			s.HTML = `<script>var x = {{template "v" .}};</script>{{define "v"}}1{{end}}{{range .Items}}{{range $.Items}}{{end}}{{end}}`
		}, emailtemplate.Budget{Steps: 44}, nil},
		{"output over the budget", func(s *emailtemplate.Source) {
			s.HTML = `{{range .Items}}<p>{{.Title}}</p>{{end}}`
		}, emailtemplate.Budget{Bytes: 100}, &emailtemplate.BudgetError{Part: "html", Budget: "bytes"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := source()
			tc.edit(&src)
			_, err := emailtemplate.Parse(src, tc.budget)
			var got *emailtemplate.BudgetError
			var pe *emailtemplate.ProblemError
			if err != nil && (!errors.As(err, &pe) || !errors.As(err, &got)) {
				t.Fatalf("error %v (%T), want a ProblemError wrapping a BudgetError", err, err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b *emailtemplate.BudgetError) bool {
				return (a == nil) == (b == nil) && (a == nil || a.Part == b.Part && a.Budget == b.Budget)
			})); diff != "" {
				t.Errorf("budget error %v (-want +got):\n%s", err, diff)
			}
		})
	}
}

func TestRenderOutputBudget(t *testing.T) {
	tmpl, err := emailtemplate.Parse(source(), emailtemplate.DefaultBudget)
	if err != nil {
		t.Fatal(err)
	}
	d := emailtemplate.Sample()
	var out emailtemplate.Rendered
	if err := tmpl.Render(d, &out); err != nil {
		t.Fatalf("sample: %v", err)
	}
	d.Items[0].Title = strings.Repeat("x", emailtemplate.MaxOutputBytes)
	var be *emailtemplate.BudgetError
	if err := tmpl.Render(d, &out); !errors.As(err, &be) || be.Part != "html" || be.Budget != "bytes" {
		t.Fatalf("render over budget: %v", err)
	}
	if out.HTML.Len() > emailtemplate.MaxOutputBytes {
		t.Errorf("%d bytes of HTML past the budget", out.HTML.Len())
	}
}
