package emailtemplate

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"text/template/parse"
)

// AllowedFuncs are the functions a partner template may call:
// text/template's builtins except call, which would call any function value
// the data held. Ingest enforces the same list at upload.
var AllowedFuncs = []string{
	"and", "or", "not", "len", "index", "slice", "print", "printf", "println",
	"eq", "ne", "lt", "le", "gt", "ge", "html", "js", "urlquery",
}

// MaxRangeDepth is how deeply loops may nest, counting loops in the
// templates a loop invokes. Loops may only range over the lists in Data
// (Items), so the work of a render is bounded by the template's size times
// the list's length to this power.
const MaxRangeDepth = 2

// Template calls are bounded too: without recursion each call still runs
// its callee's calls, so calls that double at every level make 2^levels of
// them from a template of a few hundred bytes.
const (
	// MaxCallDepth is how deeply template calls may nest.
	MaxCallDepth = 10
	// MaxCalls is how many template calls one render of a part may
	// make, counting each loop body once (the budget's steps bound the
	// loops).
	MaxCalls = 1000
)

// Check vets one part of a template (subject, preheader, html or text) as
// untrusted code, without executing it: only AllowedFuncs may be called,
// every loop must range over a list of the data (never a number, which
// would count up to it), loops nest at most MaxRangeDepth deep, no
// template invokes itself and template calls nest at most MaxCallDepth
// deep and number at most MaxCalls. It returns what is wrong, or nothing.
func Check(part, src string) []string {
	trees := map[string]*parse.Tree{}
	t := parse.New(part)
	t.Mode = parse.SkipFuncCheck
	if _, err := t.Parse(src, "", "", trees); err != nil {
		return []string{fmt.Sprintf("%s: %s", part, strings.TrimPrefix(err.Error(), "template: "))}
	}
	c := &checker{part: part, calls: map[string][]string{}, depth: map[string]int{}, memo: map[string]int{}}
	names := make([]string, 0, len(trees))
	for name := range trees {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		c.current = name
		if tree := trees[name]; tree != nil && tree.Root != nil {
			c.walk(tree.Root, 0)
		}
	}
	if c.recursion(names) {
		for _, name := range names {
			if d := c.rangeDepth(name); d > MaxRangeDepth {
				c.add("loops nest %d deep in template %q (counting the templates they invoke); at most %d", d, name, MaxRangeDepth)
			}
		}
		if _, ok := trees[part]; ok {
			if d := c.callDepth(part, map[string]int{}); d > MaxCallDepth {
				c.add("template calls nest %d deep; at most %d", d, MaxCallDepth)
			}
			if n := c.callCount(part, map[string]int{}); n > MaxCalls {
				c.add("template calls make more than %d calls in one render (counting each loop body once); at most %d", MaxCalls, MaxCalls)
			}
		}
	}
	return c.problems
}

type checker struct {
	part     string
	current  string
	calls    map[string][]string // template -> templates it invokes
	inRange  map[string][]int    // template -> loop depth at each invocation
	depth    map[string]int      // template -> deepest loop nesting in its own body
	memo     map[string]int      // template -> rangeDepth
	problems []string
	seen     map[string]bool
}

func (c *checker) add(format string, args ...any) {
	msg := c.part + ": " + fmt.Sprintf(format, args...)
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	if !c.seen[msg] {
		c.seen[msg] = true
		c.problems = append(c.problems, msg)
	}
}

func (c *checker) walk(n parse.Node, loops int) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, m := range n.Nodes {
			c.walk(m, loops)
		}
	case *parse.ActionNode:
		c.pipe(n.Pipe)
	case *parse.IfNode:
		c.pipe(n.Pipe)
		c.walk(n.List, loops)
		c.walk(n.ElseList, loops)
	case *parse.WithNode:
		c.pipe(n.Pipe)
		c.walk(n.List, loops)
		c.walk(n.ElseList, loops)
	case *parse.RangeNode:
		c.pipe(n.Pipe)
		c.bounded(n)
		c.depth[c.current] = max(c.depth[c.current], loops+1)
		c.walk(n.List, loops+1)
		c.walk(n.ElseList, loops)
	case *parse.TemplateNode:
		c.calls[c.current] = append(c.calls[c.current], n.Name)
		if c.inRange == nil {
			c.inRange = map[string][]int{}
		}
		c.inRange[c.current] = append(c.inRange[c.current], loops)
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

// listFields are the names of Data's fields (at any depth) that hold a
// slice, array or map: what a loop may range over.
var listFields = func() map[string]bool {
	out := map[string]bool{}
	seen := map[reflect.Type]bool{}
	var visit func(t reflect.Type)
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
	visit(reflect.TypeFor[Data]())
	return out
}()

// bounded requires a loop to range over a field holding a list, possibly
// through slice or index.
func (c *checker) bounded(n *parse.RangeNode) {
	bad := func() {
		c.add("{{range}} at byte %d must range over a field holding a list, like .Items (not a number or a computed value)", n.Position())
	}
	if n.Pipe == nil || len(n.Pipe.Cmds) != 1 {
		bad()
		return
	}
	args := n.Pipe.Cmds[0].Args
	if id, ok := args[0].(*parse.IdentifierNode); ok && len(args) > 1 && (id.Ident == "slice" || id.Ident == "index") {
		args = args[1:2]
	}
	var fields []string
	if len(args) == 1 {
		switch a := args[0].(type) {
		case *parse.FieldNode:
			fields = a.Ident
		case *parse.VariableNode:
			fields = a.Ident[1:]
		case *parse.ChainNode:
			fields = a.Field
		}
	}
	if len(fields) == 0 || !listFields[fields[len(fields)-1]] {
		bad()
	}
}

// recursion reports templates that invoke themselves, directly or through
// others, and returns whether there are none.
func (c *checker) recursion(names []string) bool {
	const (
		active = iota + 1
		finished
	)
	state := map[string]int{}
	ok := true
	var visit func(name string, path []string)
	visit = func(name string, path []string) {
		switch state[name] {
		case active:
			i := slices.Index(path, name)
			c.add("template %q invokes itself (%s); recursion is not allowed", name, strings.Join(append(path[i:], name), " → "))
			ok = false
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
	return ok
}

// rangeDepth is the deepest loop nesting a call of name can reach,
// following its invocations (there are no cycles when it is called).
func (c *checker) rangeDepth(name string) int {
	if d, ok := c.memo[name]; ok {
		return d
	}
	d := c.depth[name]
	for i, callee := range c.calls[name] {
		d = max(d, c.inRange[name][i]+c.rangeDepth(callee))
	}
	c.memo[name] = d
	return d
}

// callDepth is how deeply template calls nest from name (there are no
// cycles when it is called).
func (c *checker) callDepth(name string, memo map[string]int) int {
	if d, ok := memo[name]; ok {
		return d
	}
	d := 0
	for _, callee := range c.calls[name] {
		d = max(d, 1+c.callDepth(callee, memo))
	}
	memo[name] = d
	return d
}

// callCount is how many template calls one call of name makes, each loop
// body counted once, up to MaxCalls+1.
func (c *checker) callCount(name string, memo map[string]int) int {
	if n, ok := memo[name]; ok {
		return n
	}
	n := 0
	for _, callee := range c.calls[name] {
		n = min(n+1+c.callCount(callee, memo), MaxCalls+1)
	}
	memo[name] = n
	return n
}
