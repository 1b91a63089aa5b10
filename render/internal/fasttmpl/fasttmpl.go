package fasttmpl

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io"
	"reflect"
	"sync"
	"sync/atomic"
	texttemplate "text/template"
	"text/template/parse"

	"herald/shared/tmplbudget"
)

// Template is a compiled email template. It is safe for concurrent use.
type Template struct {
	name     string
	dataType reflect.Type
	fallback *tmplbudget.Runner // html/template (or text/template), used when not fast
	prog     *program           // nil when falling back
	reason   string             // why the template falls back
	pool     sync.Pool          // *state
	hint     atomic.Int64       // expected output size, to grow the buffer once
}

// Compile parses src as an html/template named name with the given extra funcs
// (may be nil) and compiles it for data of type dataType (a struct or pointer to struct).
//
// Parse and escaping errors are returned as html/template reports them. A
// template whose constructs the compiler cannot reproduce exactly still
// compiles; it then renders through html/template (see Fast).
func Compile(name, src string, funcs template.FuncMap, dataType reflect.Type) (t *Template, err error) {
	if dataType == nil {
		return nil, errors.New("fasttmpl: nil data type")
	}
	defer func() {
		// html/template panics on invalid FuncMap entries.
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("fasttmpl: %v", r)
		}
	}()
	orig, err := template.New(name).Funcs(funcs).Parse(src)
	if err != nil {
		return nil, err
	}
	escaped, err := escapedClone(orig, funcs)
	if err != nil {
		return nil, err
	}
	fallback, err := tmplbudget.NewHTML(orig, funcs)
	if err != nil {
		return nil, err
	}
	t = &Template{name: name, dataType: dataType, fallback: fallback}
	t.pool.New = func() any { return new(state) }
	lookup := func(name string) *parse.Tree {
		if t := escaped.Lookup(name); t != nil {
			return t.Tree
		}
		return nil
	}
	t.prog, t.reason = compileProgram(lookup, false, name, funcs, dataType)
	if t.prog == nil {
		// Copying and escaping the fallback's copy is no execution's to
		// pay for.
		if err := t.fallback.Prepare(); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// CompileText is Compile for text/template: src is parsed by text/template
// and the output is byte-identical to text/template's, with no escaping.
// Email subjects, preheaders and plain-text bodies use it.
func CompileText(name, src string, funcs texttemplate.FuncMap, dataType reflect.Type) (t *Template, err error) {
	if dataType == nil {
		return nil, errors.New("fasttmpl: nil data type")
	}
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("fasttmpl: %v", r)
		}
	}()
	orig, err := texttemplate.New(name).Funcs(funcs).Parse(src)
	if err != nil {
		return nil, err
	}
	fallback, err := tmplbudget.NewText(orig, funcs)
	if err != nil {
		return nil, err
	}
	t = &Template{name: name, dataType: dataType, fallback: fallback}
	t.pool.New = func() any { return new(state) }
	lookup := func(name string) *parse.Tree {
		if t := orig.Lookup(name); t != nil {
			return t.Tree
		}
		return nil
	}
	t.prog, t.reason = compileProgram(lookup, true, name, template.FuncMap(funcs), dataType)
	if t.prog == nil {
		if err := t.fallback.Prepare(); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// errStopWrite aborts the execution that triggers html/template's escaping.
var errStopWrite = errors.New("fasttmpl: stop")

type stopWriter struct{}

func (stopWriter) Write([]byte) (int, error) { return 0, errStopWrite }

// escapedClone returns a clone of orig on which html/template has run its
// contextual escaper, so its parse trees carry the escaping functions.
// html/template only escapes on first execution, so the clone is executed
// once, with nil data, after a first action that stops the execution is
// put at the start of its body (and taken out again afterwards): no
// template code runs, not even loops that write nothing. User functions
// are replaced by stubs that fail, and the writer fails on the first byte,
// should anything run all the same.
func escapedClone(orig *template.Template, funcs template.FuncMap) (*template.Template, error) {
	clone, err := orig.Clone()
	if err != nil {
		return nil, err
	}
	stubs := template.FuncMap{stopFunc: func() (bool, error) { return false, errStopWrite }}
	for name, f := range funcs {
		ft := reflect.TypeOf(f)
		stubs[name] = reflect.MakeFunc(ft, func([]reflect.Value) []reflect.Value {
			panic(errStopWrite)
		}).Interface()
	}
	clone.Funcs(stubs)
	var root *parse.ListNode
	first := stopNode()
	if clone.Tree != nil && clone.Tree.Root != nil {
		root = clone.Tree.Root
		root.Nodes = append([]parse.Node{first}, root.Nodes...)
	}
	err = clone.Execute(stopWriter{}, nil)
	if root != nil && len(root.Nodes) > 0 && root.Nodes[0] == first {
		root.Nodes = root.Nodes[1:]
	}
	var execErr texttemplate.ExecError
	if err == nil || errors.Is(err, errStopWrite) || errors.As(err, &execErr) {
		return clone, nil
	}
	// Escaping failed: html/template would fail every execution the
	// same way.
	return nil, err
}

// stopFunc is the function of the action that stops escapedClone's
// execution.
const stopFunc = "_fasttmpl_stop"

// stopNode is {{if _fasttmpl_stop}}{{end}}: it writes nothing and leaves
// html/template's escaping context as it is.
func stopNode() parse.Node {
	cmd := &parse.CommandNode{NodeType: parse.NodeCommand, Args: []parse.Node{parse.NewIdentifier(stopFunc)}}
	pipe := &parse.PipeNode{NodeType: parse.NodePipe, Cmds: []*parse.CommandNode{cmd}}
	return &parse.IfNode{BranchNode: parse.BranchNode{NodeType: parse.NodeIf, Pipe: pipe,
		List: &parse.ListNode{NodeType: parse.NodeList}}}
}

// compileProgram compiles the escaped template, reporting why not if it
// cannot.
func compileProgram(lookup func(string) *parse.Tree, text bool, name string, funcs template.FuncMap, dataType reflect.Type) (prog *program, reason string) {
	c := &compiler{lookup: lookup, text: text, funcs: map[string]reflect.Value{}, progs: map[progKey]*program{}}
	for n, f := range funcs {
		c.funcs[n] = reflect.ValueOf(f)
	}
	for n := range funcs {
		if _, clash := escaperByName[n]; clash || n == "_eval_args_" || n == "_html_template_jsvalescaper" {
			return nil, fmt.Sprintf("user function %q shadows an html/template escaper", n)
		}
	}
	defer func() {
		if r := recover(); r != nil {
			prog = nil
			if u, ok := r.(unsupported); ok {
				reason = u.reason
			} else {
				reason = fmt.Sprintf("internal compiler error: %v", r)
			}
		}
	}()
	return c.compileTemplate(name, dataType), ""
}

// Fast reports whether the template runs on the compiled engine (false: fell back to html/template).
func (t *Template) Fast() bool { return t.prog != nil }

// FallbackReason explains why the template falls back to html/template; it
// is empty for fast templates.
func (t *Template) FallbackReason() string { return t.reason }

// Execute renders data (must be of the compiled type) appending to buf.
//
// Data of another type is rendered by html/template, so the result is
// correct either way. As with html/template, output produced before an
// execution error is left in buf.
func (t *Template) Execute(buf *bytes.Buffer, data any) error {
	return t.ExecuteLimited(buf, data, tmplbudget.Limits{})
}

// ExecuteLimited is Execute within lim, so that an untrusted template
// cannot make one render take unbounded memory or time: an execution over
// its steps, output or deadline fails with an error wrapping
// tmplbudget.ErrSteps, ErrBytes or ErrTime. Both engines count the same
// steps (one for the template, one for every template call and loop
// iteration) and bound the same builtins; output before the failure is
// left in buf.
func (t *Template) ExecuteLimited(buf *bytes.Buffer, data any, lim tmplbudget.Limits) error {
	if t.prog == nil {
		return t.fallback.Execute(buf, data, lim)
	}
	dv := reflect.ValueOf(data)
	if !dv.IsValid() || dv.Type() != t.dataType {
		return t.fallback.Execute(buf, data, lim)
	}
	s := t.pool.Get().(*state)
	s.meter.Start(lim)
	s.maxOut = s.meter.MaxBytes()
	// Render straight into buf's free space: ReadFrom hands that space
	// to renderReader.Read, which saves copying the output once more.
	buf.Grow(int(t.hint.Load()))
	r := &s.reader
	*r = renderReader{t: t, s: s, data: dv}
	_, _ = buf.ReadFrom(r) // renderReader never fails; bytes.Buffer panics if it cannot grow
	err := r.err
	// Size the next buffer after this render; a larger render just takes
	// the slower path in renderReader.
	if h := r.size + r.size/8; h != t.hint.Load() {
		t.hint.Store(h)
	}
	*r = renderReader{}
	s.out = nil
	clear(s.vars)
	t.pool.Put(s)
	return err
}

// renderReader adapts a render to io.Reader for bytes.Buffer.ReadFrom. The
// first Read renders into the buffer it is given; only if the output
// outgrows that space is the remainder handed over in further Reads.
type renderReader struct {
	t       *Template
	s       *state
	data    reflect.Value
	started bool
	pending []byte
	size    int64
	err     error // the render's execution error
}

func (r *renderReader) Read(p []byte) (int, error) {
	if !r.started {
		r.started = true
		r.s.out = p[:0]
		r.err = r.t.run(r.s, r.data)
		out := r.s.out
		r.size = int64(len(out))
		if len(out) == 0 || len(out) <= len(p) && &out[0] == &p[0] {
			return len(out), io.EOF
		}
		r.pending = out
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	if len(r.pending) == 0 {
		return n, io.EOF
	}
	return n, nil
}

func (t *Template) run(s *state, dot reflect.Value) (err error) {
	defer func() {
		if r := recover(); r != nil {
			p, ok := r.(execPanic)
			if !ok {
				panic(r)
			}
			err = p.err
		}
	}()
	if len(s.vars) < t.prog.frame {
		s.vars = make([]reflect.Value, t.prog.frame)
	}
	s.vars[0] = dot
	s.base, s.depth, s.name = 0, 0, t.name
	s.tick() // the template's body is a step, as every one it calls
	t.prog.root.exec(s, dot)
	s.checkOutput()
	return nil
}
