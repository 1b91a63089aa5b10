package fasttmpl

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	texttemplate "text/template"
	"text/template/parse"

	"herald/shared/emailtemplate"
	"herald/shared/tmplbudget"
)

// Template is a compiled part of a partner template (subject, preheader,
// HTML or text). It is safe for concurrent use.
type Template struct {
	name     string
	fallback *tmplbudget.Runner // html/template (or text/template), used when not fast
	prog     *program           // nil when falling back
	reason   string             // why the template falls back
	pool     sync.Pool          // *state
	hint     atomic.Int64       // expected output size, to grow the buffer once
}

// dataType is the one type the engine compiles for: what every partner
// template is executed on.
var dataType = reflect.TypeFor[*emailtemplate.Data]()

// ErrNotAllowed marks a template that uses what emailtemplate.Check refuses
// in a partner template (functions beyond text/template's builtins but
// call, loops over anything but a list of the data, recursion, too many or
// too deep template calls or loops). The engine implements nothing else, so
// such a template is refused here rather than compiled wrongly; every
// template that reaches render has passed Check at upload and again in
// emailtemplate.Parse.
var ErrNotAllowed = errors.New("not allowed in a partner template")

// vet refuses src if emailtemplate.Check does.
func vet(name, src string) error {
	if problems := emailtemplate.Check(name, src); len(problems) > 0 {
		return fmt.Errorf("fasttmpl: %w: %s", ErrNotAllowed, strings.Join(problems, "; "))
	}
	return nil
}

// Compile parses src as an html/template named name and compiles it for
// *emailtemplate.Data, after vetting it as emailtemplate.Check does (an
// error wrapping ErrNotAllowed says what it refused).
//
// Parse and escaping errors are returned as html/template reports them. A
// template whose constructs the compiler cannot reproduce exactly still
// compiles; it then renders through html/template (see Fast).
func Compile(name, src string) (*Template, error) {
	if err := vet(name, src); err != nil {
		return nil, err
	}
	orig, err := template.New(name).Parse(src)
	if err != nil {
		return nil, err
	}
	escaped, err := escapedClone(orig)
	if err != nil {
		return nil, err
	}
	fallback, err := tmplbudget.NewHTML(orig, nil)
	if err != nil {
		return nil, err
	}
	t := &Template{name: name, fallback: fallback}
	t.pool.New = func() any { return new(state) }
	lookup := func(name string) *parse.Tree {
		if t := escaped.Lookup(name); t != nil {
			return t.Tree
		}
		return nil
	}
	t.prog, t.reason = compileProgram(lookup, false, name)
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
func CompileText(name, src string) (*Template, error) {
	if err := vet(name, src); err != nil {
		return nil, err
	}
	orig, err := texttemplate.New(name).Parse(src)
	if err != nil {
		return nil, err
	}
	fallback, err := tmplbudget.NewText(orig, nil)
	if err != nil {
		return nil, err
	}
	t := &Template{name: name, fallback: fallback}
	t.pool.New = func() any { return new(state) }
	lookup := func(name string) *parse.Tree {
		if t := orig.Lookup(name); t != nil {
			return t.Tree
		}
		return nil
	}
	t.prog, t.reason = compileProgram(lookup, true, name)
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
// template code runs, not even loops that write nothing. The writer fails
// on the first byte, should anything run all the same.
func escapedClone(orig *template.Template) (*template.Template, error) {
	clone, err := orig.Clone()
	if err != nil {
		return nil, err
	}
	clone.Funcs(template.FuncMap{stopFunc: func() (bool, error) { return false, errStopWrite }})
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
func compileProgram(lookup func(string) *parse.Tree, text bool, name string) (prog *program, reason string) {
	c := &compiler{lookup: lookup, text: text, progs: map[progKey]*program{}}
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

// Execute renders d appending to buf. As with html/template, output
// produced before an execution error is left in buf.
func (t *Template) Execute(buf *bytes.Buffer, d *emailtemplate.Data) error {
	return t.ExecuteLimited(buf, d, tmplbudget.Limits{})
}

// ExecuteLimited is Execute within lim, so that an untrusted template
// cannot make one render take unbounded memory or time: an execution over
// its steps, output or deadline fails with an error wrapping
// tmplbudget.ErrSteps, ErrBytes or ErrTime. Both engines count the same
// steps (one for the template, one for every template call and loop
// iteration) and bound the same builtins; output before the failure is
// left in buf.
func (t *Template) ExecuteLimited(buf *bytes.Buffer, d *emailtemplate.Data, lim tmplbudget.Limits) error {
	if t.prog == nil {
		return t.fallback.Execute(buf, d, lim)
	}
	s := t.pool.Get().(*state)
	s.meter.Start(lim)
	s.maxOut = s.meter.MaxBytes()
	// Render straight into buf's free space: ReadFrom hands that space
	// to renderReader.Read, which saves copying the output once more.
	buf.Grow(int(t.hint.Load()))
	r := &s.reader
	*r = renderReader{t: t, s: s, data: reflect.ValueOf(d)}
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
	s.base, s.name = 0, t.name
	s.tick() // the template's body is a step, as every one it calls
	t.prog.root.exec(s, dot)
	s.checkOutput()
	return nil
}
