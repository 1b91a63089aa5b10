package fasttmpl

import (
	"fmt"
	"reflect"
)

// This file reproduces the value semantics of text/template (truth, argument
// validation, printing) on reflect.Values. The rules are subtle and the
// output must match byte for byte, so the helpers follow text/template's
// observable behaviour closely; the compiler only bypasses them when static
// types prove a shortcut gives the same result.

var (
	reflectValueType = reflect.TypeFor[reflect.Value]()
	errorType        = reflect.TypeFor[error]()
	stringerType     = reflect.TypeFor[fmt.Stringer]()
	formatterType    = reflect.TypeFor[fmt.Formatter]()
	anyType          = reflect.TypeFor[any]()
	stringType       = reflect.TypeFor[string]()
	intType          = reflect.TypeFor[int]()
	boolType         = reflect.TypeFor[bool]()
)

// indirect follows pointers and interfaces until it reaches a non-pointer
// value or a nil; isNil reports the latter.
func indirect(v reflect.Value) (rv reflect.Value, isNil bool) {
	for ; v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface; v = v.Elem() {
		if v.IsNil() {
			return v, true
		}
	}
	return v, false
}

// indirectInterface unwraps one interface level; a nil interface becomes the
// invalid Value.
func indirectInterface(v reflect.Value) reflect.Value {
	if v.Kind() != reflect.Interface {
		return v
	}
	if v.IsNil() {
		return reflect.Value{}
	}
	return v.Elem()
}

// isTrue is the truth test of if, with, and, or and not: the zero value of
// any type is false, except that struct values are always true; ok is false
// for kinds that have no truth value.
func isTrue(v reflect.Value) (t, ok bool) {
	switch v.Kind() {
	case reflect.Invalid:
		return false, true
	case reflect.Struct:
		return true, true
	case reflect.Bool:
		return v.Bool(), true
	case reflect.String, reflect.Slice, reflect.Map, reflect.Array:
		return v.Len() != 0, true
	case reflect.Pointer, reflect.Interface, reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return !v.IsNil(), true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int() != 0, true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return v.Uint() != 0, true
	case reflect.Float32, reflect.Float64:
		return v.Float() != 0, true
	case reflect.Complex64, reflect.Complex128:
		return v.Complex() != 0, true
	}
	return false, false
}

func truth(v reflect.Value) bool {
	t, _ := isTrue(indirectInterface(v))
	return t
}

// canBeNil reports whether an untyped nil can stand for a value of type typ.
func canBeNil(typ reflect.Type) bool {
	switch typ.Kind() {
	case reflect.Chan, reflect.Func, reflect.Interface, reflect.Map, reflect.Pointer, reflect.Slice:
		return true
	}
	return typ == reflectValueType
}

// validateType adapts value for a parameter of type typ (nil: no
// constraint), failing the execution when text/template would: nil becomes
// the zero value of nillable types, an interface may be unwrapped, and a
// single dereference or address-of is attempted.
func (s *state) validateType(value reflect.Value, typ reflect.Type) reflect.Value {
	if !value.IsValid() {
		switch {
		case typ == nil:
			return value
		case canBeNil(typ):
			return reflect.Zero(typ)
		}
		s.errorf("invalid value; expected %s", typ)
	}
	if typ == nil || value.Type() == typ {
		return value
	}
	if typ == reflectValueType {
		return reflect.ValueOf(value)
	}
	if value.Type().AssignableTo(typ) {
		return value
	}
	v := value
	if v.Kind() == reflect.Interface && !v.IsNil() {
		if v = v.Elem(); v.Type().AssignableTo(typ) {
			return v
		}
	}
	if v.Kind() == reflect.Pointer && v.Type().Elem().AssignableTo(typ) {
		if v.IsNil() {
			s.errorf("dereference of nil pointer of type %s", typ)
		}
		return v.Elem()
	}
	if v.CanAddr() && reflect.PointerTo(v.Type()).AssignableTo(typ) {
		return v.Addr()
	}
	s.errorf("wrong type for value; expected %s; got %s", typ, v.Type())
	return v
}

// printableValue returns what fmt should print for v when text/template
// prints it: pointers are followed, an addressable value whose pointer has a
// String or Error method is printed through it, and funcs and channels
// cannot be printed (ok false).
func printableValue(v reflect.Value) (any, bool) {
	if v.Kind() == reflect.Pointer {
		v, _ = indirect(v)
	}
	if !v.IsValid() {
		return "<no value>", true
	}
	t := v.Type()
	if hasPrintMethod(t) {
		return v.Interface(), true
	}
	if v.CanAddr() && hasPrintMethod(reflect.PointerTo(t)) {
		return v.Addr().Interface(), true
	}
	if k := v.Kind(); k == reflect.Chan || k == reflect.Func {
		return nil, false
	}
	return v.Interface(), true
}

// hasPrintMethod reports whether t is an error or a fmt.Stringer.
func hasPrintMethod(t reflect.Type) bool {
	return t.Implements(errorType) || t.Implements(stringerType)
}

// textEvalArgs is the text that text/template's html, js and urlquery
// builtins see: a lone string as is, otherwise fmt.Sprint of the arguments
// made printable like printed values.
func textEvalArgs(args []any) string {
	if len(args) == 1 {
		if str, ok := args[0].(string); ok {
			return str
		}
	}
	for i, a := range args {
		if p, ok := printableValue(reflect.ValueOf(a)); ok {
			args[i] = p
		}
	}
	return fmt.Sprint(args...)
}

// derefAll follows non-nil pointers as far as they go.
func derefAll(a any) any {
	if a == nil || reflect.TypeOf(a).Kind() != reflect.Pointer {
		return a
	}
	v := reflect.ValueOf(a)
	for v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	return v.Interface()
}

// derefToPrinter follows non-nil pointers until reaching a value with a
// String or Error method, or a non-pointer.
func derefToPrinter(a any) any {
	if a == nil {
		return nil
	}
	v := reflect.ValueOf(a)
	for v.Kind() == reflect.Pointer && !v.IsNil() && !hasPrintMethod(v.Type()) {
		v = v.Elem()
	}
	return v.Interface()
}

// htmlStringify is the text (and trusted content type) an html/template
// escaper sees for its arguments: a lone string or trusted-content value,
// found by following pointers, is used as is; anything else is formatted
// with fmt.Sprint after following pointers down to a printable value,
// leaving out untyped nils.
func htmlStringify(args []any) (string, ctype) {
	if len(args) == 1 {
		if str, ct, ok := contentOf(derefAll(args[0])); ok {
			return str, ct
		}
	}
	kept := args[:0]
	for _, a := range args {
		if a != nil {
			kept = append(kept, derefToPrinter(a))
		}
	}
	return fmt.Sprint(kept...), ctPlain
}

// htmlEvalArgs is html/template's _eval_args_, the argument formatting it
// inserts for {{html a b}} and {{urlquery a b}}.
func htmlEvalArgs(args []any) string {
	if len(args) == 1 {
		if str, ok := args[0].(string); ok {
			return str
		}
	}
	for i, a := range args {
		args[i] = derefToPrinter(a)
	}
	return fmt.Sprint(args...)
}
