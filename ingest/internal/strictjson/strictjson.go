// Package strictjson decodes partner JSON strictly, so that every reader of
// a body — a partner's proxy, a WAF, encoding/json, PostgreSQL — reads it
// the same way, and so that what is accepted can be stored:
//
//   - one JSON value and nothing after it (encoding/json's Decoder.More
//     misses a stray "}" or "]" after the value);
//   - no member name twice in one object, where names that differ only in
//     case count as the same name, because encoding/json matches them to a
//     field case-insensitively and lets the last one win;
//   - no field the target does not have;
//   - strings of valid UTF-8 without NUL or unpaired surrogates, and numbers
//     within PostgreSQL's numeric range: PostgreSQL refuses anything else in
//     text and jsonb, and encoding/json would silently replace invalid UTF-8
//     and lone surrogates with U+FFFD.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DuplicateKeyError names a member that appears twice in one object.
type DuplicateKeyError struct {
	Key    string
	First  string // the earlier name, when it differs from Key in case
	Offset int    // byte offset of the second occurrence
}

func (e *DuplicateKeyError) Error() string {
	if e.First != "" && e.First != e.Key {
		return fmt.Sprintf("duplicate key %q at byte %d: the same member as %q (names match regardless of case)", e.Key, e.Offset, e.First)
	}
	return fmt.Sprintf("duplicate key %q at byte %d", e.Key, e.Offset)
}

// ErrTrailingData is wrapped by the error for anything after the JSON value.
var ErrTrailingData = errors.New("data after the JSON value")

// ValueError is well-formed JSON that Herald refuses to store: PostgreSQL
// would refuse it, or encoding/json would change it.
type ValueError struct {
	// Path locates the value, like attributes.tier or item_ids[2]; it is
	// empty for the whole document.
	Path   string
	Offset int // byte offset of the value
	Reason string
}

func (e *ValueError) Error() string {
	if e.Path == "" {
		return e.Reason
	}
	return e.Path + ": " + e.Reason
}

// Decode decodes the single JSON value in data into v.
func Decode(data []byte, v any) error {
	switch err := check(data); {
	case errors.Is(err, errMalformed):
		// encoding/json says what is wrong, and at which byte.
		if err := json.Unmarshal(data, new(json.RawMessage)); err != nil {
			return err
		}
		return errors.New("invalid JSON")
	case err != nil:
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// errMalformed is check's verdict on input it cannot follow.
var errMalformed = errors.New("malformed JSON")

// check reports the first duplicate member name, refused value or trailing
// data of data, errMalformed if data is not JSON, and nil otherwise.
func check(data []byte) error {
	s := scanner{data: data}
	s.value(0)
	switch {
	case s.err != nil:
		return s.err
	case s.bad:
		return errMalformed
	}
	s.skipSpace()
	if s.pos < len(s.data) {
		return fmt.Errorf("%w at byte %d", ErrTrailingData, s.pos)
	}
	return nil
}

// maxDepth bounds nesting, as encoding/json does (10000); deeper input is
// left to the decoder to refuse.
const maxDepth = 10000

// The bounds of PostgreSQL's numeric, in which jsonb keeps numbers: at most
// 16383 digits after the decimal point, the leading digit at most 131071
// places before it, and an exponent under INT_MAX/2 (numeric.c).
const (
	maxScale    = 16383
	maxLead     = 131071
	maxExponent = 1<<30 - 1
)

type scanner struct {
	data []byte
	pos  int
	path []step
	err  error
	bad  bool // input not understood: the decoder reports it
}

// step is one level of the path to the value being scanned: a member name,
// or an array index when index >= 0.
type step struct {
	key   string
	index int
}

func (s *scanner) stop() bool { return s.err != nil || s.bad }

func (s *scanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\r', '\n':
			s.pos++
		default:
			return
		}
	}
}

