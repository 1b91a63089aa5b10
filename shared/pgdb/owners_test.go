package pgdb

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The repository's root, seen from this package.
const repoRoot = "../.."

// ownersADR maps every table, view and function to its owning service.
var ownersADR = filepath.Join(repoRoot, "docs", "adr", "0006-table-owners.md")

// services are the directories whose SQL is held to the owner map.
var services = []string{"ingest", "dispatch", "render", "recommend"}

// TestEveryWriteIsTheOwners holds the schema to docs/adr/0006: each table
// is written only by its owner, another service writes it only through a
// function it is granted, and a function writes only its owner's tables.
func TestEveryWriteIsTheOwners(t *testing.T) {
	doc, err := os.ReadFile(ownersADR)
	if err != nil {
		t.Fatal(err)
	}
	owners, err := parseOwners(string(doc))
	if err != nil {
		t.Fatal(err)
	}
	schema, err := readSchema(migrations)
	if err != nil {
		t.Fatal(err)
	}
	var code []sqlText
	for _, svc := range services {
		texts, err := serviceSQL(filepath.Join(repoRoot, svc))
		if err != nil {
			t.Fatal(err)
		}
		for i := range texts {
			texts[i].service = svc
		}
		code = append(code, texts...)
	}
	for _, problem := range checkOwners(owners, schema, code) {
		t.Error(problem)
	}
}

// TestTheOwnerCheckFindsEachKindOfLeak feeds the check one leak of each
// kind it exists to catch.
func TestTheOwnerCheckFindsEachKindOfLeak(t *testing.T) {
	owners := ownerMap{
		tables: map[string]string{"jobs": "ingest", "deliveries": "dispatch", "job_totals": "dispatch"},
		functions: map[string]grant{
			"herald_redrive": {owner: "dispatch", callers: []string{"ingest"}},
			"herald_private": {owner: "dispatch"},
		},
	}
	schema := schemaObjects{
		tables:    []string{"deliveries", "jobs", "job_totals", "outbox"},
		functions: map[string]string{"herald_redrive": "UPDATE deliveries SET state = 'deferred'", "herald_private": "SELECT 1", "herald_sneaky": "UPDATE jobs SET state = 'x'"},
	}
	code := []sqlText{
		{service: "ingest", file: "ok.sql", text: "SELECT herald_redrive($1); UPDATE jobs SET state = $2 -- UPDATE deliveries in a comment is no write"},
		{service: "ingest", file: "leak.sql", text: "WITH d AS (\n  update deliveries set email = '' RETURNING 1) SELECT 1 FROM d FOR UPDATE"},
		{service: "ingest", file: "call.sql", text: "SELECT * FROM herald_private()"},
		{service: "dispatch", file: "q.go", text: "DELETE FROM jobs WHERE id = $1", fromGo: true},
		{service: "dispatch", file: "msg.go", text: "update job state: %w", fromGo: true},
		{service: "ingest", file: "temp.sql", text: "CREATE TEMP TABLE staged_x (a int) ON COMMIT DROP; INSERT INTO staged_x VALUES (1); COPY staged_x FROM STDIN"},
	}
	got := checkOwners(owners, schema, code)
	want := []string{
		`dispatch's q.go writes jobs, which ingest owns`,
		`function herald_sneaky (in the migrations) has no owner in docs/adr/0006`,
		`function herald_sneaky writes jobs, which ingest owns, not its owner (nobody)`,
		`ingest's call.sql calls herald_private, a function of dispatch's it is not granted`,
		`ingest's leak.sql writes deliveries, which dispatch owns`,
		`table outbox (in the migrations) has no owner in docs/adr/0006`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestOwnersTableParses(t *testing.T) {
	doc := "## Tables\n\n| Table | Owner | What |\n|---|---|---|\n| jobs | ingest | jobs |\n\n" +
		"## Functions\n\n| Function | Owner | Also called by |\n|---|---|---|\n" +
		"| herald_a | dispatch | ingest (why), recommend |\n| herald_b | ingest | |\n"
	got, err := parseOwners(doc)
	if err != nil {
		t.Fatal(err)
	}
	if got.tables["jobs"] != "ingest" || got.functions["herald_b"].owner != "ingest" ||
		!slices.Equal(got.functions["herald_a"].callers, []string{"ingest", "recommend"}) {
		t.Errorf("parsed %+v", got)
	}
	if _, err := parseOwners("| Table | Owner |\n|---|---|\n| jobs | nobody-knows |\n"); err == nil {
		t.Error("an unknown service was accepted")
	}
}

type grant struct {
	owner   string
	callers []string
}

type ownerMap struct {
	tables    map[string]string // table or view → owning service
	functions map[string]grant
}

// parseOwners reads the Tables and Functions sections of the ADR.
func parseOwners(doc string) (ownerMap, error) {
	m := ownerMap{tables: map[string]string{}, functions: map[string]grant{}}
	section := ""
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "## ") {
			section = strings.TrimPrefix(line, "## ")
			continue
		}
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) < 2 || cells[1] == "Owner" || strings.HasPrefix(cells[0], "---") {
			continue
		}
		name, owner := cells[0], cells[1]
		if !slices.Contains(services, owner) {
			return m, &badRow{line: line, why: "unknown owner " + strconv.Quote(owner)}
		}
		switch section {
		case "Functions":
			g := grant{owner: owner}
			if len(cells) > 2 && cells[2] != "" {
				for _, c := range strings.Split(cells[2], ",") {
					svc, _, _ := strings.Cut(strings.TrimSpace(c), " ")
					if !slices.Contains(services, svc) {
						return m, &badRow{line: line, why: "unknown caller " + strconv.Quote(svc)}
					}
					g.callers = append(g.callers, svc)
				}
			}
			m.functions[name] = g
		default:
			m.tables[name] = owner
		}
	}
	return m, nil
}

