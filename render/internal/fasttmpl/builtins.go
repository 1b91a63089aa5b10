package fasttmpl

import (
	"cmp"
	"errors"
	"fmt"
	"reflect"
	"text/template/parse"
)

// The builtins emailtemplate.AllowedFuncs lets partner templates call
// (text/template's, but call), and html/template's _eval_args_,
// implemented natively on reflect.Values so calls avoid reflect.Call and
// argument boxing. Argument evaluation, arity checks and error conditions
// follow text/template.

type builtinCompiler func(c *compiler, name string, args []parse.Node, hasFinal bool, sc *scope, dot reflect.Type) (cmdFn, reflect.Type)

var builtinCompilers map[string]builtinCompiler

// Signatures of the builtins, used only for arity checks and messages.
var (
	sigVariadicValue = reflect.TypeOf(func(reflect.Value, ...reflect.Value) reflect.Value { return reflect.Value{} })
	sigOneValue      = reflect.TypeOf(func(reflect.Value) bool { return false })
	sigTwoValues     = reflect.TypeOf(func(reflect.Value, reflect.Value) (bool, error) { return false, nil })
	sigPrintf        = reflect.TypeOf(func(string, ...any) string { return "" })
)

var (
	trueValue  = reflect.ValueOf(true)
	falseValue = reflect.ValueOf(false)
)

func boolValue(b bool) reflect.Value {
	if b {
		return trueValue
	}
	return falseValue
}

func init() {
	builtinCompilers = map[string]builtinCompiler{
		"and":         compileAndOr,
		"or":          compileAndOr,
		"not":         compileNot,
		"len":         compileLen,
		"index":       compileValueBuiltin(sigVariadicValue, builtinIndex, nil),
		"slice":       compileValueBuiltin(sigVariadicValue, builtinSlice, nil),
		"eq":          compileComparison(sigVariadicValue),
		"ne":          compileComparison(sigTwoValues),
		"lt":          compileComparison(sigTwoValues),
		"le":          compileComparison(sigTwoValues),
		"gt":          compileComparison(sigTwoValues),
		"ge":          compileComparison(sigTwoValues),
		"print":       compileAnyBuiltin(func(a []any) string { return fmt.Sprint(a...) }),
		"println":     compileAnyBuiltin(func(a []any) string { return fmt.Sprintln(a...) }),
		"html":        compileAnyBuiltin(func(a []any) string { return string(appendTextHTML(nil, textEvalArgs(a))) }),
		"js":          compileAnyBuiltin(func(a []any) string { return string(appendTextJS(nil, textEvalArgs(a))) }),
		"urlquery":    compileAnyBuiltin(func(a []any) string { return string(appendTextURLQuery(nil, textEvalArgs(a))) }),
		"_eval_args_": compileAnyBuiltin(htmlEvalArgs),
		"printf":      compilePrintf,
	}
}

// rawArgs compiles arguments for reflect.Value (or any) parameters.
func (c *compiler) rawArgs(args []parse.Node, sc *scope, dot reflect.Type) ([]evalFn, []reflect.Type) {
	fns := make([]evalFn, len(args))
	types := make([]reflect.Type, len(args))
	for i, a := range args {
		fns[i], types[i] = c.compileArgRaw(a, sc, dot)
	}
	return fns, types
}

// gather evaluates the arguments (and the final value) into a slice.
func gather(s *state, dot, final reflect.Value, fns []evalFn, hasFinal bool, buf []reflect.Value) []reflect.Value {
	vals := buf[:0]
	for _, f := range fns {
		vals = append(vals, f(s, dot))
	}
	if hasFinal {
		vals = append(vals, final)
	}
	return vals
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// recoverBuiltin turns a panic inside a builtin (typically reflect
// rejecting a value) into an execution error, as text/template's safeCall
// does. Execution errors raised while evaluating arguments pass through.
func (s *state) recoverBuiltin(name string) {
	r := recover()
	if r == nil {
		return
	}
	if _, ok := r.(execPanic); ok {
		panic(r)
	}
	err, ok := r.(error)
	if !ok {
		err = fmt.Errorf("%v", r)
	}
	s.errorf("error calling %s: %w", name, err)
}

// protect runs a builtin, turning a panic (e.g. from reflect on an index out
// of range) into an error, as text/template's safeCall does.
func protect(fn func([]reflect.Value) (reflect.Value, error), args []reflect.Value) (v reflect.Value, err error) {
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(error); ok {
				err = e
			} else {
				err = fmt.Errorf("%v", r)
			}
		}
	}()
	return fn(args)
}

