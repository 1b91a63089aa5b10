package fasttmpl

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/url"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file holds byte-exact re-implementations of the contextual escapers that
// html/template inserts into pipelines, plus the text/template escaping
// builtins (html, js, urlquery). Each escaper appends its output to dst so a
// render can stream straight into the output buffer without intermediate
// strings. Their input is always plain text: the trusted content types
// (template.HTML, template.URL, ...) that html/template escapes differently
// appear nowhere in emailtemplate.Data, and no builtin makes one.

// failsafe is the word html/template substitutes for values it refuses to emit.
const failsafe = "ZgotmplZ"

// escFunc appends the escaped form of s to dst.
type escFunc func(dst []byte, s string) []byte

// escaperByName maps the function names used in escaped parse trees to
// their implementations. The text/template builtins html, js and urlquery are
// handled separately because they stringify their input differently.
var escaperByName = map[string]escFunc{
	"_html_template_attrescaper":      escAttr,
	"_html_template_commentescaper":   escComment,
	"_html_template_cssescaper":       escCSS,
	"_html_template_cssvaluefilter":   escCSSValue,
	"_html_template_htmlnamefilter":   escHTMLName,
	"_html_template_htmlescaper":      escHTML,
	"_html_template_jsregexpescaper":  escJSRegexp,
	"_html_template_jsstrescaper":     escJSStr,
	"_html_template_jstmpllitescaper": escJSTmplLit,
	"_html_template_nospaceescaper":   escNospace,
	"_html_template_rcdataescaper":    escRCDATA,
	"_html_template_srcsetescaper":    escSrcset,
	"_html_template_urlescaper":       escURLQuery,
	"_html_template_urlfilter":        escURLFilter,
	"_html_template_urlnormalizer":    escURLNorm,
}

// ---- HTML ----------------------------------------------------------------

// htmlRepl holds replacements for bytes escaped in HTML text, RCDATA and
// quoted attribute values. Index by byte; empty means "copy as is".
var htmlRepl = [256]string{
	0:    "\uFFFD",
	'"':  "&#34;",
	'&':  "&amp;",
	'\'': "&#39;",
	'+':  "&#43;",
	'<':  "&lt;",
	'>':  "&gt;",
}

// nospaceRepl holds replacements for unquoted attribute values.
var nospaceRepl = [256]string{
	0:    "&#xfffd;",
	'\t': "&#9;",
	'\n': "&#10;",
	'\v': "&#11;",
	'\f': "&#12;",
	'\r': "&#13;",
	' ':  "&#32;",
	'"':  "&#34;",
	'&':  "&amp;",
	'\'': "&#39;",
	'+':  "&#43;",
	'<':  "&lt;",
	'=':  "&#61;",
	'>':  "&gt;",
	'`':  "&#96;",
}

// byteTable is a replacement table plus a compact "needs replacing" bitmap
// for a fast scan over runs of safe bytes.
type byteTable struct {
	repl [256]string
	hit  [256]uint8
}

func newByteTable(repl [256]string) *byteTable {
	t := &byteTable{repl: repl}
	for i, r := range repl {
		if r != "" {
			t.hit[i] = 1
		}
	}
	return t
}

var (
	htmlTable     = newByteTable(htmlRepl)
	textHTMLTable = newByteTable(textHTMLRepl)
)

// appendByteTable escapes ASCII bytes through table; bytes >= 0x80 are copied
// unchanged, which is what html/template does for the tables that only list
// ASCII runes when "bad runes" are let through.
func appendByteTable(dst []byte, s string, t *byteTable) []byte {
	last := 0
	n := len(s)
	hit := &t.hit
	for i := 0; i < n; i++ {
		for i+4 <= n && hit[s[i]]|hit[s[i+1]]|hit[s[i+2]]|hit[s[i+3]] == 0 {
			i += 4
		}
		for i < n && hit[s[i]] == 0 {
			i++
		}
		if i >= n {
			break
		}
		dst = append(dst, s[last:i]...)
		dst = append(dst, t.repl[s[i]]...)
		last = i + 1
	}
	return append(dst, s[last:]...)
}

