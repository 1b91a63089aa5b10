package fasttmpl

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io"
	"math"
	"reflect"
	"sync"
	"sync/atomic"
	texttemplate "text/template"
	"text/template/parse"
	"time"
)

// Template is a compiled email template. It is safe for concurrent use.
type Template struct {
	name     string
	dataType reflect.Type
	fallback executor     // the html/template (or text/template), used when not fast
	prog     *program     // nil when falling back
	reason   string       // why the template falls back
	pool     sync.Pool    // *state
	hint     atomic.Int64 // expected output size, to grow the buffer once
}

// executor is html/template's and text/template's Execute.
type executor interface {
	Execute(w io.Writer, data any) error
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
	t = &Template{name: name, dataType: dataType, fallback: orig}
	t.pool.New = func() any { return new(state) }

	escaped, err := escapedClone(orig, funcs)
	if err != nil {
		return nil, err
	}
	lookup := func(name string) *parse.Tree {
		if t := escaped.Lookup(name); t != nil {
			return t.Tree
		}
		return nil
	}
	t.prog, t.reason = compileProgram(lookup, false, name, funcs, dataType)
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
	t = &Template{name: name, dataType: dataType, fallback: orig}
	t.pool.New = func() any { return new(state) }
	lookup := func(name string) *parse.Tree {
		if t := orig.Lookup(name); t != nil {
			return t.Tree
		}
		return nil
	}
	t.prog, t.reason = compileProgram(lookup, true, name, template.FuncMap(funcs), dataType)
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
	return t.ExecuteLimited(buf, data, Limits{})
}

// Limits bound one execution of a template, so that an untrusted template
// cannot make one render take unbounded memory or time.
type Limits struct {
	// MaxBytes is the most output the execution may append to the buffer;
	// 0 means no limit.
	MaxBytes int
	// Timeout is the longest the execution may run; 0 means no limit.
	Timeout time.Duration
}

// Errors an execution that exceeds its Limits fails with (wrapped).
var (
	ErrOutputLimit = errors.New("output limit exceeded")
	ErrTimeLimit   = errors.New("time limit exceeded")
)

// ExecuteLimited is Execute within lim. The compiled engine checks the
// output size at every output action, loop iteration and template call, and
// the clock every 64 loop iterations or template calls; templates that fall
// back are checked on every write (a loop that writes nothing is not
// interrupted there). Output before the failure is left in buf.
func (t *Template) ExecuteLimited(buf *bytes.Buffer, data any, lim Limits) error {
	if t.prog == nil {
		return t.fallback.Execute(newLimitWriter(buf, lim), data)
	}
	dv := reflect.ValueOf(data)
	if !dv.IsValid() || dv.Type() != t.dataType {
		return t.fallback.Execute(newLimitWriter(buf, lim), data)
	}
	s := t.pool.Get().(*state)
	s.maxOut = math.MaxInt
	if lim.MaxBytes > 0 {
		s.maxOut = lim.MaxBytes
	}
	s.deadline = time.Time{}
	if lim.Timeout > 0 {
		s.deadline = time.Now().Add(lim.Timeout)
	}
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
	s.base, s.depth, s.name, s.steps = 0, 0, t.name, 0
	t.prog.root.exec(s, dot)
	s.checkOutput()
	return nil
}

// limitWriter enforces Limits on a template that runs on html/template or
// text/template.
type limitWriter struct {
	buf      *bytes.Buffer
	max      int // buf.Len() may not exceed it
	deadline time.Time
	writes   int
}

func newLimitWriter(buf *bytes.Buffer, lim Limits) io.Writer {
	if lim == (Limits{}) {
		return buf
	}
	w := &limitWriter{buf: buf, max: math.MaxInt}
	if lim.MaxBytes > 0 {
		w.max = buf.Len() + lim.MaxBytes
	}
	if lim.Timeout > 0 {
		w.deadline = time.Now().Add(lim.Timeout)
	}
	return w
}

func (w *limitWriter) Write(p []byte) (int, error) {
	if len(p) > w.max-w.buf.Len() {
		return 0, ErrOutputLimit
	}
	if w.writes++; !w.deadline.IsZero() && w.writes%16 == 0 && time.Now().After(w.deadline) {
		return 0, ErrTimeLimit
	}
	return w.buf.Write(p)
}
