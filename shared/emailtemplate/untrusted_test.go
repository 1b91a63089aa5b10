package emailtemplate_test

import (
	"os"
	"strings"
	"testing"

	"herald/shared/emailtemplate"
)

func TestCheckUntrustedParts(t *testing.T) {
	tests := []struct {
		name, src string
		want      string // "" for no problem, else part of the message
	}{
		{"fields and builtins", `Hi {{.Customer.FirstName}} {{if and .Items (gt (len .Items) 2)}}{{printf "%d" (len .Items)}}{{end}}`, ""},
		{"range over items", `{{range $i, $p := .Items}}{{$p.Title}}{{end}}{{range .Items}}{{.Title}}{{else}}none{{end}}`, ""},
		{"range over a slice of items", `{{range slice .Items 0 2}}{{.Title}}{{end}}`, ""},
		{"define and template", `{{define "card"}}{{.Title}}{{end}}{{range .Items}}{{template "card" .}}{{end}}`, ""},
		{"call", `{{call .Customer.FirstName}}`, `"call" is not allowed`},
		{"unknown function", `{{exec "rm -rf /"}}`, `"exec" is not allowed`},
		{"function in a nested pipeline", `{{if (env "HOME")}}x{{end}}`, `"env" is not allowed`},
		{"range over a number", `{{range 1000000000}}x{{end}}`, "{{range}}"},
		{"range over an int field", `{{range .Items}}{{range .Reviews}}★{{end}}{{end}}`, "{{range}}"},
		{"range over a variable", `{{$n := 99999999}}{{range $n}}x{{end}}`, "{{range}}"},
		{"recursion", `{{define "a"}}{{template "b" .}}{{end}}{{define "b"}}{{template "a" .}}{{end}}{{template "a" .}}`, "invokes itself"},
		{"self recursion", `{{define "loop"}}{{template "loop" .}}{{end}}`, "invokes itself"},
		{"syntax error", `{{if .Items}}`, "unexpected EOF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := strings.Join(emailtemplate.Check("html", tc.src), "; ")
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// The demo template, which every end-to-end test sends, passes.
func TestDemoTemplatePasses(t *testing.T) {
	for _, f := range []string{"../../deploy/stack/demo/email.html", "../../deploy/stack/demo/email.txt"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if p := emailtemplate.Check("html", string(b)); len(p) > 0 {
			t.Fatalf("%s: %v", f, p)
		}
	}
}
