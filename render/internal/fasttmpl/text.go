package fasttmpl

import (
	"reflect"
	"text/template/parse"
)

// Text mode compiles text/template trees: an action prints its value as
// text/template's printValue does, with no escaping. Values whose printed
// form needs no fmt (strings, numbers and bools of types without String,
// Error or Format methods, on the value or its pointer) use the same fast
// sources as HTML holes followed by the identity; everything else prints
// through the faithful general path.

// compileTextHole compiles an output action of a text template.
func (c *compiler) compileTextHole(pipe *parse.PipeNode, sc *scope, dot reflect.Type) node {
	cmds := pipe.Cmds
	if c.isChainCmd(cmds[len(cmds)-1]) && len(cmds) > 1 {
		// {{... | html}}, {{... | js}}, {{... | urlquery}}: the hole
		// compiler implements these as text/template's builtins.
		return c.compileHole(pipe, sc, dot)
	}
	identity := []escFunc{escIdentity}
	if len(cmds) == 1 {
		if src, ok := c.stringSource(cmds[0], sc, dot).(*printfSrc); ok {
			return &holeNode{src: src, chain: identity}
		}
	}
	if pe := c.staticPath(cmds, sc, dot); pe != nil && textFast(pe.final) {
		if src, ok := newPathSrc(pe).(*pathSrc); ok {
			if src.fk == fkString {
				return &strPathHole{pe: *src.pe, ct: src.ct, first: escIdentity, slow: &holeNode{src: src.slow, chain: identity}}
			}
			return &holeNode{src: src, chain: identity}
		}
	}
	e, t := c.compileCmds(cmds, sc, dot)
	if t != nil && textFast(t) {
		// A map lookup of a static element type can still miss.
		src := newValueSrc(e, t)
		src.noValue = "<no value>"
		return &holeNode{src: src, chain: identity}
	}
	return printNode{e}
}

// textFast reports whether text/template prints a value of static type t
// exactly as html/template's stringify converts it, so the HTML hole
// sources can produce it: a basic kind whose type, and pointer to it, have
// no String, Error or Format method (text/template calls a pointer
// receiver's String on an addressable value; html/template does not).
func textFast(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer || t.Kind() == reflect.Interface || fastKindOf(t) == fkNone {
		return false
	}
	pt := reflect.PointerTo(t)
	return !pt.Implements(stringerType) && !pt.Implements(errorType) && !pt.Implements(formatterType)
}