// appendNospaceTable is like appendByteTable but additionally encodes
// noncharacters (U+FDD0..U+FDEF, U+FFF0..U+FFFF, which includes the
// replacement rune produced for invalid UTF-8) as hex entities, as required
// for unquoted attribute values.
func appendNospaceTable(dst []byte, s string, table *[256]string) []byte {
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if r := table[c]; r != "" {
				dst = append(dst, s[last:i]...)
				dst = append(dst, r...)
				last = i + 1
			}
			i++
			continue
		}
		r, w := utf8.DecodeRuneInString(s[i:])
		if 0xfdd0 <= r && r <= 0xfdef || 0xfff0 <= r && r <= 0xffff {
			dst = append(dst, s[last:i]...)
			dst = append(dst, "&#x"...)
			dst = appendHexLower(dst, uint32(r))
			dst = append(dst, ';')
			last = i + w
		}
		i += w
	}
	return append(dst, s[last:]...)
}

func appendHexLower(dst []byte, v uint32) []byte {
	const digits = "0123456789abcdef"
	var tmp [8]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = digits[v&0xf]
		v >>= 4
		if v == 0 {
			break
		}
	}
	return append(dst, tmp[i:]...)
}

// escHTML escapes HTML text, and escRCDATA the text of <title> and
// <textarea>, which html/template escapes alike for plain text, as do quoted
// attribute values (escAttr).
func escHTML(dst []byte, s string) []byte { return appendByteTable(dst, s, htmlTable) }

func escAttr(dst []byte, s string) []byte { return appendByteTable(dst, s, htmlTable) }

func escRCDATA(dst []byte, s string) []byte { return appendByteTable(dst, s, htmlTable) }

func escNospace(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, failsafe...)
	}
	return appendNospaceTable(dst, s, &nospaceRepl)
}

func escHTMLName(dst []byte, s string) []byte {
	// Attribute-name filtering depends on html/template's attribute type
	// table; it is rare in practice, so delegate to keep it exact.
	return append(dst, delegateName(s)...)
}

func escComment(dst []byte, _ string) []byte { return dst }

// ---- URLs ----------------------------------------------------------------

// urlClass classifies bytes for URL processing: 0 = always percent-encode,
// 1 = unreserved (never encoded), 2 = reserved (kept only when normalizing),
// 3 = '%' (kept when normalizing and followed by two hex digits).
var urlClass = func() [256]uint8 {
	var t [256]uint8
	for c := 'a'; c <= 'z'; c++ {
		t[c] = 1
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = 1
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = 1
	}
	for _, c := range "-._~" {
		t[c] = 1
	}
	for _, c := range "!#$&*+,/:;=?@[]" {
		t[c] = 2
	}
	t['%'] = 3
	return t
}()

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

const lowerHex = "0123456789abcdef"

// urlStop[mode][c] is true if byte c needs attention when processing a URL
// in the given mode (bit 0: normalize, bit 1: attribute-escape).
var urlStop = func() (t [4][256]uint8) {
	for mode := 0; mode < 4; mode++ {
		norm, attr := mode&1 != 0, mode&2 != 0
		for c := 0; c < 256; c++ {
			switch urlClass[c] {
			case 1:
			case 2:
				if !norm || attr && (c == '&' || c == '+') {
					t[mode][c] = 1
				}
			default:
				t[mode][c] = 1
			}
		}
	}
	return t
}()

// appendURL percent-encodes s for a URL (norm=false: query component;
// norm=true: normalize a whole URL, keeping reserved characters and valid
// escapes). When attr is set the result is additionally attribute-escaped,
// which for normalized URLs only affects '&' and '+'.
func appendURL(dst []byte, s string, norm, attr bool) []byte {
	mode := 0
	if norm {
		mode |= 1
	}
	if attr {
		mode |= 2
	}
	stop := &urlStop[mode]
	last := 0
	n := len(s)
	for i := 0; i < n; i++ {
		// Skip runs of bytes that are copied unchanged, four at a time.
		for i+4 <= n && stop[s[i]]|stop[s[i+1]]|stop[s[i+2]]|stop[s[i+3]] == 0 {
			i += 4
		}
		for i < n && stop[s[i]] == 0 {
			i++
		}
		if i >= n {
			break
		}
		c := s[i]
		switch urlClass[c] {
		case 2:
			// Only reached when normalizing into an attribute.
			if norm {
				dst = append(dst, s[last:i]...)
				if c == '&' {
					dst = append(dst, "&amp;"...)
				} else {
					dst = append(dst, "&#43;"...)
				}
				last = i + 1
				continue
			}
		case 3:
			if norm && i+2 < len(s) && isHexDigit(s[i+1]) && isHexDigit(s[i+2]) {
				continue
			}
		}
		dst = append(dst, s[last:i]...)
		dst = append(dst, '%', lowerHex[c>>4], lowerHex[c&0xf])
		last = i + 1
	}
	return append(dst, s[last:]...)
}

