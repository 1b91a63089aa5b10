package fasttmpl

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"sync"
	"text/template/parse"
	"unsafe"
)

// Output actions ("holes") in an escaped tree look like
//
//	{{ source | escaper1 | escaper2 ... }}
//
// The compiler evaluates the source, converts it to text the way the first
// escaper's argument handling would (html/template's stringify, or
// text/template's evalArgs for the html/js/urlquery builtins), then runs the
// escapers as string-to-bytes functions straight into the output.

// isChainCmd reports whether cmd is a bare escaper command that can be run
// as a string transformation.
func (c *compiler) isChainCmd(cmd *parse.CommandNode) bool {
	if len(cmd.Args) != 1 {
		return false
	}
	id, ok := cmd.Args[0].(*parse.IdentifierNode)
	if !ok {
		return false
	}
	return c.stringEscaper(id.Ident) != nil
}

// stringEscaper returns the escaper named name as a function of a plain
// string (how every escaper after the first receives its input).
func (c *compiler) stringEscaper(name string) escFunc {
	if f, ok := escaperByName[name]; ok {
		return f
	}
	switch name {
	case "_html_template_jsvalescaper":
		return escJSValString
	case "html":
		return appendTextHTML
	case "js":
		return appendTextJS
	case "urlquery":
		return appendTextURLQuery
	}
	return nil
}

func escJSValString(dst []byte, s string) []byte { return jsValue(dst, s) }

func escIdentity(dst []byte, s string) []byte { return append(dst, s...) }

// fusedChains replaces common escaper sequences by single-pass versions.
var fusedChains = []struct {
	names []string
	f     escFunc
}{
	{[]string{"_html_template_urlfilter", "_html_template_urlnormalizer", "_html_template_attrescaper"}, escURLFilterNormAttr},
	{[]string{"_html_template_urlfilter", "_html_template_urlnormalizer"}, escURLFilterNorm},
	{[]string{"_html_template_urlnormalizer", "_html_template_attrescaper"}, escURLNormAttr},
	{[]string{"_html_template_urlescaper", "_html_template_attrescaper"}, escURLQueryAttr},
}

