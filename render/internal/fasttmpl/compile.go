package fasttmpl

import (
	"fmt"
	"reflect"
	"strings"
	"text/template/parse"
)

// The compiler turns html/template's escaped parse trees into a tree of
// nodes and closures specialised for the static types of emailtemplate.Data.
// Wherever the static type of a value is known (struct fields, slice
// elements, builtin results) field lookups are resolved to indexes at
// compile time; wherever it is not (the results of index, slice, mixed and
// and or, variables assigned with '=') a port of text/template's dynamic
// field evaluation takes over. Data has no methods, maps, interfaces or
// nil pointers but the root (TestDataIsPlain), so neither path implements
// them. Constructs the compiler does not handle abort compilation with
// unsupported, and the Template then delegates to html/template.

type unsupported struct{ reason string }

func unsupportedf(format string, args ...any) {
	panic(unsupported{fmt.Sprintf(format, args...)})
}

// program is one compiled template body for one static dot type.
type program struct {
	name  string
	root  node
	frame int // number of variable slots the body needs
}

type progKey struct {
	name string
	typ  reflect.Type
}

type compiler struct {
	// lookup returns the parse tree of a template of the set: for HTML,
	// of html/template's escaped clone of the user's set.
	lookup func(name string) *parse.Tree
	// text compiles for text/template: actions print without escaping.
	text  bool
	progs map[progKey]*program
}

// scope simulates text/template's runtime variable stack at compile time.
// Because pushes and pops follow the tree structure, the stack depth at each
// point of a template is static, so each variable reference can be bound to
// a frame slot.
type scope struct {
	names    []string
	types    []reflect.Type
	max      int
	assigned map[string]bool // names ever assigned with '=': their type is dynamic
}

func (sc *scope) push(name string, t reflect.Type) int {
	if sc.assigned[name] {
		t = nil
	}
	sc.names = append(sc.names, name)
	sc.types = append(sc.types, t)
	if len(sc.names) > sc.max {
		sc.max = len(sc.names)
	}
	return len(sc.names) - 1
}

func (sc *scope) setType(slot int, t reflect.Type) {
	if sc.assigned[sc.names[slot]] {
		t = nil
	}
	sc.types[slot] = t
}

func (sc *scope) lookup(name string) (int, reflect.Type) {
	for i := len(sc.names) - 1; i >= 0; i-- {
		if sc.names[i] == name {
			return i, sc.types[i]
		}
	}
	return -1, nil
}

func (sc *scope) mark() int { return len(sc.names) }

func (sc *scope) truncate(m int) {
	sc.names = sc.names[:m]
	sc.types = sc.types[:m]
}

// collectAssigned returns the names of variables that are assigned with '='
// anywhere in the tree.
func collectAssigned(n parse.Node, out map[string]bool) {
	pipe := func(p *parse.PipeNode) {
		if p == nil {
			return
		}
		if p.IsAssign {
			for _, d := range p.Decl {
				out[d.Ident[0]] = true
			}
		}
		for _, cmd := range p.Cmds {
			for _, a := range cmd.Args {
				collectAssigned(a, out)
			}
		}
	}
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			collectAssigned(c, out)
		}
	case *parse.ActionNode:
		pipe(n.Pipe)
	case *parse.PipeNode:
		pipe(n)
	case *parse.ChainNode:
		collectAssigned(n.Node, out)
	case *parse.IfNode:
		pipe(n.Pipe)
		collectAssigned(n.List, out)
		collectAssigned(n.ElseList, out)
	case *parse.WithNode:
		pipe(n.Pipe)
		collectAssigned(n.List, out)
		collectAssigned(n.ElseList, out)
	case *parse.RangeNode:
		pipe(n.Pipe)
		collectAssigned(n.List, out)
		collectAssigned(n.ElseList, out)
	case *parse.TemplateNode:
		pipe(n.Pipe)
	}
}

// compileTemplate compiles the named template for a dot of static type dot
// (nil: unknown).
func (c *compiler) compileTemplate(name string, dot reflect.Type) *program {
	key := progKey{name, dot}
	if p, ok := c.progs[key]; ok {
		return p
	}
	tree := c.lookup(name)
	if tree == nil || tree.Root == nil {
		// Templates html/template derives for non-HTML-text contexts
		// (e.g. {{template "x"}} inside <script>) live only in its
		// internal namespace.
		unsupportedf("template %q is not reachable through html/template (derived for a non-text context)", name)
	}
	p := &program{name: name}
	c.progs[key] = p
	sc := &scope{assigned: map[string]bool{}}
	collectAssigned(tree.Root, sc.assigned)
	sc.push("$", dot)
	p.root = c.compileList(p, tree.Root, sc, dot)
	p.frame = sc.max
	return p
}