// refuse records a refused value at offset; levels is how much of the
// path leads to it.
func (s *scanner) refuse(offset, levels int, format string, args ...any) {
	var b strings.Builder
	for _, st := range s.path[:levels] {
		if st.index >= 0 {
			b.WriteString("[" + strconv.Itoa(st.index) + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(st.key)
	}
	s.err = &ValueError{Path: b.String(), Offset: offset, Reason: fmt.Sprintf(format, args...)}
}

func (s *scanner) value(depth int) {
	s.skipSpace()
	if s.pos >= len(s.data) || depth > maxDepth {
		s.bad = true
		return
	}
	switch c := s.data[s.pos]; {
	case c == '{':
		s.object(depth)
	case c == '[':
		s.array(depth)
	case c == '"':
		s.str(len(s.path), "")
	case c == '-' || '0' <= c && c <= '9':
		s.number()
	case c == 't':
		s.literal("true")
	case c == 'f':
		s.literal("false")
	case c == 'n':
		s.literal("null")
	default:
		s.bad = true
	}
}

func (s *scanner) literal(word string) {
	if !bytes.HasPrefix(s.data[s.pos:], []byte(word)) {
		s.bad = true
		return
	}
	s.pos += len(word)
}

func (s *scanner) array(depth int) {
	s.pos++
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		return
	}
	s.path = append(s.path, step{})
	defer func() { s.path = s.path[:len(s.path)-1] }()
	for i := 0; ; i++ {
		s.path[len(s.path)-1].index = i
		s.value(depth + 1)
		s.skipSpace()
		if s.stop() || s.pos >= len(s.data) {
			s.bad = s.bad || s.err == nil
			return
		}
		switch s.data[s.pos] {
		case ']':
			s.pos++
			return
		case ',':
			s.pos++
		default:
			s.bad = true
			return
		}
	}
}

func (s *scanner) object(depth int) {
	s.pos++
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return
	}
	s.path = append(s.path, step{index: -1})
	defer func() { s.path = s.path[:len(s.path)-1] }()
	var names members
	for {
		s.skipSpace()
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			s.bad = true
			return
		}
		keyAt := s.pos
		raw, escaped := s.str(len(s.path)-1, "member name ")
		if s.stop() {
			return
		}
		key := string(raw)
		if escaped {
			key = unquote(s.data[keyAt:s.pos])
		}
		if first, dup := names.add(key); dup {
			s.err = &DuplicateKeyError{Key: key, First: first, Offset: keyAt}
			return
		}
		s.path[len(s.path)-1].key = key
		s.skipSpace()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			s.bad = true
			return
		}
		s.pos++
		s.value(depth + 1)
		s.skipSpace()
		if s.stop() || s.pos >= len(s.data) {
			s.bad = s.bad || s.err == nil
			return
		}
		switch s.data[s.pos] {
		case '}':
			s.pos++
			return
		case ',':
			s.pos++
		default:
			s.bad = true
			return
		}
	}
}

// unquote decodes a JSON string literal that str has checked.
func unquote(quoted []byte) string {
	if k, err := strconv.Unquote(string(quoted)); err == nil {
		return k
	}
	// JSON escapes Go does not share (\/).
	var k string
	_ = json.Unmarshal(quoted, &k)
	return k
}

// members are the names of one object so far, folded as encoding/json folds
// them to match fields.
type members struct {
	small []member
	large map[string]string
}

type member struct{ folded, name string }

// add records name and, if a name that folds the same is already there,
// returns that name and true.
func (m *members) add(name string) (string, bool) {
	folded := fold(name)
	if m.large != nil {
		if first, ok := m.large[folded]; ok {
			return first, true
		}
		m.large[folded] = name
		return "", false
	}
	for _, e := range m.small {
		if e.folded == folded {
			return e.name, true
		}
	}
	m.small = append(m.small, member{folded, name})
	if len(m.small) > 16 {
		m.large = make(map[string]string, 32)
		for _, e := range m.small {
			m.large[e.folded] = e.name
		}
	}
	return "", false
}

