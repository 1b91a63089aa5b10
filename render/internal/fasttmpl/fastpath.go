package fasttmpl

import (
	"math"
	"reflect"
	"strconv"
	"text/template/parse"
	"unsafe"
)

// Fast paths for the most common shape of template expression: a chain of
// exported struct fields (.A.B, $x.A.B) ending in a string, number or bool,
// evaluated on data reached through pointers or slice elements. The chain is
// resolved to byte offsets at compile time and read with unsafe pointer
// arithmetic, which is several times cheaper than reflect.Value.Field. When
// the root value is not addressable the reflect-based evaluation with
// identical semantics is used.

// pathExpr is a static field chain on dot (slot < 0) or a variable,
// compressed to: an optional dereference of the root, an offset, then
// (dereference, offset) segments for pointer fields on the way.
type pathExpr struct {
	slot    int
	rootPtr bool   // the root is a pointer to dereference
	rootMsg string // error for a nil root pointer
	off0    uintptr
	rest    []pathSeg
	final   reflect.Type
	slow    evalFn // reflect-based evaluation of the same chain
}

type pathSeg struct {
	msg string // error if the pointer is nil
	off uintptr
}

func compressPath(pe *pathExpr, ops []pathOp) {
	i := 0
	if len(ops) > 0 && ops[0].field < 0 {
		pe.rootPtr, pe.rootMsg = true, ops[0].msg
		i = 1
	}
	for ; i < len(ops) && ops[i].field >= 0; i++ {
		pe.off0 += ops[i].offset
	}
	for i < len(ops) {
		seg := pathSeg{msg: ops[i].msg}
		for i++; i < len(ops) && ops[i].field >= 0; i++ {
			seg.off += ops[i].offset
		}
		pe.rest = append(pe.rest, seg)
	}
}

// staticPath recognises a single-command pipeline that is a static field
// chain without arguments.
func (c *compiler) staticPath(cmds []*parse.CommandNode, sc *scope, dot reflect.Type) *pathExpr {
	if len(cmds) != 1 || len(cmds[0].Args) != 1 {
		return nil
	}
	var (
		root   reflect.Type
		slot   = -1
		idents []string
	)
	switch n := cmds[0].Args[0].(type) {
	case *parse.FieldNode:
		root, idents = dot, n.Ident
	case *parse.VariableNode:
		if len(n.Ident) < 2 {
			return nil
		}
		s, t := sc.lookup(n.Ident[0])
		if s < 0 {
			return nil
		}
		slot, root, idents = s, t, n.Ident[1:]
	default:
		return nil
	}
	if root == nil {
		return nil
	}
	var ops []pathOp
	typ := root
	for _, name := range idents {
		st := classifyField(typ, name)
		if st.kind != stepStruct {
			return nil
		}
		ops = append(ops, st.ops...)
		typ = st.result
	}
	pe := &pathExpr{slot: slot, final: typ}
	compressPath(pe, ops)
	pe.slow, _ = c.compileCmds(cmds, sc, dot)
	return pe
}

// addr returns the address of the chain's final field, or nil if the root is
// invalid or not addressable (then slow must be used). Nil pointers on the
// way fail the execution like text/template does.
func (pe *pathExpr) addr(s *state, dot reflect.Value) unsafe.Pointer {
	v := dot
	if pe.slot >= 0 {
		v = s.vars[s.base+pe.slot]
	}
	var p unsafe.Pointer
	if pe.rootPtr {
		if v.Kind() != reflect.Pointer {
			return nil
		}
		p = v.UnsafePointer()
		if p == nil {
			s.fail(pe.rootMsg)
		}
	} else {
		if v.Kind() != reflect.Struct || !v.CanAddr() {
			return nil
		}
		// Allowed conversion pattern: the uintptr never outlives the
		// expression.
		p = unsafe.Pointer(v.UnsafeAddr())
	}
	p = unsafe.Add(p, pe.off0)
	for i := range pe.rest {
		p = *(*unsafe.Pointer)(p)
		if p == nil {
			s.fail(pe.rest[i].msg)
		}
		p = unsafe.Add(p, pe.rest[i].off)
	}
	return p
}