// isSafeURL reports whether s is relative or uses http, https or mailto:
// the scheme is what precedes the first ':' unless a '/' comes first.
func isSafeURL(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '/':
			return true
		case ':':
			return isSafeScheme(s[:i])
		}
	}
	return true
}

// isSafeScheme compares case-insensitively like strings.EqualFold, which
// also folds some non-ASCII runes (e.g. U+017F to 's'), so non-ASCII
// schemes take the general path.
func isSafeScheme(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] >= utf8.RuneSelf {
			return strings.EqualFold(p, "http") || strings.EqualFold(p, "https") || strings.EqualFold(p, "mailto")
		}
	}
	lower := func(c byte) byte {
		if 'A' <= c && c <= 'Z' {
			return c + 'a' - 'A'
		}
		return c
	}
	switch len(p) {
	case 4, 5:
		if lower(p[0]) != 'h' || lower(p[1]) != 't' || lower(p[2]) != 't' || lower(p[3]) != 'p' {
			return false
		}
		return len(p) == 4 || lower(p[4]) == 's'
	case 6:
		return lower(p[0]) == 'm' && lower(p[1]) == 'a' && lower(p[2]) == 'i' &&
			lower(p[3]) == 'l' && lower(p[4]) == 't' && lower(p[5]) == 'o'
	}
	return false
}

func escURLFilter(dst []byte, s string) []byte {
	if !isSafeURL(s) {
		return append(dst, "#"+failsafe...)
	}
	return append(dst, s...)
}

func escURLNorm(dst []byte, s string) []byte {
	return appendURL(dst, s, true, false)
}

func escURLQuery(dst []byte, s string) []byte {
	return appendURL(dst, s, false, false)
}

// escURLFilterNormAttr fuses urlfilter | urlnormalizer | attrescaper, the
// chain html/template uses for a value at the start of a quoted URL attribute.
func escURLFilterNormAttr(dst []byte, s string) []byte {
	if !isSafeURL(s) {
		return append(dst, "#"+failsafe...)
	}
	return appendURL(dst, s, true, true)
}

// escURLFilterNorm fuses urlfilter | urlnormalizer (URLs in CSS url(...)).
func escURLFilterNorm(dst []byte, s string) []byte {
	if !isSafeURL(s) {
		return append(dst, "#"+failsafe...)
	}
	return appendURL(dst, s, true, false)
}

// escURLNormAttr fuses urlnormalizer | attrescaper.
func escURLNormAttr(dst []byte, s string) []byte {
	return appendURL(dst, s, true, true)
}

// escURLQueryAttr fuses urlescaper | attrescaper. A query-escaped string only
// contains alphanumerics, "-._~" and '%', none of which the attribute escaper
// touches, so the second step is the identity.
func escURLQueryAttr(dst []byte, s string) []byte {
	return appendURL(dst, s, false, false)
}

func isHTMLSpace(c byte) bool {
	switch c {
	case '\t', '\n', '\f', '\r', ' ':
		return true
	}
	return false
}

func isASCIIAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func escSrcset(dst []byte, s string) []byte {
	left := 0
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			dst = appendSrcsetElem(dst, s[left:i])
			dst = append(dst, ',')
			left = i + 1
		}
	}
	return appendSrcsetElem(dst, s[left:])
}