func (c *compiler) compileList(p *program, l *parse.ListNode, sc *scope, dot reflect.Type) node {
	var out listNode
	for _, n := range l.Nodes {
		cn := c.compileNode(p, n, sc, dot)
		if cn == nil {
			continue
		}
		if len(out) > 0 {
			if prev, ok := out[len(out)-1].(textNode); ok {
				// Static text followed by more text is merged; text
				// followed by an output action becomes the action's
				// prefix, saving a node dispatch per action.
				switch n := cn.(type) {
				case textNode:
					merged := make(textNode, 0, len(prev)+len(n))
					out[len(out)-1] = append(append(merged, prev...), n...)
					continue
				case *holeNode:
					if n.pre == nil {
						n.pre = prev
						out[len(out)-1] = n
						continue
					}
				case *strPathHole:
					if n.pre == nil {
						n.pre = prev
						out[len(out)-1] = n
						continue
					}
				}
			}
		}
		out = append(out, cn)
	}
	if len(out) == 1 {
		return out[0]
	}
	return out
}

func (c *compiler) compileNode(p *program, n parse.Node, sc *scope, dot reflect.Type) node {
	switch n := n.(type) {
	case *parse.TextNode:
		if len(n.Text) == 0 {
			return nil
		}
		return textNode(append([]byte(nil), n.Text...))
	case *parse.CommentNode:
		return nil
	case *parse.ActionNode:
		if len(n.Pipe.Decl) > 0 {
			e, _ := c.compilePipe(n.Pipe, sc, dot)
			return evalNode{e}
		}
		if c.text {
			return c.compileTextHole(n.Pipe, sc, dot)
		}
		return c.compileHole(n.Pipe, sc, dot)
	case *parse.IfNode:
		return c.compileIf(p, &n.BranchNode, false, sc, dot)
	case *parse.WithNode:
		return c.compileIf(p, &n.BranchNode, true, sc, dot)
	case *parse.RangeNode:
		return c.compileRange(p, n, sc, dot)
	case *parse.ListNode:
		return c.compileList(p, n, sc, dot)
	case *parse.TemplateNode:
		var pipe evalFn
		var typ reflect.Type
		if n.Pipe != nil {
			pipe, typ = c.compilePipe(n.Pipe, sc, dot)
		}
		cn := &callNode{caller: p, pipe: pipe}
		cn.callee = c.compileTemplate(n.Name, typ)
		return cn
	case *parse.BreakNode:
		return ctrlNode(ctrlBreak)
	case *parse.ContinueNode:
		return ctrlNode(ctrlContinue)
	}
	unsupportedf("node type %T", n)
	return nil
}

func (c *compiler) compileIf(p *program, b *parse.BranchNode, with bool, sc *scope, dot reflect.Type) node {
	m := sc.mark()
	cond, ctyp := c.compilePipe(b.Pipe, sc, dot)
	afterPipe := sc.mark()
	listDot := dot
	if with {
		listDot = ctyp
	}
	list := c.compileList(p, b.List, sc, listDot)
	sc.truncate(afterPipe)
	var elseList node
	if b.ElseList != nil {
		elseList = c.compileList(p, b.ElseList, sc, dot)
	}
	sc.truncate(m)
	if !with && len(b.Pipe.Decl) == 0 {
		if pe := c.staticPath(b.Pipe.Cmds, sc, dot); pe != nil {
			if pk := primKindOf(pe.final); pk != pkNone {
				slowIf := &ifNode{cond: cond, list: list, elseList: elseList}
				return &pathIfNode{pe: pe, pk: pk, slowIf: slowIf, list: list, elseList: elseList}
			}
		}
	}
	if !with && ctyp != nil {
		switch ctyp.Kind() {
		case reflect.Bool:
			return &boolIfNode{cond: cond, list: list, elseList: elseList}
		case reflect.String:
			return &stringIfNode{cond: cond, list: list, elseList: elseList}
		}
	}
	return &ifNode{cond: cond, with: with, list: list, elseList: elseList}
}