// primKind says how to read a primitive through a pointer: the kinds of
// Data's fields that are not lists or structs.
type primKind uint8

const (
	pkNone primKind = iota
	pkString
	pkBool
	pkInt
	pkFloat64
)

func primKindOf(t reflect.Type) primKind {
	switch t.Kind() {
	case reflect.String:
		return pkString
	case reflect.Bool:
		return pkBool
	case reflect.Int:
		return pkInt
	case reflect.Float64:
		return pkFloat64
	}
	return pkNone
}

// pathSrc is a hole source reading a primitive field through a pathExpr.
type pathSrc struct {
	pe   *pathExpr
	pk   primKind
	fk   fastKind
	slow textSrc
}

// newPathSrc returns a fast source for pe, or nil if its final type is not
// a primitive that converts to text without fmt.
func newPathSrc(pe *pathExpr) textSrc {
	t := pe.final
	vs := newValueSrc(pe.slow, t)
	if vs.fk == fkNone || primKindOf(t) == pkNone {
		return nil
	}
	return &pathSrc{pe: pe, pk: primKindOf(t), fk: vs.fk, slow: vs}
}

func (src *pathSrc) text(s *state, dot reflect.Value) string {
	p := src.pe.addr(s, dot)
	if p == nil {
		return src.slow.text(s, dot)
	}
	switch src.pk {
	case pkString:
		return *(*string)(p)
	case pkInt:
		return s.keep(strconv.AppendInt(s.scratch(), int64(*(*int)(p)), 10))
	case pkBool:
		if *(*bool)(p) {
			return "true"
		}
		return "false"
	case pkFloat64:
		f := *(*float64)(p)
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return src.slow.text(s, dot)
		}
		return s.keep(strconv.AppendFloat(s.scratch(), f, 'g', -1, 64))
	}
	return src.slow.text(s, dot)
}

// pathIfNode is an if whose condition is a static field chain of primitive
// type; truth is read directly from memory.
type pathIfNode struct {
	pe       *pathExpr
	pk       primKind
	slowIf   node // the general if, used when the root is not addressable
	list     node
	elseList node
}

func (n *pathIfNode) exec(s *state, dot reflect.Value) ctrl {
	p := n.pe.addr(s, dot)
	if p == nil {
		return n.slowIf.exec(s, dot)
	}
	var t bool
	switch n.pk {
	case pkString:
		t = len(*(*string)(p)) > 0
	case pkBool:
		t = *(*bool)(p)
	case pkInt:
		t = *(*int)(p) != 0
	default:
		t = *(*float64)(p) != 0
	}
	if t {
		return n.list.exec(s, dot)
	}
	if n.elseList != nil {
		return n.elseList.exec(s, dot)
	}
	return ctrlNone
}

// strPathHole is an output action whose source is a static field chain of
// string kind: the common {{.A.B}} / {{$x.A}} case, with no indirection
// between the node and its escapers.
type strPathHole struct {
	pre   []byte // static text emitted before the value
	pe    pathExpr
	first escFunc
	rest  []escFunc
	slow  node // general evaluation when the root is not addressable
}

func (h *strPathHole) exec(s *state, dot reflect.Value) ctrl {
	s.out = append(s.out, h.pre...)
	p := h.pe.addr(s, dot)
	if p == nil {
		return h.slow.exec(s, dot)
	}
	str := *(*string)(p)
	if len(h.rest) == 0 {
		s.out = h.first(s.out, str)
		s.checkOutput()
		return ctrlNone
	}
	b := h.first(s.tmp[0][:0], str)
	s.tmp[0] = b
	last := len(h.rest) - 1
	for i := 0; i < last; i++ {
		j := (i + 1) & 1
		nb := h.rest[i](s.tmp[j][:0], view(b))
		s.tmp[j] = nb
		b = nb
	}
	s.out = h.rest[last](s.out, view(b))
	s.checkOutput()
	return ctrlNone
}