// appendSrcsetElem filters one comma-separated srcset candidate: the URL part
// must be safe and the metadata made only of spaces and alphanumerics.
func appendSrcsetElem(dst []byte, e string) []byte {
	start := 0
	for start < len(e) && isHTMLSpace(e[start]) {
		start++
	}
	end := len(e)
	for i := start; i < len(e); i++ {
		if isHTMLSpace(e[i]) {
			end = i
			break
		}
	}
	if u := e[start:end]; isSafeURL(u) {
		ok := true
		for i := end; i < len(e); i++ {
			if c := e[i]; !isHTMLSpace(c) && !isASCIIAlnum(c) {
				ok = false
				break
			}
		}
		if ok {
			dst = append(dst, e[:start]...)
			dst = appendURL(dst, u, true, false)
			return append(dst, e[end:]...)
		}
	}
	return append(dst, "#"+failsafe...)
}

// ---- CSS -----------------------------------------------------------------

var cssRepl = [128]string{
	0:    `\0`,
	'\t': `\9`,
	'\n': `\a`,
	'\f': `\c`,
	'\r': `\d`,
	'"':  `\22`,
	'&':  `\26`,
	'\'': `\27`,
	'(':  `\28`,
	')':  `\29`,
	'+':  `\2b`,
	'/':  `\2f`,
	':':  `\3a`,
	';':  `\3b`,
	'<':  `\3c`,
	'>':  `\3e`,
	'\\': `\\`,
	'{':  `\7b`,
	'}':  `\7d`,
}

func escCSS(dst []byte, s string) []byte {
	last := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 || cssRepl[c] == "" {
			continue
		}
		r := cssRepl[c]
		dst = append(dst, s[last:i]...)
		dst = append(dst, r...)
		last = i + 1
		// A hex escape swallows a following hex digit or space, so
		// separate them with a space.
		if r != `\\` && (last == len(s) || isHexDigit(s[last]) || isCSSSpace(s[last])) {
			dst = append(dst, ' ')
		}
	}
	return append(dst, s[last:]...)
}

func isCSSSpace(c byte) bool {
	switch c {
	case '\t', '\n', '\f', '\r', ' ':
		return true
	}
	return false
}

func isCSSNameChar(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' ||
		r == '-' || r == '_' ||
		0x80 <= r && r <= 0xd7ff || 0xe000 <= r && r <= 0xfffd || 0x10000 <= r && r <= 0x10ffff
}

// decodeCSSEscapes resolves CSS backslash escapes (a backslash followed by
// up to six hex digits and one optional whitespace, or by any other
// character) so the value filter judges what a browser would see. A lone
// trailing backslash is dropped.
func decodeCSSEscapes(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c != '\\':
			out = append(out, c)
			i++
			continue
		case i+1 == len(s):
			return string(out)
		case !isHexDigit(s[i+1]):
			_, w := utf8.DecodeRuneInString(s[i+1:])
			out = append(out, s[i+1:i+1+w]...)
			i += 1 + w
			continue
		}
		end := i + 1
		var r rune
		for end < len(s) && end-i <= 6 && isHexDigit(s[end]) {
			r = r<<4 | rune(hexVal(s[end]))
			end++
		}
		if r > unicode.MaxRune {
			// Too large: the last digit is not part of the escape.
			r >>= 4
			end--
		}
		out = utf8.AppendRune(out, r)
		i = end + cssEscapeSpace(s[end:])
	}
	return string(out)
}

// cssEscapeSpace returns the length of the whitespace that may end a hex
// escape (CR LF counts as one).
func cssEscapeSpace(s string) int {
	if s == "" {
		return 0
	}
	switch s[0] {
	case '\t', '\n', '\f', ' ':
		return 1
	case '\r':
		if len(s) > 1 && s[1] == '\n' {
			return 2
		}
		return 1
	}
	return 0
}