func (c *compiler) compileRange(p *program, r *parse.RangeNode, sc *scope, dot reflect.Type) node {
	m := sc.mark()
	pipe := r.Pipe
	// Evaluate the commands without the declarations; the range node binds
	// the variables itself.
	val, vtyp := c.compileCmds(pipe.Cmds, sc, dot)
	n := &rangeNode{pipe: val, nDecl: len(pipe.Decl), isAssign: pipe.IsAssign}
	for i, d := range pipe.Decl {
		name := d.Ident[0]
		if pipe.IsAssign {
			slot, _ := sc.lookup(name)
			if slot < 0 {
				n.unset[i] = name
			}
			n.slots[i] = slot
		} else {
			n.slots[i] = sc.push(name, vtyp)
		}
	}
	afterPipe := sc.mark()
	keyT, elemT := rangeTypes(vtyp)
	if !pipe.IsAssign {
		switch n.nDecl {
		case 1:
			sc.setType(n.slots[0], elemT)
		case 2:
			sc.setType(n.slots[0], keyT)
			sc.setType(n.slots[1], elemT)
		}
	}
	n.list = c.compileList(p, r.List, sc, elemT)
	sc.truncate(afterPipe)
	if r.ElseList != nil {
		if !pipe.IsAssign {
			for i := 0; i < n.nDecl; i++ {
				sc.setType(n.slots[i], vtyp)
			}
		}
		n.elseList = c.compileList(p, r.ElseList, sc, dot)
	}
	sc.truncate(m)
	return n
}

// rangeTypes returns the static index and element types produced by
// ranging over a value of type t: Check lets loops range over lists only.
func rangeTypes(t reflect.Type) (key, elem reflect.Type) {
	if t == nil {
		return nil, nil
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		return intType, t.Elem()
	}
	return nil, nil
}

// compilePipe compiles a pipeline including its variable declarations.
func (c *compiler) compilePipe(pipe *parse.PipeNode, sc *scope, dot reflect.Type) (evalFn, reflect.Type) {
	val, typ := c.compileCmds(pipe.Cmds, sc, dot)
	if len(pipe.Decl) == 0 {
		return val, typ
	}
	slots := make([]int, len(pipe.Decl))
	var undefined string
	for i, d := range pipe.Decl {
		name := d.Ident[0]
		if pipe.IsAssign {
			slot, _ := sc.lookup(name)
			if slot < 0 && undefined == "" {
				undefined = name
			}
			slots[i] = slot
		} else {
			slots[i] = sc.push(name, typ)
		}
	}
	if undefined != "" {
		return func(s *state, dot reflect.Value) reflect.Value {
			val(s, dot)
			s.errorf("undefined variable: %s", undefined)
			return reflect.Value{}
		}, typ
	}
	if len(slots) == 1 {
		slot := slots[0]
		return func(s *state, dot reflect.Value) reflect.Value {
			v := val(s, dot)
			s.vars[s.base+slot] = v
			return v
		}, typ
	}
	return func(s *state, dot reflect.Value) reflect.Value {
		v := val(s, dot)
		for _, slot := range slots {
			s.vars[s.base+slot] = v
		}
		return v
	}, typ
}

// compileCmds compiles the commands of a pipeline, chaining each command's
// value into the next as its final argument.
func (c *compiler) compileCmds(cmds []*parse.CommandNode, sc *scope, dot reflect.Type) (evalFn, reflect.Type) {
	if len(cmds) == 0 {
		unsupportedf("empty pipeline")
	}
	// text/template unwraps values of type interface{} after each
	// command; no value here is one.
	fns := make([]cmdFn, len(cmds))
	var typ reflect.Type
	for i, cmd := range cmds {
		fns[i], typ = c.compileCmd(cmd, sc, dot, i > 0)
	}
	if len(fns) == 1 {
		f := fns[0]
		return func(s *state, dot reflect.Value) reflect.Value { return f(s, dot, reflect.Value{}) }, typ
	}
	return func(s *state, dot reflect.Value) reflect.Value {
		var v reflect.Value
		for _, f := range fns {
			v = f(s, dot, v)
		}
		return v
	}, typ
}

