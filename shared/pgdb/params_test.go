package pgdb

import (
	"fmt"
	"regexp"
	"slices"
	"testing"
)

// maxPositional is the most positional parameters ($1…) a service query may
// take; past it, a reader has to count to know what $7 is, so the query
// names its parameters instead (@tenant, with pgx.StrictNamedArgs at the call).
const maxPositional = 4

var positional = regexp.MustCompile(`\$([0-9]+)`)

// TestQueriesNameTheirParameters holds every service query to maxPositional.
func TestQueriesNameTheirParameters(t *testing.T) {
	var code []sqlText
	for _, s := range services {
		texts, err := serviceSQL(repoRoot + "/" + s)
		if err != nil {
			t.Fatal(err)
		}
		code = append(code, texts...)
	}
	if len(code) == 0 {
		t.Fatal("found no service SQL")
	}
	if problems := tooManyPositional(code); len(problems) > 0 {
		t.Errorf("%d queries take more than %d positional parameters; name them (@name and pgx.StrictNamedArgs):\n%s",
			len(problems), maxPositional, fmt.Sprint(problems))
	}
}

func TestTooManyPositionalFindsThem(t *testing.T) {
	code := []sqlText{
		{file: "a.sql", text: "SELECT $1, $2, $3, $4"},
		{file: "b.sql", text: "SELECT $1, $2, $3, $4, $5"},
		{file: "c.go", text: "UPDATE t SET a = $12 WHERE b = $1", fromGo: true},
		{file: "d.sql", text: "SELECT @tenant, @job, @a, @b, @c, @d"},
	}
	got := tooManyPositional(code)
	want := []string{"b.sql: $5", "c.go: $12"}
	if !slices.Equal(got, want) {
		t.Errorf("tooManyPositional = %q, want %q", got, want)
	}
}

// tooManyPositional names each text whose highest positional parameter is
// past maxPositional.
func tooManyPositional(code []sqlText) []string {
	var out []string
	for _, c := range code {
		high := 0
		for _, m := range positional.FindAllStringSubmatch(c.text, -1) {
			var n int
			fmt.Sscan(m[1], &n)
			high = max(high, n)
		}
		if high > maxPositional {
			out = append(out, fmt.Sprintf("%s: $%d", c.file, high))
		}
	}
	return out
}