func hexVal(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func escCSSValue(dst []byte, s string) []byte {
	d := decodeCSSEscapes(s)
	var idBuf [64]byte
	id := idBuf[:0]
	for i := 0; i < len(d); i++ {
		c := d[i]
		switch c {
		case 0, '"', '\'', '(', ')', '/', ';', '@', '[', '\\', ']', '`', '{', '}', '<', '>':
			return append(dst, failsafe...)
		case '-':
			if i != 0 && d[i-1] == '-' {
				return append(dst, failsafe...)
			}
		default:
			if c < utf8.RuneSelf && isCSSNameChar(rune(c)) {
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				id = append(id, c)
			}
		}
	}
	if strings.Contains(string(id), "expression") || strings.Contains(string(id), "mozbinding") {
		return append(dst, failsafe...)
	}
	return append(dst, d...)
}

// ---- JavaScript ----------------------------------------------------------

// jsLow holds the escapes for control characters shared by all JS string
// escapers.
var jsLow = [32]string{
	0: `\u0000`, 1: `\u0001`, 2: `\u0002`, 3: `\u0003`, 4: `\u0004`, 5: `\u0005`, 6: `\u0006`,
	7: `\u0007`, 8: `\u0008`, '\t': `\t`, '\n': `\n`, '\v': `\u000b`, '\f': `\f`, '\r': `\r`,
	0xe: `\u000e`, 0xf: `\u000f`, 0x10: `\u0010`, 0x11: `\u0011`, 0x12: `\u0012`, 0x13: `\u0013`,
	0x14: `\u0014`, 0x15: `\u0015`, 0x16: `\u0016`, 0x17: `\u0017`, 0x18: `\u0018`, 0x19: `\u0019`,
	0x1a: `\u001a`, 0x1b: `\u001b`, 0x1c: `\u001c`, 0x1d: `\u001d`, 0x1e: `\u001e`, 0x1f: `\u001f`,
}

func jsTable(extra map[byte]string) *[128]string {
	var t [128]string
	copy(t[:32], jsLow[:])
	for c, r := range extra {
		t[c] = r
	}
	return &t
}

var (
	jsStrTable = jsTable(map[byte]string{
		'"': `\u0022`, '`': `\u0060`, '&': `\u0026`, '\'': `\u0027`, '+': `\u002b`,
		'/': `\/`, '<': `\u003c`, '>': `\u003e`, '\\': `\\`,
	})
	jsTmplLitTable = jsTable(map[byte]string{
		'"': `\u0022`, '`': `\u0060`, '&': `\u0026`, '\'': `\u0027`, '+': `\u002b`,
		'/': `\/`, '<': `\u003c`, '>': `\u003e`, '\\': `\\`,
		'$': `\u0024`, '{': `\u007b`, '}': `\u007d`,
	})
	jsRegexpTable = jsTable(map[byte]string{
		'"': `\u0022`, '$': `\$`, '&': `\u0026`, '\'': `\u0027`, '(': `\(`, ')': `\)`,
		'*': `\*`, '+': `\u002b`, '-': `\-`, '.': `\.`, '/': `\/`, '<': `\u003c`,
		'>': `\u003e`, '?': `\?`, '[': `\[`, '\\': `\\`, ']': `\]`, '^': `\^`,
		'{': `\{`, '|': `\|`, '}': `\}`,
	})
)

// appendJSTable escapes s with an ASCII table and additionally turns the
// JavaScript line terminators U+2028 and U+2029 into escapes.
func appendJSTable(dst []byte, s string, table *[128]string) []byte {
	last := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < utf8.RuneSelf {
			if r := table[c]; r != "" {
				dst = append(dst, s[last:i]...)
				dst = append(dst, r...)
				last = i + 1
			}
			continue
		}
		// U+2028 and U+2029 are encoded as E2 80 A8 / E2 80 A9.
		if c == 0xE2 && i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xA8 || s[i+2] == 0xA9) {
			dst = append(dst, s[last:i]...)
			if s[i+2] == 0xA8 {
				dst = append(dst, `\u2028`...)
			} else {
				dst = append(dst, `\u2029`...)
			}
			i += 2
			last = i + 1
		}
	}
	return append(dst, s[last:]...)
}

func escJSStr(dst []byte, s string) []byte {
	return appendJSTable(dst, s, jsStrTable)
}

func escJSTmplLit(dst []byte, s string) []byte {
	return appendJSTable(dst, s, jsTmplLitTable)
}

func escJSRegexp(dst []byte, s string) []byte {
	if s == "" {
		// An empty regexp body would turn /{{.}}/ into a line comment.
		return append(dst, "(?:)"...)
	}
	return appendJSTable(dst, s, jsRegexpTable)
}