func box(v reflect.Value) any {
	if !v.IsValid() {
		return nil
	}
	return v.Interface()
}

func compileAndOr(c *compiler, name string, args []parse.Node, hasFinal bool, sc *scope, dot reflect.Type) (cmdFn, reflect.Type) {
	if msg := checkArity(name, sigVariadicValue, len(args), hasFinal); msg != "" {
		return errCmd(msg), nil
	}
	fns, types := c.rawArgs(args, sc, dot)
	isOr := name == "or"
	// The result is one of the operands; its type is static only if all
	// operands share one.
	var typ reflect.Type
	if !hasFinal && len(types) > 0 {
		typ = types[0]
		for _, t := range types[1:] {
			if t != typ {
				typ = nil
			}
		}
	}
	return func(s *state, dot, final reflect.Value) reflect.Value {
		var v reflect.Value
		for _, f := range fns {
			v = f(s, dot)
			if truth(v) == isOr {
				return v
			}
		}
		if hasFinal {
			v = final
		}
		return v
	}, typ
}

func compileNot(c *compiler, name string, args []parse.Node, hasFinal bool, sc *scope, dot reflect.Type) (cmdFn, reflect.Type) {
	if msg := checkArity(name, sigOneValue, len(args), hasFinal); msg != "" {
		return errCmd(msg), nil
	}
	if hasFinal {
		return func(_ *state, _, final reflect.Value) reflect.Value { return boolValue(!truth(final)) }, boolType
	}
	f, _ := c.compileArgRaw(args[0], sc, dot)
	return func(s *state, dot, _ reflect.Value) reflect.Value { return boolValue(!truth(f(s, dot))) }, boolType
}

func compileLen(c *compiler, name string, args []parse.Node, hasFinal bool, sc *scope, dot reflect.Type) (cmdFn, reflect.Type) {
	if msg := checkArity(name, sigOneValue, len(args), hasFinal); msg != "" {
		return errCmd(msg), nil
	}
	var f evalFn
	if !hasFinal {
		f, _ = c.compileArgRaw(args[0], sc, dot)
	}
	return func(s *state, dot, final reflect.Value) reflect.Value {
		defer s.recoverBuiltin(name)
		item := final
		if f != nil {
			item = f(s, dot)
		}
		n, err := builtinLen(item)
		if err != nil {
			s.errorf("error calling len: %w", err)
		}
		return reflect.ValueOf(n)
	}, intType
}

// compileValueBuiltin compiles a builtin taking reflect.Values and returning
// a value and an error.
func compileValueBuiltin(sig reflect.Type, fn func([]reflect.Value) (reflect.Value, error), res reflect.Type) builtinCompiler {
	return func(c *compiler, name string, args []parse.Node, hasFinal bool, sc *scope, dot reflect.Type) (cmdFn, reflect.Type) {
		if msg := checkArity(name, sig, len(args), hasFinal); msg != "" {
			return errCmd(msg), nil
		}
		fns, _ := c.rawArgs(args, sc, dot)
		return func(s *state, dot, final reflect.Value) reflect.Value {
			v, err := protect(fn, gather(s, dot, final, fns, hasFinal, nil))
			if err != nil {
				s.errorf("error calling %s: %w", name, err)
			}
			return v
		}, res
	}
}

