package tmplbudget

import (
	"fmt"
	htmltemplate "html/template"
	"io"
	"sync"
	texttemplate "text/template"
	"text/template/parse"
)

// stepFunc is the function the steps inserted into a template call.
const stepFunc = "_tmplbudget_step"

// Runner executes a text/template or html/template set within Limits. It
// is safe for concurrent use.
//
// text/template and html/template offer no hook that runs at every loop
// iteration or template call, so Runner executes instrumented copies of
// the set: a step ({{if _tmplbudget_step}}{{end}}, which writes nothing and
// leaves html/template's escaping contexts as they are) opens every loop
// body and precedes every template call, and the builtins that build
// strings are replaced by bounded versions. A copy's functions are bound
// to the copy's own Meter, so a copy runs one execution at a time; Runner
// keeps as many as there are executions at once.
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
		if x.Tree != nil {
			instrument(x.Tree.Root)
		}
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
			instrument(x.Tree.Root)
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

// Execute renders data into w within lim. An execution that runs out of
// a budget fails with a text/template ExecError wrapping ErrSteps,
// ErrBytes or ErrTime; output before the failure is left in w, but no
// write that would go over the output budget is made.
func (r *Runner) Execute(w io.Writer, data any, lim Limits) error {
	inst, err := r.get()
	if err != nil {
		return err
	}
	defer r.put(inst)
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

func (r *Runner) get() (*instance, error) {
	r.mu.Lock()
	if n := len(r.free); n > 0 {
		inst := r.free[n-1]
		r.free = r.free[:n-1]
		r.mu.Unlock()
		return inst, nil
	}
	r.mu.Unlock()
	inst := &instance{}
	exec, err := r.newCopy(&inst.meter)
	if err != nil {
		return nil, err
	}
	inst.exec = exec
	return inst, nil
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

// instrument inserts a step at the start of every loop body and before
// every template call under n.
func instrument(n parse.Node) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		nodes := make([]parse.Node, 0, len(n.Nodes))
		for _, c := range n.Nodes {
			if _, call := c.(*parse.TemplateNode); call {
				nodes = append(nodes, step())
			}
			instrument(c)
			nodes = append(nodes, c)
		}
		n.Nodes = nodes
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
