package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// A clone of Herald has nothing beside it, so no test, benchmark, tool or
// script may name a path above the repository. pathsAbove finds the ones
// that do: relative paths in Go string literals (and in the literal
// arguments of filepath.Join and path.Join), and runs of "../" in scripts,
// each resolved against the directory of the file that holds it, which is
// where a test runs and where a script finds its neighbours.

// pathsAbove returns "file:line: path" for every path under root that
// climbs out of it.
func pathsAbove(root string) ([]string, error) {
	var found []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); p != root && (strings.HasPrefix(name, ".") && name != ".ci" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		var check func(rel string, src []byte) ([]string, error)
		switch {
		case strings.HasSuffix(rel, ".go"):
			check = goPathsAbove
		case isScript(rel):
			check = scriptPathsAbove
		default:
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		hits, err := check(rel, src)
		if err != nil {
			return err
		}
		found = append(found, hits...)
		return nil
	})
	return found, err
}

func isScript(rel string) bool {
	base := path.Base(rel)
	return strings.HasSuffix(base, ".sh") || base == "Makefile" || strings.HasPrefix(rel, ".ci/")
}

// climbs reports whether ref, relative to the directory dir (itself
// relative to the root), leaves the root.
func climbs(dir, ref string) bool {
	if path.IsAbs(ref) || !strings.HasPrefix(ref, "..") {
		return false
	}
	joined := path.Join(dir, ref)
	return joined == ".." || strings.HasPrefix(joined, "../")
}

func goPathsAbove(rel string, src []byte) ([]string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, rel, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	dir := path.Dir(rel)
	var found []string
	report := func(pos token.Pos, ref string) {
		if climbs(dir, ref) {
			found = append(found, fmt.Sprintf("%s:%d: %s", rel, fset.Position(pos).Line, ref))
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			// filepath.Join("..", "..", "x"): the literal arguments
			// together are one path.
			if sel, ok := n.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Join" {
				if pkg, ok := sel.X.(*ast.Ident); ok && (pkg.Name == "filepath" || pkg.Name == "path") {
					var parts []string
					for _, a := range n.Args {
						s, ok := stringLit(a)
						if !ok {
							break
						}
						parts = append(parts, s)
					}
					if len(parts) > 1 {
						report(n.Pos(), path.Join(parts...))
					}
				}
			}
		case *ast.BasicLit:
			if s, ok := stringLit(n); ok {
				report(n.Pos(), s)
			}
		}
		return true
	})
	return found, nil
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// dotDots matches a run of parent-directory steps in a script, with what
// follows it. Whatever stands before it ("$here/", "$(dirname "$0")/") is
// taken to be the script's own directory.
var dotDots = regexp.MustCompile(`(?:^|[^\w.])((?:\.\./)*\.\.(?:/[\w-][\w.-]*)*)(?:[^\w.]|$)`)

func scriptPathsAbove(rel string, src []byte) ([]string, error) {
	dir := path.Dir(rel)
	var found []string
	for i, line := range strings.Split(string(src), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, m := range dotDots.FindAllStringSubmatch(line, -1) {
			if climbs(dir, m[1]) {
				found = append(found, fmt.Sprintf("%s:%d: %s", rel, i+1, m[1]))
			}
		}
	}
	return found, nil
}