var scriptTagRe = regexp.MustCompile("(?i)<(/?)script")

// jsValue renders a single (already indirected) value as a JavaScript
// expression the way html/template's value escaper does, via encoding/json.
func jsValue(dst []byte, a any) []byte {
	b, err := json.Marshal(a)
	if err != nil {
		// The error text lands inside a JS comment; keep it from closing
		// the comment or the surrounding script element.
		msg := err.Error()
		msg = scriptTagRe.ReplaceAllString(msg, `\x3C${1}script`)
		msg = strings.ReplaceAll(msg, "*/", "* /")
		msg = strings.ReplaceAll(msg, "<!--", `\x3C!--`)
		dst = append(dst, " /* "...)
		dst = append(dst, msg...)
		return append(dst, " */null "...)
	}
	if len(b) == 0 {
		return append(dst, " null "...)
	}
	first, _ := utf8.DecodeRune(b)
	last, _ := utf8.DecodeLastRune(b)
	pad := isJSIdentPart(first) || isJSIdentPart(last)
	changed := pad
	if pad {
		dst = append(dst, ' ')
	}
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		switch r {
		case 0x2028:
			dst = append(dst, `\u2028`...)
			changed = true
		case 0x2029:
			dst = append(dst, `\u2029`...)
			changed = true
		default:
			dst = append(dst, b[i:i+n]...)
		}
		i += n
	}
	if !changed {
		return dst
	}
	if pad {
		dst = append(dst, ' ')
	}
	return dst
}

func isJSIdentPart(r rune) bool {
	return r == '$' || r == '_' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z'
}

// ---- text/template builtins ----------------------------------------------

var textHTMLRepl = [256]string{
	0:    "\uFFFD",
	'"':  "&#34;",
	'\'': "&#39;",
	'&':  "&amp;",
	'<':  "&lt;",
	'>':  "&gt;",
}

// appendTextHTML implements text/template's html builtin on a string.
func appendTextHTML(dst []byte, s string) []byte {
	return appendByteTable(dst, s, textHTMLTable)
}

// appendTextJS implements text/template's js builtin on a string.
func appendTextJS(dst []byte, s string) []byte {
	const hexUpper = "0123456789ABCDEF"
	last := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c < ' ' || c >= utf8.RuneSelf || c == '\\' || c == '\'' || c == '"' || c == '<' || c == '>' || c == '&' || c == '=') {
			continue
		}
		dst = append(dst, s[last:i]...)
		if c < utf8.RuneSelf {
			switch c {
			case '\\':
				dst = append(dst, `\\`...)
			case '\'':
				dst = append(dst, `\'`...)
			case '"':
				dst = append(dst, `\"`...)
			case '<':
				dst = append(dst, `\u003C`...)
			case '>':
				dst = append(dst, `\u003E`...)
			case '&':
				dst = append(dst, `\u0026`...)
			case '=':
				dst = append(dst, `\u003D`...)
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexUpper[c>>4], hexUpper[c&0xf])
			}
		} else {
			r, size := utf8.DecodeRuneInString(s[i:])
			if unicode.IsPrint(r) {
				dst = append(dst, s[i:i+size]...)
			} else {
				dst = fmt.Appendf(dst, "\\u%04X", r)
			}
			i += size - 1
		}
		last = i + 1
	}
	return append(dst, s[last:]...)
}

// appendTextURLQuery implements text/template's urlquery builtin on a string.
func appendTextURLQuery(dst []byte, s string) []byte {
	return append(dst, url.QueryEscape(s)...)
}

// ---- delegation to html/template -----------------------------------------

// Attribute-name filtering ({{.}} where an attribute name goes) depends on
// html/template's attribute type table. It is rare, so instead of
// duplicating that table it is computed by running a one-action
// html/template and cutting off the constant text around the action.
var delegName = template.Must(template.New("").Parse(`<a {{.}}>`))

func delegateName(s string) string {
	const prefix, suffix = `<a `, `>`
	var sb strings.Builder
	if err := delegName.Execute(&sb, s); err != nil {
		// Cannot happen: the helper template takes any string.
		panic(err)
	}
	out := sb.String()
	return out[len(prefix) : len(out)-len(suffix)]
}