func (c *compiler) buildChain(names []string) []escFunc {
	var out []escFunc
outer:
	for i := 0; i < len(names); {
		for _, fc := range fusedChains {
			if len(names)-i >= len(fc.names) && equalStrings(names[i:i+len(fc.names)], fc.names) {
				out = append(out, fc.f)
				i += len(fc.names)
				continue outer
			}
		}
		out = append(out, c.stringEscaper(names[i]))
		i++
	}
	if len(out) == 0 {
		out = append(out, escIdentity)
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (c *compiler) compileHole(pipe *parse.PipeNode, sc *scope, dot reflect.Type) node {
	cmds := pipe.Cmds
	k := len(cmds)
	for k > 1 && c.isChainCmd(cmds[k-1]) {
		k--
	}
	if k == len(cmds) {
		e, _ := c.compileCmds(cmds, sc, dot)
		return printNode{e}
	}
	names := make([]string, 0, len(cmds)-k)
	for _, cmd := range cmds[k:] {
		names = append(names, cmd.Args[0].(*parse.IdentifierNode).Ident)
	}
	prefix := cmds[:k]
	var src textSrc
	if len(prefix) == 1 {
		src = c.stringSource(prefix[0], sc, dot)
	}
	if src == nil && escaperByName[names[0]] != nil {
		if pe := c.staticPath(prefix, sc, dot); pe != nil {
			src = newPathSrc(pe)
		}
	}
	if src == nil {
		e, t := c.compileCmds(prefix, sc, dot)
		switch names[0] {
		case "_html_template_jsvalescaper":
			src = &jsvalSrc{e: e}
			names = names[1:]
		case "html", "js", "urlquery":
			src = &textArgSrc{e: e}
		default:
			src = newValueSrc(e, t)
		}
	}
	chain := c.buildChain(names)
	h := &holeNode{src: src, chain: chain}
	if ps, ok := src.(*pathSrc); ok && ps.fk == fkString {
		return &strPathHole{pe: *ps.pe, first: chain[0], rest: chain[1:], slow: &holeNode{src: ps.slow, chain: chain}}
	}
	return h
}

// stringSource recognises hole sources that produce a string directly
// without going through a reflect.Value: _eval_args_ and simple printf calls.
func (c *compiler) stringSource(cmd *parse.CommandNode, sc *scope, dot reflect.Type) textSrc {
	id, ok := cmd.Args[0].(*parse.IdentifierNode)
	if !ok {
		return nil
	}
	switch id.Ident {
	case "_eval_args_":
		fns, _ := c.rawArgs(cmd.Args[1:], sc, dot)
		return &evalArgsSrc{args: fns}
	case "printf":
		return c.printfSource(cmd, sc, dot)
	}
	return nil
}

// ---- sources ----------------------------------------------------------------

// fastKind classifies types whose fmt.Sprint form can be produced without
// fmt: basic kinds (of types without methods, as all of Data's are).
type fastKind uint8

const (
	fkNone fastKind = iota
	fkString
	fkInt
	fkUint
	fkBool
	fkFloat
)

var fastKindCache sync.Map // reflect.Type → fastKind

func fastKindOf(t reflect.Type) fastKind {
	if v, ok := fastKindCache.Load(t); ok {
		return v.(fastKind)
	}
	fk := computeFastKind(t)
	fastKindCache.Store(t, fk)
	return fk
}

func computeFastKind(t reflect.Type) fastKind {
	switch t.Kind() {
	case reflect.String:
		return fkString
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fkInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return fkUint
	case reflect.Bool:
		return fkBool
	case reflect.Float32, reflect.Float64:
		return fkFloat
	}
	return fkNone
}

// scratch returns the source scratch buffer, emptied.
func (s *state) scratch() []byte { return s.tmp[2][:0] }

// keep stores b as the source scratch buffer and returns it as a string.
func (s *state) keep(b []byte) string {
	s.tmp[2] = b
	return view(b)
}

// fastText formats v (whose type has fast kind fk) like fmt.Sprint.
func (s *state) fastText(v reflect.Value, fk fastKind) (string, bool) {
	switch fk {
	case fkString:
		return v.String(), true
	case fkInt:
		return s.keep(strconv.AppendInt(s.scratch(), v.Int(), 10)), true
	case fkUint:
		return s.keep(strconv.AppendUint(s.scratch(), v.Uint(), 10)), true
	case fkBool:
		if v.Bool() {
			return "true", true
		}
		return "false", true
	case fkFloat:
		f := v.Float()
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return "", false
		}
		bits := 64
		if v.Kind() == reflect.Float32 {
			bits = 32
		}
		return s.keep(strconv.AppendFloat(s.scratch(), f, 'g', -1, bits)), true
	}
	return "", false
}

// htmlText converts a value passed to an html/template escaper to its
// text, like html/template's stringify.
func (s *state) htmlText(v reflect.Value) string {
	if !v.IsValid() {
		return ""
	}
	if str, ok := s.fastText(v, fastKindOf(v.Type())); ok {
		return str
	}
	return htmlStringify([]any{v.Interface()})
}

// valueSrc is the general hole source: a pipeline value converted by
// html/template's rules. When the static type is known the conversion is
// chosen at compile time.
type valueSrc struct {
	e  evalFn
	fk fastKind // fkNone: decide at run time
	// noValue, when set, is the text of an invalid value (text/template
	// prints the field of no dot as "<no value>"; html/template as "").
	noValue string
}

func newValueSrc(e evalFn, t reflect.Type) *valueSrc {
	v := &valueSrc{e: e}
	if t != nil {
		v.fk = fastKindOf(t)
	}
	return v
}

func (src *valueSrc) text(s *state, dot reflect.Value) string {
	v := src.e(s, dot)
	if !v.IsValid() && src.noValue != "" {
		return src.noValue
	}
	if src.fk != fkNone && v.IsValid() {
		if str, ok := s.fastText(v, src.fk); ok {
			return str
		}
	}
	return s.htmlText(v)
}

// textArgSrc converts a value with text/template's evalArgs, for the html,
// js and urlquery builtins.
type textArgSrc struct{ e evalFn }

func (src *textArgSrc) text(s *state, dot reflect.Value) string {
	v := src.e(s, dot)
	if v.IsValid() && v.Type() == stringType {
		return v.String()
	}
	return textEvalArgs([]any{box(v)})
}

// evalArgsSrc is html/template's _eval_args_, which html/template inserts
// for {{html a b}} and {{urlquery a b}}.
type evalArgsSrc struct{ args []evalFn }

func (src *evalArgsSrc) text(s *state, dot reflect.Value) string {
	a := make([]any, len(src.args))
	for i, f := range src.args {
		a[i] = box(f(s, dot))
	}
	s.budget(s.meter.Args(a))
	str := htmlEvalArgs(a)
	s.budget(s.meter.Size(len(str)))
	return str
}

// jsvalSrc applies html/template's JS value escaper to a value: its JSON
// (json.Marshal follows the root pointer as the escaper does; no type of
// Data marshals itself or has a String method).
type jsvalSrc struct{ e evalFn }

func (src *jsvalSrc) text(s *state, dot reflect.Value) string {
	return s.keep(jsValue(s.scratch(), box(src.e(s, dot))))
}

// ---- printf ------------------------------------------------------------------

// pfVerb is one directive of a simple printf format: literal text followed
// by a verb (0 for the trailing literal).
type pfVerb struct {
	lit  string
	verb byte
	prec int // -1: default
}

// parseSimpleFormat splits a format made only of literals, %% and verbs
// from "vsdfFt" with an optional precision (f/F only). Anything fancier is
// left to fmt.
func parseSimpleFormat(f string) ([]pfVerb, bool) {
	var out []pfVerb
	lit := make([]byte, 0, len(f))
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			lit = append(lit, f[i])
			continue
		}
		i++
		if i >= len(f) {
			return nil, false
		}
		if f[i] == '%' {
			lit = append(lit, '%')
			continue
		}
		prec := -1
		if f[i] == '.' {
			j := i + 1
			for j < len(f) && '0' <= f[j] && f[j] <= '9' {
				j++
			}
			if j == i+1 || j-i > 3 || j >= len(f) {
				return nil, false
			}
			prec, _ = strconv.Atoi(f[i+1 : j])
			i = j
		}
		switch v := f[i]; v {
		case 'v', 's', 'd', 't':
			if prec >= 0 {
				return nil, false
			}
			out = append(out, pfVerb{lit: string(lit), verb: v, prec: -1})
		case 'f', 'F':
			out = append(out, pfVerb{lit: string(lit), verb: v, prec: prec})
		default:
			return nil, false
		}
		lit = lit[:0]
	}
	out = append(out, pfVerb{lit: string(lit)})
	return out, true
}

