// Package tmplcheck vets a partner's template source before it is parsed
// for use: partner templates are untrusted, so only an allow-listed set of
// functions may be called, every loop must be bounded by the data, and no
// template may invoke itself. It walks the text/template/parse trees (which
// html/template shares) without executing anything.
package tmplcheck

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"text/template/parse"

	"herald/shared/emailtemplate"
)

// AllowedFuncs are the functions a template may call: text/template's
// builtins except call (which calls any function value the data holds).
// Keep in step with the renderer's own list (issue 7).
var AllowedFuncs = []string{
	"and", "or", "not", "len", "index", "slice", "print", "printf", "println",
	"eq", "ne", "lt", "le", "gt", "ge", "html", "js", "urlquery",
}

// Problem is one thing wrong with a template part.
type Problem struct {
	Part    string `json:"part"` // subject, preheader, html or text
	Message string `json:"message"`
}

func (p Problem) String() string { return p.Part + ": " + p.Message }

// Check vets one part of a template (its name and source) and returns what
// is wrong with it. Syntax errors are reported too.
func Check(part, src string) []Problem {
	trees := map[string]*parse.Tree{}
	t := parse.New(part)
	t.Mode = parse.SkipFuncCheck
	if _, err := t.Parse(src, "", "", trees); err != nil {
		return []Problem{{Part: part, Message: strings.TrimPrefix(err.Error(), "template: ")}}
	}
	c := &checker{part: part, calls: map[string][]string{}}
	names := make([]string, 0, len(trees))
	for name := range trees {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		c.current = name
		if tree := trees[name]; tree != nil && tree.Root != nil {
			c.walk(tree.Root)
		}
	}
	c.recursion(names)
	return c.problems
}

type checker struct {
	part     string
	current  string
	calls    map[string][]string // template name -> templates it invokes
	problems []Problem
	seen     map[string]bool
}

func (c *checker) add(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	if !c.seen[msg] {
		c.seen[msg] = true
		c.problems = append(c.problems, Problem{Part: c.part, Message: msg})
	}
}

func (c *checker) walk(n parse.Node) {
	switch n := n.(type) {
	case nil:
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, m := range n.Nodes {
			c.walk(m)
		}
	case *parse.ActionNode:
		c.pipe(n.Pipe)
	case *parse.IfNode:
		c.pipe(n.Pipe)
		c.walk(n.List)
		c.walk(n.ElseList)
	case *parse.WithNode:
		c.pipe(n.Pipe)
		c.walk(n.List)
		c.walk(n.ElseList)
	case *parse.RangeNode:
		c.pipe(n.Pipe)
		c.rangeBounded(n)
		c.walk(n.List)
		c.walk(n.ElseList)
	case *parse.TemplateNode:
		c.calls[c.current] = append(c.calls[c.current], n.Name)
		c.pipe(n.Pipe)
	}
}

func (c *checker) pipe(p *parse.PipeNode) {
	if p == nil {
		return
	}
	for _, cmd := range p.Cmds {
		for _, arg := range cmd.Args {
			c.arg(arg)
		}
	}
}

func (c *checker) arg(n parse.Node) {
	switch n := n.(type) {
	case *parse.IdentifierNode:
		if !slices.Contains(AllowedFuncs, n.Ident) {
			c.add("function %q is not allowed (allowed: %s)", n.Ident, strings.Join(AllowedFuncs, ", "))
		}
	case *parse.PipeNode:
		c.pipe(n)
	case *parse.ChainNode:
		c.arg(n.Node)
	}
}

// sliceFields are the names of the fields of the template data that hold a
// slice, array or map: the only things a loop may range over, so every loop
// is bounded by the data Herald passes (an int such as .Job.Year or
// .Reviews would make {{range}} count to it).
var sliceFields = func() map[string]bool {
	out := map[string]bool{}
	var visit func(t reflect.Type)
	seen := map[reflect.Type]bool{}
	visit = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] {
			return
		}
		seen[t] = true
		for i := range t.NumField() {
			f := t.Field(i)
			switch f.Type.Kind() {
			case reflect.Slice, reflect.Array, reflect.Map:
				out[f.Name] = true
			}
			visit(f.Type)
		}
	}
	visit(reflect.TypeFor[emailtemplate.Data]())
	return out
}()

// rangeBounded requires a range to be over a field of the data that holds a
// collection, possibly through slice or index.
func (c *checker) rangeBounded(n *parse.RangeNode) {
	if n.Pipe == nil || len(n.Pipe.Cmds) != 1 {
		c.add("{{range}} at %s must range over one field holding a list, like .Items", pos(n))
		return
	}
	args := n.Pipe.Cmds[0].Args
	if len(args) > 1 {
		if id, ok := args[0].(*parse.IdentifierNode); ok && (id.Ident == "slice" || id.Ident == "index") {
			args = args[1:2]
		}
	}
	if len(args) != 1 || !c.collection(args[0]) {
		c.add("{{range}} at %s must range over a field holding a list, like .Items (ranging over a number or a computed value is not allowed)", pos(n))
	}
}

func (c *checker) collection(n parse.Node) bool {
	var fields []string
	switch n := n.(type) {
	case *parse.FieldNode:
		fields = n.Ident
	case *parse.VariableNode:
		fields = n.Ident[1:]
	case *parse.ChainNode:
		fields = n.Field
	}
	return len(fields) > 0 && sliceFields[fields[len(fields)-1]]
}

func pos(n parse.Node) string { return fmt.Sprintf("byte %d", n.Position()) }

// recursion reports templates that invoke themselves, directly or through
// others: html/template would recurse until its depth limit.
func (c *checker) recursion(names []string) {
	const (
		unvisited = iota
		active
		finished
	)
	state := map[string]int{}
	var visit func(name string, path []string)
	visit = func(name string, path []string) {
		switch state[name] {
		case active:
			i := slices.Index(path, name)
			c.add("template %q invokes itself (%s); recursion is not allowed", name, strings.Join(append(path[i:], name), " → "))
			return
		case finished:
			return
		}
		state[name] = active
		for _, next := range c.calls[name] {
			visit(next, append(path, name))
		}
		state[name] = finished
	}
	for _, name := range names {
		visit(name, nil)
	}
}