func errCmd(msg string) cmdFn {
	return func(s *state, _, _ reflect.Value) reflect.Value {
		s.fail(msg)
		return reflect.Value{}
	}
}

func constCmd(v reflect.Value) cmdFn {
	return func(*state, reflect.Value, reflect.Value) reflect.Value { return v }
}

// compileCmd compiles one command. hasFinal reports whether the command
// receives the previous command's value as a final argument.
func (c *compiler) compileCmd(cmd *parse.CommandNode, sc *scope, dot reflect.Type, hasFinal bool) (cmdFn, reflect.Type) {
	args := cmd.Args[1:]
	notAFunction := func() cmdFn {
		if len(args) > 0 || hasFinal {
			return errCmd(fmt.Sprintf("can't give argument to non-function %s", cmd.Args[0]))
		}
		return nil
	}
	switch n := cmd.Args[0].(type) {
	case *parse.FieldNode:
		return c.compileFieldChain(nil, dot, n.Ident, args, hasFinal, sc, dot)
	case *parse.ChainNode:
		if n.Node.Type() == parse.NodeNil {
			return errCmd(fmt.Sprintf("indirection through explicit nil in %s", n)), nil
		}
		recv, rtyp := c.compileArgExpr(n.Node, sc, dot)
		return c.compileFieldChain(recv, rtyp, n.Field, args, hasFinal, sc, dot)
	case *parse.IdentifierNode:
		return c.compileFunc(n.Ident, args, hasFinal, sc, dot)
	case *parse.PipeNode:
		if e := notAFunction(); e != nil {
			return e, nil
		}
		if len(n.Decl) > 0 {
			unsupportedf("variable declaration inside a parenthesized pipeline")
		}
		f, t := c.compileCmds(n.Cmds, sc, dot)
		return func(s *state, dot, _ reflect.Value) reflect.Value { return f(s, dot) }, t
	case *parse.VariableNode:
		slot, vtyp := sc.lookup(n.Ident[0])
		if slot < 0 {
			return errCmd("undefined variable: " + n.Ident[0]), nil
		}
		if len(n.Ident) == 1 {
			if e := notAFunction(); e != nil {
				return e, nil
			}
			return func(s *state, _, _ reflect.Value) reflect.Value { return s.vars[s.base+slot] }, vtyp
		}
		recv := func(s *state, _ reflect.Value) reflect.Value { return s.vars[s.base+slot] }
		return c.compileFieldChain(recv, vtyp, n.Ident[1:], args, hasFinal, sc, dot)
	}
	if e := notAFunction(); e != nil {
		return e, nil
	}
	switch n := cmd.Args[0].(type) {
	case *parse.BoolNode:
		return constCmd(reflect.ValueOf(n.True)), boolType
	case *parse.DotNode:
		return func(_ *state, dot, _ reflect.Value) reflect.Value { return dot }, dot
	case *parse.NilNode:
		return errCmd("nil is not a command"), nil
	case *parse.NumberNode:
		v, err := idealConstant(n)
		if err != nil {
			return errCmd(err.Error()), nil
		}
		return constCmd(v), typeOf(v)
	case *parse.StringNode:
		return constCmd(reflect.ValueOf(n.Text)), stringType
	}
	return errCmd(fmt.Sprintf("can't evaluate command %q", cmd.Args[0])), nil
}

func typeOf(v reflect.Value) reflect.Type {
	if !v.IsValid() {
		return nil
	}
	return v.Type()
}

