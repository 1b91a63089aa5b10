package tmplbudget

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	texttemplate "text/template"
	"unicode/utf8"
)

// The checks below refuse a builtin call before it builds a string that
// would be over the output budget. Each counts a lower bound of the
// string's length (the strings in the arguments, padding and precision),
// so a call whose result fits is never refused, while a call that would
// allocate many times the budget is; the length of the result is then
// checked exactly.

// Args refuses a call of print, println, html, js, urlquery or
// html/template's _eval_args_ on args, which all print every argument,
// when that is more than the output budget.
func (m *Meter) Args(args []any) error {
	if m.maxBytes == math.MaxInt {
		return nil
	}
	n := 0
	for _, a := range args {
		if n += leastSize(a, m.maxBytes-n); n > m.maxBytes {
			break
		}
	}
	return m.Size(n)
}

// Printf refuses printf(format, args...) when what it would print, its
// widths and precisions included, is more than the output budget.
func (m *Meter) Printf(format string, args []any) error {
	if m.maxBytes == math.MaxInt {
		return nil
	}
	return m.Size(printfSize(format, args, m.maxBytes))
}

// printfSize is a lower bound of len(fmt.Sprintf(format, args...)). It
// walks the format as fmt does (flags, argument indexes, widths and
// precisions given as numbers or by *), and counts for each verb the
// larger of its width and a lower bound of what it prints of its argument:
// the argument's strings, the precision of a float printed with e or f,
// nothing when a precision may truncate it. So every byte of padding
// counts, and every repetition of a large argument. It stops counting
// past limit.
func printfSize(format string, args []any, limit int) int {
	n, arg, end := 0, 0, len(format)
	for i := 0; i < end && n <= limit; {
		start := i
		for i < end && format[i] != '%' {
			i++
		}
		n += i - start
		if i >= end {
			break
		}
		i++
	flags:
		for ; i < end; i++ {
			switch format[i] {
			case '#', '0', '+', '-', ' ':
			default:
				break flags
			}
		}
		good := true
		var afterIndex bool
		arg, i, afterIndex, good = argNumber(format, i, arg, len(args), good)
		wid := 0
		if i < end && format[i] == '*' {
			i++
			var ok bool
			wid, ok, arg = intFromArg(args, arg)
			if !ok {
				wid = 0
			}
			wid = max(wid, -wid)
			afterIndex = false
		} else {
			var present bool
			wid, present, i = parsenum(format, i, end)
			if afterIndex && present {
				good = false
			}
		}
		prec, precPresent := 0, false
		if i+1 < end && format[i] == '.' {
			i++
			if afterIndex {
				good = false
			}
			arg, i, afterIndex, good = argNumber(format, i, arg, len(args), good)
			if i < end && format[i] == '*' {
				i++
				prec, precPresent, arg = intFromArg(args, arg)
				if prec < 0 {
					prec, precPresent = 0, false
				}
				afterIndex = false
			} else {
				prec, _, i = parsenum(format, i, end)
				precPresent = true
			}
		}
		if !afterIndex {
			arg, i, _, good = argNumber(format, i, arg, len(args), good)
		}
		if i >= end {
			break
		}
		verb, size := utf8.DecodeRuneInString(format[i:])
		i += size
		if verb == '%' { // no argument, no width
			n++
			continue
		}
		if !good || arg >= len(args) {
			continue
		}
		n += verbSize(verb, args[arg], wid, prec, precPresent, limit-n)
		arg++
	}
	return n
}

// verbSize is a lower bound of what fmt prints of a under verb with the
// given width and precision.
func verbSize(verb rune, a any, wid, prec int, precPresent bool, limit int) int {
	if a == nil {
		if verb == 'v' || verb == 'T' {
			return max(wid, len("<nil>"))
		}
		return 0
	}
	if verb == 'T' || verb == 'p' {
		return wid
	}
	v := reflect.ValueOf(a)
	if v.Type().Implements(formatterType) {
		return 0 // it prints itself, ignoring the width if it likes
	}
	// fmt pads scalars and strings (byte slices printed as strings) as a
	// whole; composite values it pads element by element, so an empty
	// one is not padded at all.
	padded := false
	switch v.Kind() {
	case reflect.Bool, reflect.String,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		padded = true
	case reflect.Slice, reflect.Array:
		padded = v.Type().Elem().Kind() == reflect.Uint8 && strings.ContainsRune("sqxX", verb)
	}
	content := 0
	switch {
	case !precPresent:
		content = leastSize(a, limit)
	case strings.ContainsRune("eEfF", verb) && isFloat(a):
		content = prec // digits after the point
	}
	if padded {
		return max(wid, content)
	}
	return content
}

// The helpers below are fmt's own (print.go), so that printfSize reads a
// format exactly as fmt does.

func tooLarge(x int) bool {
	const max int = 1e6
	return x > max || x < -max
}

func parsenum(s string, start, end int) (num int, isnum bool, newi int) {
	if start >= end {
		return 0, false, end
	}
	for newi = start; newi < end && '0' <= s[newi] && s[newi] <= '9'; newi++ {
		if tooLarge(num) {
			return 0, false, end // fmt gives up on the rest of the format
		}
		num = num*10 + int(s[newi]-'0')
		isnum = true
	}
	return
}