type badRow struct{ line, why string }

func (e *badRow) Error() string { return e.why + " in " + strconv.Quote(e.line) }

// schemaObjects is what the migrations leave behind: tables and views, and
// each function's latest body.
type schemaObjects struct {
	tables    []string
	functions map[string]string
}

var (
	createTable  = regexp.MustCompile(`(?i)\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:TABLE|VIEW)\s+(?:IF\s+NOT\s+EXISTS\s+)?([a-z_][a-z0-9_]*)`)
	dropTable    = regexp.MustCompile(`(?i)\bDROP\s+(?:TABLE|VIEW)\s+(?:IF\s+EXISTS\s+)?([a-z_][a-z0-9_, ]*)`)
	function     = regexp.MustCompile(`(?is)\bCREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+([a-z_][a-z0-9_]*).*?\$\$(.*?)\$\$`)
	dropFunction = regexp.MustCompile(`(?i)\bDROP\s+FUNCTION\s+(?:IF\s+EXISTS\s+)?([a-z_][a-z0-9_]*)`)
	write        = regexp.MustCompile(`(?i)\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM|TRUNCATE(?:\s+TABLE)?|COPY|MERGE\s+INTO)\s+(?:ONLY\s+)?([a-z_][a-z0-9_]*)`)
	tempTable    = regexp.MustCompile(`(?i)\bCREATE\s+TEMP(?:ORARY)?\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([a-z_][a-z0-9_]*)`)
	call         = regexp.MustCompile(`(?i)\b(herald_[a-z0-9_]+)\s*\(`)
	comment      = regexp.MustCompile(`(?s)--[^\n]*|/\*.*?\*/`)
)

// Words that follow UPDATE, TRUNCATE or COPY without being a table: FOR
// UPDATE [OF|SKIP|NOWAIT], DO UPDATE SET, a trigger's UPDATE OR DELETE ON.
var notTables = map[string]bool{"set": true, "of": true, "skip": true, "nowait": true, "or": true, "on": true}

// readSchema replays the Up half of every migration, in order.
func readSchema(migrations fs.FS) (schemaObjects, error) {
	s := schemaObjects{functions: map[string]string{}}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return s, err
	}
	sort.Strings(names)
	tables := map[string]bool{}
	for _, name := range names {
		b, err := fs.ReadFile(migrations, name)
		if err != nil {
			return s, err
		}
		up, _, _ := strings.Cut(string(b), "-- +goose Down")
		up = comment.ReplaceAllString(up, "")
		for _, m := range createTable.FindAllStringSubmatch(up, -1) {
			tables[strings.ToLower(m[1])] = true
		}
		for _, m := range dropTable.FindAllStringSubmatch(up, -1) {
			for _, t := range strings.Split(m[1], ",") {
				delete(tables, strings.ToLower(strings.TrimSpace(t)))
			}
		}
		for _, m := range dropFunction.FindAllStringSubmatch(up, -1) {
			delete(s.functions, strings.ToLower(m[1]))
		}
		for _, m := range function.FindAllStringSubmatch(up, -1) {
			s.functions[strings.ToLower(m[1])] = m[2]
		}
	}
	for t := range tables {
		s.tables = append(s.tables, t)
	}
	sort.Strings(s.tables)
	return s, nil
}