// printfSrc formats printf calls with a constant simple format directly into
// the scratch buffer; arguments whose run-time value does not suit the fast
// formatting send the whole call through fmt.Sprintf.
type printfSrc struct {
	format string
	segs   []pfVerb
	args   []evalFn
	kinds  []fastKind  // static fast kind of each argument (fkNone: unknown)
	paths  []*pathExpr // static field chains whose verb/kind pairing is fast
	pks    []primKind
}

// verbFits reports whether fmt formats a value of fast kind fk under verb
// exactly as the fast formatter does.
func verbFits(fk fastKind, verb byte) bool {
	switch fk {
	case fkString:
		return verb == 's' || verb == 'v'
	case fkInt, fkUint:
		return verb == 'd' || verb == 'v'
	case fkBool:
		return verb == 't' || verb == 'v'
	case fkFloat:
		return verb == 'v' || verb == 'f' || verb == 'F'
	}
	return false
}

func (c *compiler) printfSource(cmd *parse.CommandNode, sc *scope, dot reflect.Type) textSrc {
	args := cmd.Args[1:]
	if len(args) == 0 {
		return nil
	}
	fn, ok := args[0].(*parse.StringNode)
	if !ok {
		return nil
	}
	segs, ok := parseSimpleFormat(fn.Text)
	if !ok || len(segs)-1 != len(args)-1 || len(args)-1 > 8 {
		return nil
	}
	src := &printfSrc{format: fn.Text, segs: segs}
	for i, a := range args[1:] {
		f, t := c.compileArgRaw(a, sc, dot)
		fk := fkNone
		if t != nil {
			fk = fastKindOf(t)
		}
		var pe *pathExpr
		pk := pkNone
		if fk != fkNone && verbFits(fk, segs[i].verb) {
			pe = c.staticPath([]*parse.CommandNode{{Args: []parse.Node{a}}}, sc, dot)
			if pe != nil {
				if pk = primKindOf(pe.final); pk == pkNone {
					pe = nil
				}
			}
		}
		src.args = append(src.args, f)
		src.kinds = append(src.kinds, fk)
		src.paths = append(src.paths, pe)
		src.pks = append(src.pks, pk)
	}
	return src
}

