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
	stringType = reflect.TypeFor[string]()
	intType    = reflect.TypeFor[int]()
	boolType   = reflect.TypeFor[bool]()
)

// indirect follows pointers until it reaches a non-pointer value or a nil;
// isNil reports the latter. (text/template follows interfaces too; no value
// of Data's types or of the builtins' results is one.)
func indirect(v reflect.Value) (rv reflect.Value, isNil bool) {
	for ; v.Kind() == reflect.Pointer; v = v.Elem() {
		if v.IsNil() {
			return v, true
		}
	}
	return v, false
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
	case reflect.String, reflect.Slice, reflect.Array:
		return v.Len() != 0, true
	case reflect.Pointer:
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
	t, _ := isTrue(v)
	return t
}

// validateString is validateType of text/template's exec.go for a string
// parameter (printf's format from a pipeline): values of Data's types and
// of the builtins' results are never interfaces or pointers to strings, so
// the value is a string or an error.
func (s *state) validateString(value reflect.Value) reflect.Value {
	if !value.IsValid() {
		s.errorf("invalid value; expected string")
	}
	if value.Kind() != reflect.String {
		s.errorf("wrong type for value; expected string; got %s", value.Type())
	}
	return value
}

// printableValue returns what fmt should print for v when text/template
// prints it: pointers are followed, and the invalid value is "<no value>".
// (text/template also prints through String and Error methods, and refuses
// funcs and channels; Data has none.)
func printableValue(v reflect.Value) any {
	if v.Kind() == reflect.Pointer {
		v, _ = indirect(v)
	}
	if !v.IsValid() {
		return "<no value>"
	}
	return v.Interface()
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
		args[i] = printableValue(reflect.ValueOf(a))
	}
	return fmt.Sprint(args...)
}

// deref follows non-nil pointers as far as they go.
func deref(a any) any {
	if a == nil || reflect.TypeOf(a).Kind() != reflect.Pointer {
		return a
	}
	v := reflect.ValueOf(a)
	for v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	return v.Interface()
}

// htmlStringify is the text an html/template escaper sees for its
// arguments: a lone string, found by following pointers, is used as is;
// anything else is formatted with fmt.Sprint after following pointers,
// leaving out untyped nils.
func htmlStringify(args []any) string {
	if len(args) == 1 {
		if str, ok := deref(args[0]).(string); ok {
			return str
		}
	}
	kept := args[:0]
	for _, a := range args {
		if a != nil {
			kept = append(kept, deref(a))
		}
	}
	return fmt.Sprint(kept...)
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
		args[i] = deref(a)
	}
	return fmt.Sprint(args...)
}