// compileComparison compiles eq, ne, lt, le, gt and ge. Two operands (the
// only form but for eq's a == b || a == c ...) are compared without
// building an argument slice.
func compileComparison(sig reflect.Type) builtinCompiler {
	return func(c *compiler, name string, args []parse.Node, hasFinal bool, sc *scope, dot reflect.Type) (cmdFn, reflect.Type) {
		if msg := checkArity(name, sig, len(args), hasFinal); msg != "" {
			return errCmd(msg), nil
		}
		fns, _ := c.rawArgs(args, sc, dot)
		if len(fns)+btoi(hasFinal) != 2 {
			return compileValueBuiltin(sig, builtinEq, boolType)(c, name, args, hasFinal, sc, dot)
		}
		cmp := compare2[name]
		a := fns[0]
		var b evalFn
		if !hasFinal {
			b = fns[1]
		}
		return func(s *state, dot, final reflect.Value) reflect.Value {
			defer s.recoverBuiltin(name)
			x := a(s, dot)
			y := final
			if b != nil {
				y = b(s, dot)
			}
			r, err := cmp(x, y)
			if err != nil {
				s.errorf("error calling %s: %w", name, err)
			}
			return boolValue(r)
		}, boolType
	}
}

// compileAnyBuiltin compiles a builtin taking ...any and returning a
// string. Like printf, it is bounded by the output budget, as on the
// fallback (see tmplbudget).
func compileAnyBuiltin(fn func([]any) string) builtinCompiler {
	return func(c *compiler, name string, args []parse.Node, hasFinal bool, sc *scope, dot reflect.Type) (cmdFn, reflect.Type) {
		fns, _ := c.rawArgs(args, sc, dot)
		return func(s *state, dot, final reflect.Value) reflect.Value {
			defer s.recoverBuiltin(name)
			var buf [4]reflect.Value
			vals := gather(s, dot, final, fns, hasFinal, buf[:])
			a := make([]any, len(vals))
			for i, v := range vals {
				a[i] = box(v)
			}
			s.budget(s.meter.Args(a))
			str := fn(a)
			s.budget(s.meter.Size(len(str)))
			return reflect.ValueOf(str)
		}, stringType
	}
}

func compilePrintf(c *compiler, name string, args []parse.Node, hasFinal bool, sc *scope, dot reflect.Type) (cmdFn, reflect.Type) {
	if msg := checkArity(name, sigPrintf, len(args), hasFinal); msg != "" {
		return errCmd(msg), nil
	}
	var format evalFn
	var rest []evalFn
	if len(args) > 0 {
		format = c.compileStringArg(args[0], sc, dot)
		rest, _ = c.rawArgs(args[1:], sc, dot)
	}
	return func(s *state, dot, final reflect.Value) reflect.Value {
		defer s.recoverBuiltin(name)
		var f string
		var a []any
		if format != nil {
			f = format(s, dot).String()
			a = make([]any, 0, len(rest)+1)
			for _, r := range rest {
				a = append(a, box(r(s, dot)))
			}
			if hasFinal {
				a = append(a, box(final))
			}
		} else {
			// The format itself arrives through the pipeline.
			f = s.validateString(final).String()
		}
		s.budget(s.meter.Printf(f, a))
		str := fmt.Sprintf(f, a...)
		s.budget(s.meter.Size(len(str)))
		return reflect.ValueOf(str)
	}, stringType
}

// ---- builtin implementations ----------------------------------------------

func builtinLen(item reflect.Value) (int, error) {
	v, isNil := indirect(item)
	if isNil {
		return 0, fmt.Errorf("len of nil pointer")
	}
	switch v.Kind() {
	case reflect.Array, reflect.Slice, reflect.String:
		return v.Len(), nil
	case reflect.Invalid:
		// text/template fails here by asking an invalid value for
		// its type; keep the failure, with a clearer message.
		return 0, fmt.Errorf("len of untyped nil")
	}
	return 0, fmt.Errorf("len of type %s", v.Type())
}

// position reads an index or slice bound, which may be at most limit.
func position(v reflect.Value, limit int) (int, error) {
	var x int64
	switch classOf(v) {
	case classInt:
		x = v.Int()
	case classUint:
		x = int64(v.Uint())
	default:
		if !v.IsValid() {
			return 0, fmt.Errorf("cannot index slice/array with nil")
		}
		return 0, fmt.Errorf("cannot index slice/array with type %s", v.Type())
	}
	if x < 0 || int(x) < 0 || int(x) > limit {
		return 0, fmt.Errorf("index out of range: %d", x)
	}
	return int(x), nil
}

