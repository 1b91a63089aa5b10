// Package fasttmpl renders partner email templates written in html/template
// syntax much faster than html/template, while producing byte-identical
// output. docs/adr/0005-fasttmpl.md says why it exists and where it ends.
//
// # Edge
//
// The engine implements exactly what a partner template may contain and
// nothing more: Compile and CompileText first vet the source with
// emailtemplate.Check, refusing anything else with ErrNotAllowed, and
// compile it for *emailtemplate.Data alone. That is: the actions of
// text/template (if/else if, with/else with, range with 0, 1 or 2
// variables over a list of the data, else, break and continue,
// template/define/block without recursion, variables and assignment,
// pipelines, parenthesized pipelines, comments and trim markers), the
// builtins of emailtemplate.AllowedFuncs (text/template's but call), and
// every escaper html/template inserts. Data's types have no methods, maps,
// interfaces or pointers but the root (TestDataIsPlain), so the engine
// implements none of those either; a template that needs a new function
// or Data a new kind of field is a change to Check or Data first, then to
// the engine, with differential tests (see the ADR).
//
// # How it works
//
// Compile lets html/template parse the template and run its contextual
// escaper, so every security decision (which escapers apply where) is
// html/template's own. The escaped parse tree, in which each output action
// ends with calls such as _html_template_urlfilter | _html_template_attrescaper,
// is then compiled into a program specialised for Data's types:
//
//   - static text becomes byte chunks, merged into the following action;
//   - field chains (.A.B, $x.A) are resolved to byte offsets and read
//     through pointers; values whose type is known only at run time (the
//     results of index and slice, say) use reflection with text/template's
//     rules;
//   - variables are bound to frame slots at compile time by simulating
//     text/template's variable stack, which is structurally static;
//   - each output action becomes a source (field, printf with a simple
//     format, any pipeline) followed by native, allocation-free
//     re-implementations of the escapers, with common escaper sequences
//     fused into single passes; a value where an attribute name goes is
//     filtered by a tiny html/template on the side;
//   - the builtins are implemented natively on reflect.Values.
//
// Renders write straight into the caller's bytes.Buffer and, on the common
// paths, allocate nothing.
//
// A template falls back to plain html/template as a whole (still correct,
// just slower) when html/template calls a template from a non-HTML-text
// context (it then derives a private copy of the callee that its API does
// not expose), or when a variable is declared inside a parenthesized
// pipeline. Fast and FallbackReason report this.
//
// # Text templates
//
// CompileText compiles a text/template the same way, without escapers:
// each action prints its value as text/template does. Email subjects,
// preheaders and text bodies use it.
//
// # Limits
//
// ExecuteLimited bounds one execution's steps (the template's body, and
// every template call and loop iteration), output and time
// (tmplbudget.Limits), so an untrusted template fails with
// tmplbudget.ErrSteps, ErrBytes or ErrTime instead of taking a worker
// down. Both engines count the same steps: the compiled engine checks the
// budget at each of them and the output at every output action; the
// fallbacks run as a tmplbudget.Runner, on copies of the template
// instrumented to count the same steps, so loops and calls that write
// nothing are stopped there as well. The clock is read every
// tmplbudget.ClockEvery steps. On both, the builtins that build strings
// (print, printf, println, html, js, urlquery) refuse to build one longer
// than the output budget, and a printf whose widths and precisions alone
// would pass it is refused before it formats anything. Compile itself runs
// none of the template.
//
// # Use of unsafe
//
// unsafe is used in two places, each with a stated invariant (the ADR has
// the benchmark that keeps them):
//
//   - Field chains (pathExpr) read through pointers computed from byte
//     offsets fixed at compile time. This is sound only if the value at run
//     time has the static type the offsets were computed for. The compiler
//     guarantees it: the root is the execution's *emailtemplate.Data or a
//     variable whose type is static, and a variable is given a static type
//     only when every assignment to it is a declaration of that type (a
//     name ever assigned with '=' is typed dynamic); the results of index,
//     slice, and "and" and "or" of mixed types are dynamic, and dynamic
//     values always take the reflect path. Struct values that are not
//     addressable take the reflect path too. A nil root fails the
//     execution, as in text/template.
//   - view turns scratch bytes into a string without copying. The string is
//     consumed by the next escaper of the same action before the scratch
//     buffer is written again, and never escapes the action.
//
// The differential tests (corpus, edge cases, reference workload, both
// modes), the fuzz tests and TestConcurrentExecute exercise both; run them
// with -race, which also enables the runtime's checkptr instrumentation of
// unsafe pointer arithmetic.
//
// Execution errors happen in exactly the cases where html/template fails
// (bad indexes, missing fields, wrong arguments, ...), are returned as
// text/template.ExecError values and wrap the underlying error; their text
// may differ from html/template's.
package fasttmpl