// compileArgExpr compiles a non-constant argument node to its raw value, as
// text/template evaluates it before type validation. Constant nodes are
// handled by the callers because their value depends on the parameter type.
func (c *compiler) compileArgExpr(n parse.Node, sc *scope, dot reflect.Type) (evalFn, reflect.Type) {
	switch n := n.(type) {
	case *parse.DotNode:
		return func(_ *state, dot reflect.Value) reflect.Value { return dot }, dot
	case *parse.FieldNode:
		f, t := c.compileFieldChain(nil, dot, n.Ident, nil, false, sc, dot)
		return func(s *state, dot reflect.Value) reflect.Value { return f(s, dot, reflect.Value{}) }, t
	case *parse.VariableNode:
		slot, vtyp := sc.lookup(n.Ident[0])
		if slot < 0 {
			name := n.Ident[0]
			return func(s *state, _ reflect.Value) reflect.Value {
				s.errorf("undefined variable: %s", name)
				return reflect.Value{}
			}, nil
		}
		if len(n.Ident) == 1 {
			return func(s *state, _ reflect.Value) reflect.Value { return s.vars[s.base+slot] }, vtyp
		}
		recv := func(s *state, _ reflect.Value) reflect.Value { return s.vars[s.base+slot] }
		f, t := c.compileFieldChain(recv, vtyp, n.Ident[1:], nil, false, sc, dot)
		return func(s *state, dot reflect.Value) reflect.Value { return f(s, dot, reflect.Value{}) }, t
	case *parse.PipeNode:
		if len(n.Decl) > 0 {
			unsupportedf("variable declaration inside a parenthesized pipeline")
		}
		return c.compileCmds(n.Cmds, sc, dot)
	case *parse.IdentifierNode:
		f, t := c.compileFunc(n.Ident, nil, false, sc, dot)
		return func(s *state, dot reflect.Value) reflect.Value { return f(s, dot, reflect.Value{}) }, t
	case *parse.ChainNode:
		if n.Node.Type() == parse.NodeNil {
			msg := fmt.Sprintf("indirection through explicit nil in %s", n)
			return func(s *state, _ reflect.Value) reflect.Value { s.fail(msg); return reflect.Value{} }, nil
		}
		recv, rtyp := c.compileArgExpr(n.Node, sc, dot)
		f, t := c.compileFieldChain(recv, rtyp, n.Field, nil, false, sc, dot)
		return func(s *state, dot reflect.Value) reflect.Value { return f(s, dot, reflect.Value{}) }, t
	}
	unsupportedf("argument node %T", n)
	return nil, nil
}

func isConstNode(n parse.Node) bool {
	switch n.(type) {
	case *parse.BoolNode, *parse.NumberNode, *parse.StringNode, *parse.NilNode:
		return true
	}
	return false
}

// compileStringArg compiles an argument for a string parameter (printf's
// format), reproducing text/template's evalArg.
func (c *compiler) compileStringArg(n parse.Node, sc *scope, dot reflect.Type) evalFn {
	if isConstNode(n) {
		v, err := constString(n)
		if err != nil {
			msg := err.Error()
			return func(s *state, _ reflect.Value) reflect.Value { s.fail(msg); return reflect.Value{} }
		}
		return func(*state, reflect.Value) reflect.Value { return v }
	}
	e, _ := c.compileArgExpr(n, sc, dot)
	return func(s *state, dot reflect.Value) reflect.Value { return s.validateString(e(s, dot)) }
}

// compileArgRaw compiles an argument for a builtin parameter of type
// reflect.Value: the builtin sees the raw value (invalid for nil).
func (c *compiler) compileArgRaw(n parse.Node, sc *scope, dot reflect.Type) (evalFn, reflect.Type) {
	switch n := n.(type) {
	case *parse.NilNode:
		return func(*state, reflect.Value) reflect.Value { return reflect.Value{} }, nil
	case *parse.BoolNode, *parse.NumberNode, *parse.StringNode:
		v, err := emptyIfaceConst(n)
		if err != nil {
			msg := err.Error()
			return func(s *state, _ reflect.Value) reflect.Value { s.fail(msg); return reflect.Value{} }, nil
		}
		return func(*state, reflect.Value) reflect.Value { return v }, typeOf(v)
	}
	return c.compileArgExpr(n, sc, dot)
}

// compileFieldChain compiles recv.F1.F2...Fn; args and the pipeline's
// final value given to the last field are an error, as fields are not
// functions. recv nil means dot.
func (c *compiler) compileFieldChain(recv evalFn, rtyp reflect.Type, idents []string, args []parse.Node, hasFinal bool, sc *scope, dot reflect.Type) (cmdFn, reflect.Type) {
	if recv == nil {
		recv = func(_ *state, dot reflect.Value) reflect.Value { return dot }
	}
	cur, typ := recv, rtyp
	var ops []pathOp // pending static struct-field operations
	flush := func() {
		if len(ops) == 0 {
			return
		}
		cur = pathFn(cur, ops)
		ops = nil
	}
	for i, name := range idents {
		last := i == len(idents)-1
		hasArgs := last && (len(args) > 0 || hasFinal)
		st := classifyField(typ, name)
		switch {
		case st.kind == stepStruct && !hasArgs:
			ops = append(ops, st.ops...)
			typ = st.result
			continue
		case st.kind == stepStruct:
			flush()
			cur = errStep(cur, fmt.Sprintf("%s has arguments but cannot be invoked as function", name))
			typ = nil
		case st.kind == stepError:
			flush()
			cur = errStep(cur, st.msg)
			typ = nil
		default: // a value whose type is known only at run time
			flush()
			prev := cur
			fieldName := name
			cur = func(s *state, dot reflect.Value) reflect.Value {
				return s.evalFieldDyn(fieldName, hasArgs, prev(s, dot))
			}
			typ = nil
		}
	}
	flush()
	f := cur
	return func(s *state, dot, _ reflect.Value) reflect.Value { return f(s, dot) }, typ
}

