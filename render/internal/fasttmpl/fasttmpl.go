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
)

// Template is a compiled email template. It is safe for concurrent use.
type Template struct {
	name     string
	dataType reflect.Type
	html     *template.Template // the html/template, used when not fast
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
	t = &Template{name: name, dataType: dataType, html: orig}
	t.pool.New = func() any { return new(state) }

	escaped, err := escapedClone(orig, funcs)
	if err != nil {
		return nil, err
	}
	t.prog, t.reason = compileProgram(escaped, name, funcs, dataType)
	return t, nil
}

// errStopWrite aborts the execution that triggers html/template's escaping.
var errStopWrite = errors.New("fasttmpl: stop")

type stopWriter struct{}

func (stopWriter) Write([]byte) (int, error) { return 0, errStopWrite }

// escapedClone returns a clone of orig on which html/template has run its
// contextual escaper, so its parse trees carry the escaping functions.
// html/template only escapes on first execution, so the clone is executed
// with nil data, a writer that fails on the first byte and user functions
// replaced by stubs that fail: execution stops at the first output or
// function call and no user code runs.
func escapedClone(orig *template.Template, funcs template.FuncMap) (*template.Template, error) {
	clone, err := orig.Clone()
	if err != nil {
		return nil, err
	}
	if len(funcs) > 0 {
		stubs := template.FuncMap{}
		for name, f := range funcs {
			ft := reflect.TypeOf(f)
			stubs[name] = reflect.MakeFunc(ft, func([]reflect.Value) []reflect.Value {
				panic(errStopWrite)
			}).Interface()
		}
		clone.Funcs(stubs)
	}
	err = clone.Execute(stopWriter{}, nil)
	var execErr texttemplate.ExecError
	if err == nil || errors.Is(err, errStopWrite) || errors.As(err, &execErr) {
		return clone, nil
	}
	// Escaping failed: html/template would fail every execution the
	// same way.
	return nil, err
}

// compileProgram compiles the escaped template, reporting why not if it
// cannot.
func compileProgram(escaped *template.Template, name string, funcs template.FuncMap, dataType reflect.Type) (prog *program, reason string) {
	c := &compiler{set: escaped, funcs: map[string]reflect.Value{}, progs: map[progKey]*program{}}
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
	if t.prog == nil {
		return t.html.Execute(buf, data)
	}
	dv := reflect.ValueOf(data)
	if !dv.IsValid() || dv.Type() != t.dataType {
		return t.html.Execute(buf, data)
	}
	s := t.pool.Get().(*state)
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
	t.prog.root.exec(s, dot)
	return nil
}
