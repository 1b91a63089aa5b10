package fasttmpl

import (
	"cmp"
	"reflect"
	"slices"
)

// range over a map visits keys in the order fmt prints them; text/template
// gets that order from internal/fmtsort, which is not importable, so the
// ordering rules are reimplemented here.

type mapEntry struct{ key, value reflect.Value }

func sortedMap(m reflect.Value) []mapEntry {
	entries := make([]mapEntry, 0, m.Len())
	it := m.MapRange()
	for it.Next() {
		entries = append(entries, mapEntry{it.Key(), it.Value()})
	}
	slices.SortStableFunc(entries, func(a, b mapEntry) int { return compareKeys(a.key, b.key) })
	return entries
}

// compareKeys orders two map keys of the same type: numbers and strings by
// value (NaN lowest), false before true, pointers and channels by address
// (nil lowest), structs and arrays element by element, interfaces by
// dynamic type and then value (nil lowest). Keys of different types compare
// as -1.
func compareKeys(a, b reflect.Value) int {
	if a.Type() != b.Type() {
		return -1
	}
	switch classOf(a) {
	case classInt:
		return cmp.Compare(a.Int(), b.Int())
	case classUint:
		return cmp.Compare(a.Uint(), b.Uint())
	case classString:
		return cmp.Compare(a.String(), b.String())
	case classFloat:
		return cmp.Compare(a.Float(), b.Float())
	case classComplex:
		x, y := a.Complex(), b.Complex()
		if c := cmp.Compare(real(x), real(y)); c != 0 {
			return c
		}
		return cmp.Compare(imag(x), imag(y))
	case classBool:
		return cmp.Compare(btoi(a.Bool()), btoi(b.Bool()))
	}
	switch a.Kind() {
	case reflect.Pointer, reflect.UnsafePointer:
		return cmp.Compare(a.Pointer(), b.Pointer())
	case reflect.Chan:
		if c, either := nilFirst(a, b); either {
			return c
		}
		return cmp.Compare(a.Pointer(), b.Pointer())
	case reflect.Struct:
		for i := range a.NumField() {
			if c := compareKeys(a.Field(i), b.Field(i)); c != 0 {
				return c
			}
		}
		return 0
	case reflect.Array:
		for i := range a.Len() {
			if c := compareKeys(a.Index(i), b.Index(i)); c != 0 {
				return c
			}
		}
		return 0
	case reflect.Interface:
		if c, either := nilFirst(a, b); either {
			return c
		}
		// Different dynamic types are ordered by their type descriptors.
		ta, tb := reflect.ValueOf(a.Elem().Type()), reflect.ValueOf(b.Elem().Type())
		if c := cmp.Compare(ta.Pointer(), tb.Pointer()); c != 0 {
			return c
		}
		return compareKeys(a.Elem(), b.Elem())
	}
	panic("fasttmpl: unordered map key type " + a.Type().String())
}

// nilFirst orders nil before non-nil; either reports whether a or b is nil.
func nilFirst(a, b reflect.Value) (c int, either bool) {
	an, bn := a.IsNil(), b.IsNil()
	if !an && !bn {
		return 0, false
	}
	return cmp.Compare(btoi(!an), btoi(!bn)), true
}