// appendValue formats v under seg's verb; ok is false if fmt must do it.
func appendValue(b []byte, v reflect.Value, fk fastKind, seg *pfVerb) ([]byte, bool) {
	if !verbFits(fk, seg.verb) {
		return b, false
	}
	switch fk {
	case fkString:
		return append(b, v.String()...), true
	case fkInt:
		return strconv.AppendInt(b, v.Int(), 10), true
	case fkUint:
		return strconv.AppendUint(b, v.Uint(), 10), true
	case fkBool:
		return strconv.AppendBool(b, v.Bool()), true
	case fkFloat:
		bits := 64
		if v.Kind() == reflect.Float32 {
			bits = 32
		}
		return appendFloatVerb(b, v.Float(), bits, seg)
	}
	return b, false
}

func appendFloatVerb(b []byte, f float64, bits int, seg *pfVerb) ([]byte, bool) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, false
	}
	if seg.verb == 'v' {
		return strconv.AppendFloat(b, f, 'g', -1, bits), true
	}
	prec := seg.prec
	if prec < 0 {
		prec = 6
	}
	return strconv.AppendFloat(b, f, 'f', prec, bits), true
}

// appendPrim formats the primitive at p (of kind pk) under seg's verb.
func appendPrim(b []byte, p unsafe.Pointer, pk primKind, seg *pfVerb) ([]byte, bool) {
	switch pk {
	case pkString:
		return append(b, *(*string)(p)...), true
	case pkInt:
		return strconv.AppendInt(b, int64(*(*int)(p)), 10), true
	case pkBool:
		return strconv.AppendBool(b, *(*bool)(p)), true
	case pkFloat64:
		return appendFloatVerb(b, *(*float64)(p), 64, seg)
	}
	return b, false
}

func (src *printfSrc) text(s *state, dot reflect.Value) string {
	var vals [8]reflect.Value
	var ptrs [8]unsafe.Pointer
	n := len(src.args)
	for i, f := range src.args {
		if pe := src.paths[i]; pe != nil {
			if p := pe.addr(s, dot); p != nil {
				ptrs[i] = p
				continue
			}
		}
		vals[i] = f(s, dot)
	}
	b := s.scratch()
	ok := true
	for i := 0; i < n && ok; i++ {
		seg := &src.segs[i]
		b = append(b, seg.lit...)
		if p := ptrs[i]; p != nil {
			b, ok = appendPrim(b, p, src.pks[i], seg)
			continue
		}
		v := vals[i]
		fk := src.kinds[i]
		if fk == fkNone && v.IsValid() {
			fk = fastKindOf(v.Type())
		}
		if !v.IsValid() || fk == fkNone {
			ok = false
			break
		}
		b, ok = appendValue(b, v, fk, seg)
	}
	if !ok {
		// Field chains are free of side effects, so evaluating them
		// again through reflect is safe.
		for i := 0; i < n; i++ {
			if ptrs[i] != nil {
				vals[i] = src.args[i](s, dot)
			}
		}
		return src.slow(s, vals[:n])
	}
	b = append(b, src.segs[n].lit...)
	if len(b) > s.maxOut {
		s.budget(s.meter.Size(len(b)))
	}
	return s.keep(b)
}

func (src *printfSrc) slow(s *state, vals []reflect.Value) string {
	a := make([]any, len(vals))
	for i, v := range vals {
		a[i] = box(v)
	}
	b := fmt.Appendf(s.scratch(), src.format, a...)
	if len(b) > s.maxOut {
		s.budget(s.meter.Size(len(b)))
	}
	return s.keep(b)
}
