package tmplbudget

import (
	"fmt"
	htmltemplate "html/template"
	"io"
	"sync"
	texttemplate "text/template"
	"text/template/parse"
	"time"
)

// stepFunc is the function the steps inserted into a template call.
const stepFunc = "_tmplbudget_step"

// Runner executes a text/template or html/template set within Limits. It
// is safe for concurrent use.
//
// text/template and html/template offer no hook that runs at every loop
// iteration or template call, so Runner executes instrumented copies of
// the set: a step ({{if _tmplbudget_step}}{{end}}, which writes nothing and
// leaves html/template's escaping contexts as they are) opens the body of
// every template and of every loop, and the builtins that build strings
// are replaced by bounded versions. A copy's functions are bound to the
// copy's own Meter, so a copy runs one execution at a time; Runner keeps
// as many as there are executions at once.
//
// An execution thus counts one step for the template it runs, one for
// every template call and one for every loop iteration.
type Runner struct {
	name    string
	newCopy func(*Meter) (func(io.Writer, any) error, error)
	mu      sync.Mutex
	free    []*instance
}

type instance struct {
	meter Meter
	w     meteredWriter
	exec  func(io.Writer, any) error
}

// NewHTML returns a Runner of t, an html/template parsed with funcs (nil
// if none) and not executed yet; t itself is left as it is.
func NewHTML(t *htmltemplate.Template, funcs htmltemplate.FuncMap) (*Runner, error) {
	if _, clash := funcs[stepFunc]; clash {
		return nil, fmt.Errorf("tmplbudget: function name %s is reserved", stepFunc)
	}
	master, err := t.Clone() // copies the trees
	if err != nil {
		return nil, err
	}
	for _, x := range master.Templates() {
		instrumentTemplate(x.Tree)
	}
	return &Runner{name: t.Name(), newCopy: func(m *Meter) (func(io.Writer, any) error, error) {
		c, err := master.Clone()
		if err != nil {
			return nil, err
		}
		return c.Funcs(m.funcs(true, funcs)).Execute, nil
	}}, nil
}

// NewText returns a Runner of t, a text/template parsed with funcs (nil if
// none); t itself is left as it is.
func NewText(t *texttemplate.Template, funcs texttemplate.FuncMap) (*Runner, error) {
	if _, clash := funcs[stepFunc]; clash {
		return nil, fmt.Errorf("tmplbudget: function name %s is reserved", stepFunc)
	}
	master, err := t.Clone() // shares the trees
	if err != nil {
		return nil, err
	}
	for _, x := range master.Templates() {
		if x.Tree != nil {
			x.Tree = x.Tree.Copy()
			instrumentTemplate(x.Tree)
		}
	}
	return &Runner{name: t.Name(), newCopy: func(m *Meter) (func(io.Writer, any) error, error) {
		c, err := master.Clone()
		if err != nil {
			return nil, err
		}
		return c.Funcs(m.funcs(false, funcs)).Execute, nil
	}}, nil
}

// Prepare makes a copy of the template ready for an execution. Making one
// (copying the set and, for html/template, escaping it) takes time no
// budget counts: Execute moves the deadline of an execution that has to
// make one, but a caller that shares one deadline between several
// executions prepares them first.
func (r *Runner) Prepare() error {
	inst, _, err := r.get()
	if err != nil {
		return err
	}
	r.put(inst)
	return nil
}

// Execute renders data into w within lim. An execution that runs out of
// a budget fails with a text/template ExecError wrapping ErrSteps,
// ErrBytes or ErrTime; output before the failure is left in w, but no
// write that would go over the output budget is made.
func (r *Runner) Execute(w io.Writer, data any, lim Limits) error {
	inst, making, err := r.get()
	if err != nil {
		return err
	}
	defer r.put(inst)
	if !lim.Deadline.IsZero() {
		lim.Deadline = lim.Deadline.Add(making)
	}
	inst.meter.Start(lim)
	inst.w = meteredWriter{w: w, m: &inst.meter}
	err = inst.exec(&inst.w, data)
	inst.w = meteredWriter{}
	if e := inst.meter.Err(); e != nil {
		// The budget, not where text/template noticed it (inside a
		// builtin, or a write).
		return texttemplate.ExecError{Name: r.name, Err: fmt.Errorf("template: %s: %w", r.name, e)}
	}
	return err
}

// get takes a free copy, or makes one and says how long that took.
func (r *Runner) get() (inst *instance, making time.Duration, err error) {
	r.mu.Lock()
	if n := len(r.free); n > 0 {
		inst := r.free[n-1]
		r.free = r.free[:n-1]
		r.mu.Unlock()
		return inst, 0, nil
	}
	r.mu.Unlock()
	start := time.Now()
	inst = &instance{}
	if inst.exec, err = r.newCopy(&inst.meter); err != nil {
		return nil, 0, err
	}
	// html/template escapes a set when it first executes it. Executing
	// the copy with a meter that stops at the first step, which opens the
	// template, escapes it and runs nothing else. An escaping error is
	// kept by the copy and returned by every execution.
	inst.meter.halt()
	_ = inst.exec(io.Discard, nil)
	return inst, time.Since(start), nil
}

func (r *Runner) put(inst *instance) {
	r.mu.Lock()
	r.free = append(r.free, inst)
	r.mu.Unlock()
}

// meteredWriter refuses a write that would take the output over the
// budget.
type meteredWriter struct {
	w io.Writer
	m *Meter
	n int
}

func (w *meteredWriter) Write(p []byte) (int, error) {
	if err := w.m.Size(w.n + len(p)); err != nil {
		return 0, err
	}
	w.n += len(p)
	return w.w.Write(p)
}

// instrumentTemplate inserts a step at the start of a template's body and
// of every loop body in it.
func instrumentTemplate(t *parse.Tree) {
	if t == nil || t.Root == nil {
		return
	}
	instrument(t.Root)
	t.Root.Nodes = append([]parse.Node{step()}, t.Root.Nodes...)
}

// instrument inserts a step at the start of every loop body under n.
func instrument(n parse.Node) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			instrument(c)
		}
	case *parse.IfNode:
		instrument(n.List)
		instrument(n.ElseList)
	case *parse.WithNode:
		instrument(n.List)
		instrument(n.ElseList)
	case *parse.RangeNode:
		instrument(n.List)
		n.List.Nodes = append([]parse.Node{step()}, n.List.Nodes...)
		instrument(n.ElseList)
	}
}

// step is {{if _tmplbudget_step}}{{end}}. Its position is 0, so that an
// error text/template reports at it is located even in the trees
// html/template derives, which have no source text.
func step() parse.Node {
	cmd := &parse.CommandNode{NodeType: parse.NodeCommand, Args: []parse.Node{parse.NewIdentifier(stepFunc)}}
	pipe := &parse.PipeNode{NodeType: parse.NodePipe, Cmds: []*parse.CommandNode{cmd}}
	return &parse.IfNode{BranchNode: parse.BranchNode{NodeType: parse.NodeIf, Pipe: pipe,
		List: &parse.ListNode{NodeType: parse.NodeList}}}
}
