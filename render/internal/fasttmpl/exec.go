package fasttmpl

import (
	"fmt"
	"reflect"
	texttemplate "text/template"
	"unsafe"

	"herald/shared/tmplbudget"
)

// state is the per-render scratch space. It is pooled per Template, so a
// render allocates nothing of its own on the common paths.
type state struct {
	out  []byte
	vars []reflect.Value // variable slots; each template call owns a frame
	base int             // first slot of the current frame
	name string          // template currently executing, for error messages
	tmp  [3][]byte       // scratch for escaper chains (0,1) and hole sources (2)

	// The budget of the current execution (see ExecuteLimited).
	meter  tmplbudget.Meter
	maxOut int // len(out) may not exceed it: the meter's MaxBytes

	reader renderReader // kept here so Execute does not allocate it
}

// execPanic carries an execution error up to Execute. Errors are raised with
// panic, like text/template does, so the evaluation code needs no error
// plumbing on its hot paths.
type execPanic struct{ err error }

func (s *state) errorf(format string, args ...any) {
	panic(execPanic{texttemplate.ExecError{
		Name: s.name,
		Err:  fmt.Errorf("template: %s: "+format, append([]any{s.name}, args...)...),
	}})
}

// checkOutput fails the execution if its output is over the budget.
func (s *state) checkOutput() {
	if len(s.out) > s.maxOut {
		s.overOutput()
	}
}

// overOutput is checkOutput's failure, kept out of line so checkOutput
// inlines.
func (s *state) overOutput() {
	s.budget(s.meter.Size(len(s.out)))
}

// tick counts a step (the template's body, a template call or a loop
// iteration) and checks the budget: the output every time, the steps and,
// every tmplbudget.ClockEvery steps, the clock.
func (s *state) tick() {
	s.checkOutput()
	if err := s.meter.Step(); err != nil {
		s.budget(err)
	}
}

// budget fails the execution with err, a budget it ran out of (nil: none).
func (s *state) budget(err error) {
	if err != nil {
		s.errorf("%w", err)
	}
}

// fail raises an already formatted error (used for errors found at compile
// time that must only surface if the offending code actually runs).
func (s *state) fail(msg string) {
	s.errorf("%s", msg)
}

// view returns a string sharing b's memory. The caller must not modify b
// while the string is in use; scratch buffers are only rewritten by the next
// hole, after the string is dead.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// ctrl reports break/continue from the body of a range loop.
type ctrl uint8

const (
	ctrlNone ctrl = iota
	ctrlBreak
	ctrlContinue
)

// node is a compiled piece of template that writes output.
type node interface {
	exec(s *state, dot reflect.Value) ctrl
}

// evalFn evaluates an expression to a value.
type evalFn func(s *state, dot reflect.Value) reflect.Value

// cmdFn evaluates a pipeline command that may receive the previous command's
// value as its final argument.
type cmdFn func(s *state, dot, final reflect.Value) reflect.Value

type listNode []node

func (l listNode) exec(s *state, dot reflect.Value) ctrl {
	for _, n := range l {
		if c := n.exec(s, dot); c != ctrlNone {
			return c
		}
	}
	return ctrlNone
}

type textNode []byte

func (t textNode) exec(s *state, _ reflect.Value) ctrl {
	s.out = append(s.out, t...)
	return ctrlNone
}

type ctrlNode ctrl

func (c ctrlNode) exec(*state, reflect.Value) ctrl { return ctrl(c) }

// evalNode runs an action that only declares or assigns variables.
type evalNode struct{ e evalFn }

func (n evalNode) exec(s *state, dot reflect.Value) ctrl {
	n.e(s, dot)
	return ctrlNone
}

// textSrc produces the string an escaper chain starts from.
type textSrc interface {
	text(s *state, dot reflect.Value) string
}

// holeNode is an output action: a source followed by escapers.
type holeNode struct {
	pre   []byte // static text emitted before the value
	src   textSrc
	chain []escFunc // at least one
}

func (h *holeNode) exec(s *state, dot reflect.Value) ctrl {
	// The text precedes the action, so it is written even if evaluating
	// the action fails, as in html/template.
	s.out = append(s.out, h.pre...)
	str := h.src.text(s, dot)
	n := len(h.chain)
	if n == 1 {
		s.out = h.chain[0](s.out, str)
		s.checkOutput()
		return ctrlNone
	}
	b := h.chain[0](s.tmp[0][:0], str)
	s.tmp[0] = b
	for i := 1; i < n-1; i++ {
		j := i & 1
		nb := h.chain[i](s.tmp[j][:0], view(b))
		s.tmp[j] = nb
		b = nb
	}
	s.out = h.chain[n-1](s.out, view(b))
	s.checkOutput()
	return ctrlNone
}