// builtinIndex is index: vals[0][vals[1]][vals[2]]...
func builtinIndex(vals []reflect.Value) (reflect.Value, error) {
	cur := vals[0]
	if !cur.IsValid() {
		return reflect.Value{}, fmt.Errorf("index of untyped nil")
	}
	for _, key := range vals[1:] {
		var isNil bool
		if cur, isNil = indirect(cur); isNil {
			return reflect.Value{}, fmt.Errorf("index of nil pointer")
		}
		switch cur.Kind() {
		case reflect.Array, reflect.Slice, reflect.String:
			// A position equal to the length passes the bounds check
			// and then panics in reflect, which the caller turns into
			// an error, as text/template does.
			i, err := position(key, cur.Len())
			if err != nil {
				return reflect.Value{}, err
			}
			cur = cur.Index(i)
		default:
			return reflect.Value{}, fmt.Errorf("can't index item of type %s", cur.Type())
		}
	}
	return cur, nil
}

// builtinSlice is slice: vals[0][vals[1]:vals[2]:vals[3]].
func builtinSlice(vals []reflect.Value) (reflect.Value, error) {
	item := vals[0]
	bounds := vals[1:]
	if !item.IsValid() {
		return reflect.Value{}, fmt.Errorf("slice of untyped nil")
	}
	item, isNil := indirect(item)
	if isNil {
		return reflect.Value{}, fmt.Errorf("slice of nil pointer")
	}
	if len(bounds) > 3 {
		return reflect.Value{}, fmt.Errorf("too many slice indexes: %d", len(bounds))
	}
	limit := 0
	switch item.Kind() {
	case reflect.String:
		if len(bounds) == 3 {
			return reflect.Value{}, fmt.Errorf("cannot 3-index slice a string")
		}
		limit = item.Len()
	case reflect.Array, reflect.Slice:
		limit = item.Cap()
	default:
		return reflect.Value{}, fmt.Errorf("can't slice item of type %s", item.Type())
	}
	lo, hi, max := 0, item.Len(), 0
	for i, b := range bounds {
		x, err := position(b, limit)
		if err != nil {
			return reflect.Value{}, err
		}
		switch i {
		case 0:
			lo = x
		case 1:
			hi = x
		case 2:
			max = x
		}
	}
	if lo > hi {
		return reflect.Value{}, fmt.Errorf("invalid slice index: %d > %d", lo, hi)
	}
	if len(bounds) < 3 {
		return item.Slice(lo, hi), nil
	}
	if hi > max {
		return reflect.Value{}, fmt.Errorf("invalid slice index: %d > %d", hi, max)
	}
	return item.Slice3(lo, hi, max), nil
}

var (
	errBadComparisonType = errors.New("invalid type for comparison")
	errNoComparison      = errors.New("missing argument for comparison")
)

// opClass groups the kinds the comparison builtins treat alike.
type opClass int

const (
	classOther opClass = iota // not comparable by value (or invalid)
	classBool
	classComplex
	classInt
	classFloat
	classString
	classUint
)

func classOf(v reflect.Value) opClass {
	switch v.Kind() {
	case reflect.Bool:
		return classBool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return classInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return classUint
	case reflect.Float32, reflect.Float64:
		return classFloat
	case reflect.Complex64, reflect.Complex128:
		return classComplex
	case reflect.String:
		return classString
	}
	return classOther
}

// mixedInts reports whether one class is signed and the other unsigned;
// such operands are compared by value regardless of their types.
func mixedInts(a, b opClass) bool {
	return a == classInt && b == classUint || a == classUint && b == classInt
}

// cmpMixed orders a signed and an unsigned integer (x has class cx).
func cmpMixed(x, y reflect.Value, cx opClass) int {
	if cx == classInt {
		if x.Int() < 0 {
			return -1
		}
		return cmp.Compare(uint64(x.Int()), y.Uint())
	}
	if y.Int() < 0 {
		return 1
	}
	return cmp.Compare(x.Uint(), uint64(y.Int()))
}