func intFromArg(a []any, argNum int) (num int, isInt bool, newArgNum int) {
	newArgNum = argNum
	if argNum < len(a) {
		num, isInt = a[argNum].(int)
		if !isInt {
			switch v := reflect.ValueOf(a[argNum]); v.Kind() {
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
				n := v.Int()
				if int64(int(n)) == n {
					num, isInt = int(n), true
				}
			case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
				n := v.Uint()
				if int64(n) >= 0 && uint64(int(n)) == n {
					num, isInt = int(n), true
				}
			}
		}
		newArgNum = argNum + 1
		if tooLarge(num) {
			num, isInt = 0, false
		}
	}
	return
}

// argNumber reads an explicit argument index [n] at format[i:]; good
// turns false for an index fmt rejects (it prints BADINDEX instead of an
// argument).
func argNumber(format string, i, argNum, numArgs int, good bool) (newArgNum, newi int, found, newGood bool) {
	if len(format) <= i || format[i] != '[' {
		return argNum, i, false, good
	}
	index, wid, ok := parseArgNumber(format[i:])
	if ok && 0 <= index && index < numArgs {
		return index, i + wid, true, good
	}
	return argNum, i + wid, ok, false
}

func parseArgNumber(format string) (index int, wid int, ok bool) {
	if len(format) < 3 {
		return 0, 1, false
	}
	for i := 1; i < len(format); i++ {
		if format[i] == ']' {
			width, ok, newi := parsenum(format, 1, i)
			if !ok || newi != i {
				return 0, i + 1, false
			}
			return width - 1, i + 1, true
		}
	}
	return 0, 1, false
}

func isFloat(a any) bool {
	switch reflect.ValueOf(a).Kind() {
	case reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return true
	}
	return false
}

var (
	stringerType  = reflect.TypeFor[fmt.Stringer]()
	errorType     = reflect.TypeFor[error]()
	formatterType = reflect.TypeFor[fmt.Formatter]()
)

// leastSize is a lower bound of how long fmt prints a with %v: the lengths
// of the strings and byte slices in it. Values with methods that print
// them (String, Error, Format) count nothing: what they print is unknown
// until they run. It stops counting past limit.
func leastSize(a any, limit int) int {
	switch a := a.(type) {
	case nil:
		return 0
	case string:
		return len(a)
	case []byte:
		return len(a)
	}
	return valueSize(reflect.ValueOf(a), limit, 0)
}

func valueSize(v reflect.Value, limit, depth int) int {
	if !v.IsValid() || depth > 8 {
		return 0
	}
	if t := v.Type(); t.Implements(stringerType) || t.Implements(errorType) || t.Implements(formatterType) {
		return 0
	}
	n := 0
	switch v.Kind() {
	case reflect.String:
		return v.Len()
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return v.Len()
		}
		for i := 0; i < v.Len() && n <= limit; i++ {
			n += valueSize(v.Index(i), limit-n, depth+1)
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next() && n <= limit; {
			n += valueSize(it.Key(), limit-n, depth+1)
			n += valueSize(it.Value(), limit-n, depth+1)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField() && n <= limit; i++ {
			n += valueSize(v.Field(i), limit-n, depth+1)
		}
	case reflect.Interface:
		return valueSize(v.Elem(), limit, depth+1)
	case reflect.Pointer:
		// fmt prints what a pointer points to only at the top; deeper
		// pointers print as addresses.
		if depth == 0 && !v.IsNil() {
			return valueSize(v.Elem(), limit, depth+1)
		}
	}
	return n
}

// funcs are the functions an instrumented template runs with: the step
// counter and the string-building builtins bounded by m. Names in user,
// the template's own functions, are left to them.
func (m *Meter) funcs(html bool, user map[string]any) map[string]any {
	bounded := func(f func(...any) string) func(...any) (string, error) {
		return func(args ...any) (string, error) {
			if err := m.Args(args); err != nil {
				return "", err
			}
			s := f(args...)
			if err := m.Size(len(s)); err != nil {
				return "", err
			}
			return s, nil
		}
	}
	fs := map[string]any{
		stepFunc:   m.stepFunc,
		"print":    bounded(fmt.Sprint),
		"println":  bounded(fmt.Sprintln),
		"html":     bounded(texttemplate.HTMLEscaper),
		"js":       bounded(texttemplate.JSEscaper),
		"urlquery": bounded(texttemplate.URLQueryEscaper),
		"printf": func(format string, args ...any) (string, error) {
			if err := m.Printf(format, args); err != nil {
				return "", err
			}
			s := fmt.Sprintf(format, args...)
			if err := m.Size(len(s)); err != nil {
				return "", err
			}
			return s, nil
		},
	}
	if html {
		// html/template rewrites {{html a b}} and {{urlquery a b}} to
		// call this on the arguments first.
		fs["_eval_args_"] = bounded(htmlEvalArgs)
	}
	for name := range user {
		delete(fs, name)
	}
	return fs
}

// stepFunc is Step as the instrumented templates call it. It panics
// rather than return its error, which text/template turns into the
// execution's error all the same: a function of one result costs a step
// less to call.
func (m *Meter) stepFunc() bool {
	if err := m.Step(); err != nil {
		panic(err)
	}
	return false
}

// htmlEvalArgs is html/template's _eval_args_: fmt.Sprint of the
// arguments with pointers followed to what they point to, short of a
// String or Error method.
func htmlEvalArgs(args ...any) string {
	if len(args) == 1 {
		if s, ok := args[0].(string); ok {
			return s
		}
	}
	for i, a := range args {
		if a == nil {
			continue
		}
		v := reflect.ValueOf(a)
		for !v.Type().Implements(stringerType) && !v.Type().Implements(errorType) && v.Kind() == reflect.Pointer && !v.IsNil() {
			v = v.Elem()
		}
		args[i] = v.Interface()
	}
	return fmt.Sprint(args...)
}
