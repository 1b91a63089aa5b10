package fasttmpl

import (
	"reflect"
	"text/template/parse"
)

// Text mode compiles text/template trees: an action prints its value as
// text/template's printValue does, with no escaping. Values whose printed
// form needs no fmt (strings, numbers and bools) use the same fast sources
// as HTML holes followed by the identity; everything else prints through
// the general path.

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
				return &strPathHole{pe: *src.pe, first: escIdentity, slow: &holeNode{src: src.slow, chain: identity}}
			}
			return &holeNode{src: src, chain: identity}
		}
	}
	e, t := c.compileCmds(cmds, sc, dot)
	if t != nil && textFast(t) {
		// The field of no dot (a template called without one) is
		// invalid whatever its static type.
		src := newValueSrc(e, t)
		src.noValue = "<no value>"
		return &holeNode{src: src, chain: identity}
	}
	return printNode{e}
}

// textFast reports whether text/template prints a value of static type t
// exactly as html/template's stringify converts it, so the HTML hole
// sources can produce it: a basic kind (text/template would also call a
// pointer receiver's String method; Data's types have none).
func textFast(t reflect.Type) bool { return fastKindOf(t) != fkNone }