// fold maps names that bytes.EqualFold finds equal — which is how
// encoding/json matches a member to a field — to the same string.
func fold(name string) string {
	plain := true // ASCII without capitals: folds to itself
	for i := 0; i < len(name) && plain; i++ {
		plain = name[i] < utf8.RuneSelf && (name[i] < 'A' || name[i] > 'Z')
	}
	if plain {
		return name
	}
	var b strings.Builder
	b.Grow(len(name))
	for _, r := range name {
		// One rune of r's case-folding orbit stands for all of it: the
		// smallest, or for ASCII letters the small letter.
		for {
			next := unicode.SimpleFold(r)
			if next <= r {
				r = next
				break
			}
			r = next
		}
		if 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// str scans the string at s.pos and returns its raw bytes (without quotes)
// and whether it has escapes. A string PostgreSQL cannot store, or that
// encoding/json would alter, is refused: levels of the path lead to it,
// and what names it in the reason ("" for a value).
func (s *scanner) str(levels int, what string) (raw []byte, escaped bool) {
	start := s.pos
	for i := start + 1; i < len(s.data); {
		switch c := s.data[i]; {
		case c == '"':
			s.pos = i + 1
			return s.data[start+1 : i], escaped
		case c == '\\':
			escaped = true
			if i+1 >= len(s.data) {
				s.bad = true
				return nil, false
			}
			if s.data[i+1] != 'u' {
				if !strings.ContainsRune(`"\/bfnrt`, rune(s.data[i+1])) {
					s.bad = true
					return nil, false
				}
				i += 2
				continue
			}
			r, ok := hex4(s.data[i+2:])
			if !ok {
				s.bad = true
				return nil, false
			}
			i += 6
			switch {
			case r == 0:
				s.refuse(start, levels, "%scontains \\u0000, which PostgreSQL cannot store", what)
				return nil, false
			case 0xd800 <= r && r <= 0xdbff:
				if low, ok := hex4(after(s.data, i, `\u`)); ok && 0xdc00 <= low && low <= 0xdfff {
					i += 6
					continue
				}
				fallthrough
			case 0xdc00 <= r && r <= 0xdfff:
				s.refuse(start, levels, "%scontains an unpaired surrogate \\u%04x, which is not a character", what, r)
				return nil, false
			}
		case c < 0x20:
			s.bad = true // encoding/json says which control character
			return nil, false
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(s.data[i:])
			if r == utf8.RuneError && size == 1 {
				s.refuse(start, levels, "%sis not valid UTF-8 (byte 0x%02x at offset %d)", what, c, i)
				return nil, false
			}
			i += size
		}
	}
	s.bad = true
	return nil, false
}

// after returns data from i past prefix, or nil if prefix is not there.
func after(data []byte, i int, prefix string) []byte {
	if i+len(prefix) > len(data) || string(data[i:i+len(prefix)]) != prefix {
		return nil
	}
	return data[i+len(prefix):]
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// number scans a number and refuses one beyond PostgreSQL's numeric.
func (s *scanner) number() {
	start, i, n := s.pos, s.pos, len(s.data)
	digits := func() int {
		from := i
		for i < n && '0' <= s.data[i] && s.data[i] <= '9' {
			i++
		}
		return i - from
	}
	if s.data[i] == '-' {
		i++
	}
	intAt := i
	switch {
	case i < n && s.data[i] == '0':
		i++
	case digits() == 0:
		s.bad = true
		return
	}
	whole := s.data[intAt:i]
	var frac []byte
	if i < n && s.data[i] == '.' {
		i++
		at := i
		if digits() == 0 {
			s.bad = true
			return
		}
		frac = s.data[at:i]
	}
	var exp int64
	if i < n && (s.data[i] == 'e' || s.data[i] == 'E') {
		i++
		neg := false
		if i < n && (s.data[i] == '+' || s.data[i] == '-') {
			neg = s.data[i] == '-'
			i++
		}
		at := i
		if digits() == 0 {
			s.bad = true
			return
		}
		for _, c := range s.data[at:i] {
			if exp <= maxExponent {
				exp = exp*10 + int64(c-'0')
			}
		}
		if neg {
			exp = -exp
		}
	}
	s.pos = i
	if !fitsNumeric(whole, frac, exp) {
		s.refuse(start, len(s.path), "number %s is beyond what PostgreSQL stores (at most %d digits before the decimal point and %d after)",
			abbreviate(s.data[start:i]), maxLead+1, maxScale)
	}
}

// fitsNumeric reports whether PostgreSQL's numeric holds whole.frac × 10^exp
// (whole has no leading zeros but for a lone 0).
func fitsNumeric(whole, frac []byte, exp int64) bool {
	if exp >= maxExponent || exp <= -maxExponent {
		return false
	}
	if int64(len(frac))-exp > maxScale {
		return false
	}
	// The place of the leading non-zero digit; zero has none.
	if whole[0] != '0' {
		return int64(len(whole)-1)+exp <= maxLead
	}
	for j, c := range frac {
		if c != '0' {
			return int64(-j-1)+exp <= maxLead
		}
	}
	return true
}

func abbreviate(b []byte) string {
	if len(b) > 24 {
		return string(b[:20]) + "…"
	}
	return string(b)
}