// sqlText is one piece of a service's SQL: a .sql file, or a string
// literal in its Go source.
type sqlText struct {
	service, file, text string
	fromGo              bool
}

// serviceSQL collects a service's SQL, tests aside (a test may set up any
// table it likes).
func serviceSQL(dir string) ([]sqlText, error) {
	var out []sqlText
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, path)
		switch {
		case strings.HasSuffix(path, ".sql"):
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			out = append(out, sqlText{file: rel, text: string(b)})
		case strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go"):
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil {
						out = append(out, sqlText{file: rel, text: s, fromGo: true})
					}
				}
				return true
			})
		}
		return nil
	})
	return out, err
}

// checkOwners lists every way the schema, the map and the code disagree,
// sorted.
func checkOwners(owners ownerMap, schema schemaObjects, code []sqlText) []string {
	var problems []string
	known := map[string]bool{}
	for _, t := range schema.tables {
		known[t] = true
		if _, ok := owners.tables[t]; !ok {
			problems = append(problems, "table "+t+" (in the migrations) has no owner in docs/adr/0006")
		}
	}
	for t := range owners.tables {
		if !known[t] {
			problems = append(problems, "docs/adr/0006 lists table "+t+", which the migrations do not create")
		}
	}
	for f, body := range schema.functions {
		g, ok := owners.functions[f]
		if !ok {
			problems = append(problems, "function "+f+" (in the migrations) has no owner in docs/adr/0006")
		}
		for _, t := range writes(body, known, false) {
			if o := owners.tables[t]; o != g.owner {
				problems = append(problems, "function "+f+" writes "+t+", which "+o+" owns, not its owner ("+orNobody(g.owner)+")")
			}
		}
	}
	for f := range owners.functions {
		if _, ok := schema.functions[f]; !ok {
			problems = append(problems, "docs/adr/0006 lists function "+f+", which the migrations do not define")
		}
	}
	temps := map[string]map[string]bool{}
	for _, c := range code {
		for _, m := range tempTable.FindAllStringSubmatch(comment.ReplaceAllString(c.text, ""), -1) {
			if temps[c.service] == nil {
				temps[c.service] = map[string]bool{}
			}
			temps[c.service][strings.ToLower(m[1])] = true
		}
	}
	for _, c := range code {
		for _, t := range writes(c.text, known, c.fromGo) {
			if temps[c.service][t] {
				continue
			}
			if o, ok := owners.tables[t]; !ok {
				problems = append(problems, c.service+"'s "+c.file+" writes "+t+", which is no table of the schema")
			} else if o != c.service {
				problems = append(problems, c.service+"'s "+c.file+" writes "+t+", which "+o+" owns")
			}
		}
		for _, m := range call.FindAllStringSubmatch(comment.ReplaceAllString(c.text, ""), -1) {
			f := strings.ToLower(m[1])
			g, ok := owners.functions[f]
			if !ok || g.owner == c.service || slices.Contains(g.callers, c.service) {
				continue // an unknown function fails in PostgreSQL, not here
			}
			problems = append(problems, c.service+"'s "+c.file+" calls "+f+", a function of "+g.owner+"'s it is not granted")
		}
	}
	sort.Strings(problems)
	return slices.Compact(problems)
}

// writes lists the tables sql writes, comments aside. SQL found in Go
// string literals counts only when it names a table of the schema: most
// literals are not SQL ("update job state: %w").
func writes(sql string, known map[string]bool, onlyKnown bool) []string {
	var out []string
	for _, m := range write.FindAllStringSubmatch(comment.ReplaceAllString(sql, ""), -1) {
		t := strings.ToLower(m[2])
		if notTables[t] || (onlyKnown && !known[t]) {
			continue
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

func orNobody(s string) string {
	if s == "" {
		return "nobody"
	}
	return s
}