type stepKind int

const (
	stepDynamic stepKind = iota
	stepStruct
	stepError
)

type fieldStep struct {
	kind   stepKind
	ops    []pathOp // stepStruct
	result reflect.Type
	msg    string // stepError
}

// pathOp is one static operation on the way to a struct field: either a
// pointer dereference (field < 0) or a field selection by index.
type pathOp struct {
	field  int
	offset uintptr // byte offset of the field in its struct
	msg    string  // error if the dereferenced pointer is nil
}

// classifyField decides at compile time how .name is evaluated on a value of
// static type t.
func classifyField(t reflect.Type, name string) fieldStep {
	if t == nil {
		return fieldStep{kind: stepDynamic}
	}
	base, derefs := t, 0
	for base.Kind() == reflect.Pointer {
		base = base.Elem()
		derefs++
	}
	nilMsg := fmt.Sprintf("nil pointer evaluating %s.%s", t, name)
	switch base.Kind() {
	case reflect.Struct:
		sf, ok := base.FieldByName(name)
		if !ok {
			return fieldStep{kind: stepError, msg: fmt.Sprintf("can't evaluate field %s in type %s", name, t)}
		}
		if !sf.IsExported() {
			return fieldStep{kind: stepError, msg: fmt.Sprintf("%s is an unexported field of struct type %s", name, t)}
		}
		var ops []pathOp
		for i := 0; i < derefs; i++ {
			ops = append(ops, pathOp{field: -1, msg: nilMsg})
		}
		// Walk embedded structs, dereferencing embedded pointers.
		cur := base
		for j, idx := range sf.Index {
			if j > 0 && cur.Kind() == reflect.Pointer {
				ops = append(ops, pathOp{field: -1, msg: "reflect: indirection through nil pointer to embedded struct field " + cur.Elem().Name()})
				cur = cur.Elem()
			}
			ops = append(ops, pathOp{field: idx, offset: cur.Field(idx).Offset})
			cur = cur.Field(idx).Type
		}
		return fieldStep{kind: stepStruct, ops: ops, result: sf.Type}
	}
	return fieldStep{kind: stepError, msg: fmt.Sprintf("can't evaluate field %s in type %s", name, t)}
}

func pathFn(prev evalFn, ops []pathOp) evalFn {
	if len(ops) == 1 && ops[0].field >= 0 {
		i := ops[0].field
		return func(s *state, dot reflect.Value) reflect.Value {
			v := prev(s, dot)
			if !v.IsValid() {
				return v
			}
			return v.Field(i)
		}
	}
	if len(ops) == 2 && ops[0].field < 0 && ops[1].field >= 0 {
		msg, i := ops[0].msg, ops[1].field
		return func(s *state, dot reflect.Value) reflect.Value {
			v := prev(s, dot)
			if !v.IsValid() {
				return v
			}
			if v.IsNil() {
				s.fail(msg)
			}
			return v.Elem().Field(i)
		}
	}
	return func(s *state, dot reflect.Value) reflect.Value {
		v := prev(s, dot)
		if !v.IsValid() {
			return v
		}
		for i := range ops {
			op := &ops[i]
			if op.field >= 0 {
				v = v.Field(op.field)
				continue
			}
			if v.IsNil() {
				s.fail(op.msg)
			}
			v = v.Elem()
		}
		return v
	}
}

func errStep(prev evalFn, msg string) evalFn {
	return func(s *state, dot reflect.Value) reflect.Value {
		v := prev(s, dot)
		if !v.IsValid() {
			return v
		}
		s.fail(msg)
		return reflect.Value{}
	}
}

