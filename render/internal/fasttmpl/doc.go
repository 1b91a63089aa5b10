// Package fasttmpl renders partner email templates written in html/template
// syntax much faster than html/template, while producing byte-identical
// output.
//
// # How it works
//
// Compile lets html/template parse the template and run its contextual
// escaper, so every security decision (which escapers apply where) is
// html/template's own. The escaped parse tree, in which each output action
// ends with calls such as _html_template_urlfilter | _html_template_attrescaper,
// is then compiled into a program specialised for the Go type of the data:
//
//   - static text becomes byte chunks, merged into the following action;
//   - field chains on statically typed structs (.A.B, $x.A) are resolved to
//     byte offsets and read through pointers; other lookups (interfaces,
//     maps, methods) use reflection with text/template's exact rules;
//   - variables are bound to frame slots at compile time by simulating
//     text/template's variable stack, which is structurally static;
//   - each output action becomes a source (field, printf with a simple
//     format, any pipeline) followed by native, allocation-free
//     re-implementations of the escapers, with common escaper sequences
//     fused into single passes;
//   - the builtins are implemented natively on reflect.Values.
//
// Renders write straight into the caller's bytes.Buffer and, on the common
// paths, allocate nothing.
//
// # Coverage
//
// The compiled engine handles all of text/template's actions (if/else if,
// with/else with, range over slices, arrays, maps, integers, channels and
// iterator functions with 0, 1 or 2 variables, else, break and continue,
// template/define/block including recursion, variables and assignment,
// pipelines, parenthesized pipelines, comments and trim markers), all the
// builtins (and, or, not, len, index, slice, print, printf, println, eq, ne,
// lt, le, gt, ge, html, js, urlquery, call), user functions and methods, and
// every escaper html/template inserts, including the trusted content types
// (template.HTML, template.URL, ...). Two rare value-level cases, trusted
// template.HTML inside attribute values and dynamic attribute names, are
// computed by a tiny html/template on the side.
//
// A template falls back to plain html/template as a whole (still correct,
// just slower) when html/template calls a template from a non-HTML-text
// context (it then derives a private copy of the callee that its API does
// not expose), when a variable is declared inside a parenthesized pipeline,
// or when a user function shadows one of html/template's internal escaper
// names. Fast and FallbackReason report this. Executing with data of another
// type than the compiled one also goes through html/template.
//
// # Text templates
//
// CompileText compiles a text/template the same way, without escapers:
// each action prints its value as text/template does. Email subjects,
// preheaders and text bodies use it; a text body on text/template costs as
// much as the HTML on the compiled engine.
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
// nothing are stopped there as well. The clock is read every tmplbudget.ClockEvery steps. On both, the
// builtins that build strings (print, printf, println, html, js,
// urlquery) refuse to build one longer than the output budget, and a
// printf whose widths and precisions alone would pass it is refused before
// it formats anything. Compile itself runs none of the template.
//
// # Use of unsafe
//
// unsafe is used in two places, each with a stated invariant:
//
//   - Field chains (pathExpr) read through pointers computed from byte
//     offsets fixed at compile time. This is sound only if the value at run
//     time has the static type the offsets were computed for. The compiler
//     guarantees it: the root is the execution's data (Execute checks its
//     type and otherwise uses html/template) or a variable whose type is
//     static, and a variable is given a static type only when every
//     assignment to it is a declaration of that type (a name ever assigned
//     with '=' is typed dynamic); types derived from interfaces, "and",
//     "or" of mixed types, index, slice and call are dynamic, and dynamic
//     values always take the reflect path. Struct values that are not
//     addressable take the reflect path too. Nil pointers on the way fail
//     the execution, as in text/template.
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
// (nil pointers, bad indexes, failing functions, ...), are returned as
// text/template.ExecError values and wrap the underlying error; their text
// may differ from html/template's.
package fasttmpl