// sameClassEqual compares two values of the same basic class.
func sameClassEqual(x, y reflect.Value, c opClass) bool {
	switch c {
	case classBool:
		return x.Bool() == y.Bool()
	case classComplex:
		return x.Complex() == y.Complex()
	case classFloat:
		return x.Float() == y.Float()
	case classInt:
		return x.Int() == y.Int()
	case classUint:
		return x.Uint() == y.Uint()
	}
	return x.String() == y.String()
}

// isNilValue reports whether v is invalid or the nil of a nillable kind.
func isNilValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Invalid:
		return true
	case reflect.Pointer, reflect.Slice:
		return v.IsNil()
	}
	return false
}

// otherEqual compares values that are not of a basic class: nils compare
// equal to each other, anything else must have a comparable type.
func otherEqual(x, y reflect.Value) (bool, error) {
	if x.IsValid() && y.IsValid() && x.Kind() != y.Kind() {
		return false, fmt.Errorf("non-comparable types %s: %v, %s: %v", x, x.Type(), y.Type(), y)
	}
	xNil, yNil := isNilValue(x), isNilValue(y)
	if xNil || yNil {
		return xNil == yNil, nil
	}
	if !y.Type().Comparable() {
		return false, fmt.Errorf("non-comparable type %s: %v", y, y.Type())
	}
	return x.Interface() == y.Interface(), nil
}

// eq reports whether first equals any of rest.
func eq(first reflect.Value, rest ...reflect.Value) (bool, error) {
	if len(rest) == 0 {
		return false, errNoComparison
	}
	x := first
	cx := classOf(x)
	for _, r := range rest {
		y := r
		cy := classOf(y)
		var equal bool
		switch {
		case cx == cy && cx != classOther:
			equal = sameClassEqual(x, y, cx)
		case cx == cy:
			var err error
			if equal, err = otherEqual(x, y); err != nil {
				return false, err
			}
		case mixedInts(cx, cy):
			equal = cmpMixed(x, y, cx) == 0
		case x.IsValid() && y.IsValid():
			return false, fmt.Errorf("incompatible types for comparison: %v and %v", x.Type(), y.Type())
		}
		if equal {
			return true, nil
		}
	}
	return false, nil
}

// lt reports whether a < b for two ordered basic values.
func lt(a, b reflect.Value) (bool, error) {
	x, y := a, b
	cx, cy := classOf(x), classOf(y)
	if cx == classOther || cy == classOther {
		return false, errBadComparisonType
	}
	if cx != cy {
		if mixedInts(cx, cy) {
			return cmpMixed(x, y, cx) < 0, nil
		}
		return false, fmt.Errorf("incompatible types for comparison: %v and %v", x.Type(), y.Type())
	}
	switch cx {
	case classFloat:
		return x.Float() < y.Float(), nil
	case classInt:
		return x.Int() < y.Int(), nil
	case classUint:
		return x.Uint() < y.Uint(), nil
	case classString:
		return x.String() < y.String(), nil
	}
	return false, errBadComparisonType // bool, complex
}

// le is lt or eq.
func le(a, b reflect.Value) (bool, error) {
	if less, err := lt(a, b); less || err != nil {
		return less, err
	}
	return eq(a, b)
}

func builtinEq(v []reflect.Value) (reflect.Value, error) {
	b, err := eq(v[0], v[1:]...)
	return boolValue(b), err
}

// compare2 holds the two-operand forms of the comparison builtins.
var compare2 = map[string]func(a, b reflect.Value) (bool, error){
	"eq": func(a, b reflect.Value) (bool, error) { return eq(a, b) },
	"ne": func(a, b reflect.Value) (bool, error) {
		r, err := eq(a, b)
		return !r, err
	},
	"lt": lt,
	"le": le,
	"gt": func(a, b reflect.Value) (bool, error) {
		r, err := le(a, b)
		if err != nil {
			return false, err
		}
		return !r, nil
	},
	"ge": func(a, b reflect.Value) (bool, error) {
		r, err := lt(a, b)
		if err != nil {
			return false, err
		}
		return !r, nil
	},
}