// printNode prints a value the way text/template does: text actions whose
// value is no plain string, number or bool (html/template ends every
// action with escapers).
type printNode struct{ e evalFn }

func (n printNode) exec(s *state, dot reflect.Value) ctrl {
	s.out = fmt.Append(s.out, printableValue(n.e(s, dot)))
	s.checkOutput()
	return ctrlNone
}

// ifNode implements both if and with.
type ifNode struct {
	cond     evalFn
	with     bool
	list     node
	elseList node // may be nil
}

func (n *ifNode) exec(s *state, dot reflect.Value) ctrl {
	val := n.cond(s, dot)
	t, ok := isTrue(val)
	if !ok {
		s.errorf("if/with can't use %v", val)
	}
	if t {
		if n.with {
			return n.list.exec(s, val)
		}
		return n.list.exec(s, dot)
	}
	if n.elseList != nil {
		return n.elseList.exec(s, dot)
	}
	return ctrlNone
}

// boolIfNode is an if whose condition is statically a bool-kinded value.
type boolIfNode struct {
	cond     evalFn
	list     node
	elseList node
}

func (n *boolIfNode) exec(s *state, dot reflect.Value) ctrl {
	v := n.cond(s, dot)
	if v.IsValid() && v.Bool() {
		return n.list.exec(s, dot)
	}
	if n.elseList != nil {
		return n.elseList.exec(s, dot)
	}
	return ctrlNone
}

// stringIfNode is an if whose condition is statically a string-kinded value.
type stringIfNode struct {
	cond     evalFn
	list     node
	elseList node
}

func (n *stringIfNode) exec(s *state, dot reflect.Value) ctrl {
	v := n.cond(s, dot)
	if v.IsValid() && v.Len() > 0 {
		return n.list.exec(s, dot)
	}
	if n.elseList != nil {
		return n.elseList.exec(s, dot)
	}
	return ctrlNone
}

// rangeNode implements range with text/template's variable rules, over
// the lists emailtemplate.Check lets a loop range over: a slice (an array
// behaves the same), or nothing at all for the invalid value.
type rangeNode struct {
	pipe     evalFn
	nDecl    int
	isAssign bool
	slots    [2]int    // frame slots of the declared variables
	unset    [2]string // for assignments to undefined variables: their names
	list     node
	elseList node
}

func (n *rangeNode) setSlot(s *state, i int, v reflect.Value) {
	if n.unset[i] != "" {
		s.errorf("undefined variable: %s", n.unset[i])
	}
	s.vars[s.base+n.slots[i]] = v
}

func (n *rangeNode) iteration(s *state, index, elem reflect.Value) ctrl {
	s.tick()
	switch n.nDecl {
	case 1:
		n.setSlot(s, 0, elem)
	case 2:
		if n.isAssign {
			n.setSlot(s, 0, index)
			n.setSlot(s, 1, elem)
		} else {
			n.setSlot(s, 1, elem)
			n.setSlot(s, 0, index)
		}
	}
	return n.list.exec(s, elem)
}

func (n *rangeNode) exec(s *state, dot reflect.Value) ctrl {
	val := n.pipe(s, dot)
	for i := 0; i < n.nDecl; i++ {
		n.setSlot(s, i, val)
	}
	val, _ = indirect(val)
	switch val.Kind() {
	case reflect.Array, reflect.Slice:
		l := val.Len()
		if l == 0 {
			break
		}
		for i := 0; i < l; i++ {
			var idx reflect.Value
			if n.nDecl > 1 {
				idx = reflect.ValueOf(i)
			}
			if n.iteration(s, idx, val.Index(i)) == ctrlBreak {
				break
			}
		}
		return ctrlNone
	case reflect.Invalid:
		// The dot of a template called without one: no iterations.
	default:
		s.errorf("range can't iterate over %v", val)
	}
	if n.elseList != nil {
		return n.elseList.exec(s, dot)
	}
	return ctrlNone
}

// callNode invokes another template with a fresh variable frame.
type callNode struct {
	caller *program
	callee *program
	pipe   evalFn // nil: the callee's dot is the invalid value
}

// Check refuses recursion and bounds how deeply calls nest, so unlike
// text/template's this needs no depth limit.
func (n *callNode) exec(s *state, dot reflect.Value) ctrl {
	s.tick()
	var newDot reflect.Value
	if n.pipe != nil {
		newDot = n.pipe(s, dot)
	}
	oldBase, oldName := s.base, s.name
	base := oldBase + n.caller.frame
	if need := base + n.callee.frame; need > len(s.vars) {
		s.vars = append(s.vars, make([]reflect.Value, need-len(s.vars))...)
	}
	s.vars[base] = newDot
	s.base, s.name = base, n.callee.name
	n.callee.root.exec(s, newDot)
	s.base, s.name = oldBase, oldName
	return ctrlNone
}