// compileFunc compiles a call of the named builtin.
func (c *compiler) compileFunc(name string, args []parse.Node, hasFinal bool, sc *scope, dot reflect.Type) (cmdFn, reflect.Type) {
	if b, ok := builtinCompilers[name]; ok {
		return b(c, name, args, hasFinal, sc, dot)
	}
	unsupportedf("function %q", name)
	return nil, nil
}

// checkArity reproduces evalCall's argument count check.
func checkArity(name string, typ reflect.Type, nArgs int, hasFinal bool) string {
	numIn := nArgs
	if hasFinal {
		numIn++
	}
	if typ.IsVariadic() {
		if numIn < typ.NumIn()-1 {
			return fmt.Sprintf("wrong number of args for %s: want at least %d got %d", name, typ.NumIn()-1, nArgs)
		}
	} else if numIn != typ.NumIn() {
		return fmt.Sprintf("wrong number of args for %s: want %d got %d", name, typ.NumIn(), numIn)
	}
	return ""
}

// evalFieldDyn evaluates .name on receiver by its dynamic type, as
// text/template does on values without methods: a struct field, or an
// error. An invalid receiver (the dot of a template called without one)
// yields the invalid value.
func (s *state) evalFieldDyn(name string, hasArgs bool, receiver reflect.Value) reflect.Value {
	if !receiver.IsValid() {
		return reflect.Value{}
	}
	origType := receiver.Type()
	v, isNil := indirect(receiver)
	switch v.Kind() {
	case reflect.Struct:
		if sf, ok := v.Type().FieldByName(name); ok {
			switch {
			case !sf.IsExported():
				s.errorf("%s is an unexported field of struct type %s", name, origType)
			case hasArgs:
				s.errorf("%s has arguments but cannot be invoked as function", name)
			}
			return v.FieldByIndex(sf.Index)
		}
	case reflect.Pointer:
		// Only nil pointers remain pointers after indirect.
		if isNil && hasField(v.Type().Elem(), name) {
			s.errorf("nil pointer evaluating %s.%s", origType, name)
		}
	}
	s.errorf("can't evaluate field %s in type %s", name, origType)
	return reflect.Value{}
}

func hasField(t reflect.Type, name string) bool {
	_, ok := t.FieldByName(name)
	return ok
}

// ---- constants -------------------------------------------------------------

func isHexInt(s string) bool {
	return len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && !strings.ContainsAny(s, "pP")
}

// idealConstant gives an untyped number constant its default type.
func idealConstant(n *parse.NumberNode) (reflect.Value, error) {
	switch {
	case n.IsComplex:
		return reflect.ValueOf(n.Complex128), nil
	case n.IsFloat && !isHexInt(n.Text) && !(len(n.Text) > 0 && n.Text[0] == '\'') &&
		strings.ContainsAny(n.Text, ".eEpP"):
		return reflect.ValueOf(n.Float64), nil
	case n.IsInt:
		i := int(n.Int64)
		if int64(i) != n.Int64 {
			return reflect.Value{}, fmt.Errorf("%s overflows int", n.Text)
		}
		return reflect.ValueOf(i), nil
	case n.IsUint:
		return reflect.Value{}, fmt.Errorf("%s overflows int", n.Text)
	}
	return reflect.Value{}, nil
}

// emptyIfaceConst is the value of a constant passed where any is expected.
func emptyIfaceConst(n parse.Node) (reflect.Value, error) {
	switch n := n.(type) {
	case *parse.BoolNode:
		return reflect.ValueOf(n.True), nil
	case *parse.NumberNode:
		return idealConstant(n)
	case *parse.StringNode:
		return reflect.ValueOf(n.Text), nil
	}
	return reflect.Value{}, fmt.Errorf("can't handle assignment of %s to empty interface argument", n)
}

// constString converts a constant argument node for a string parameter,
// as text/template does: only a string constant will do.
func constString(n parse.Node) (reflect.Value, error) {
	switch n := n.(type) {
	case *parse.StringNode:
		return reflect.ValueOf(n.Text), nil
	case *parse.NilNode:
		return reflect.Value{}, fmt.Errorf("cannot assign nil to string")
	}
	return reflect.Value{}, fmt.Errorf("expected string; found %s", n)
}
