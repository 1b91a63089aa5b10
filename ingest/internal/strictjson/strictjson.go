// Package strictjson decodes partner JSON strictly: a member name twice in
// one object, a field the target does not have, or anything after the value
// is an error. encoding/json alone lets the last duplicate win silently,
// which lets two parsers (a partner's proxy, a WAF, Herald) read one body
// two ways.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// DuplicateKeyError names a member that appears twice in one object.
type DuplicateKeyError struct {
	Key    string
	Offset int // byte offset of the second occurrence
}

func (e *DuplicateKeyError) Error() string {
	return fmt.Sprintf("duplicate key %q at byte %d", e.Key, e.Offset)
}

// ErrTrailingData is returned when something follows the JSON value.
var ErrTrailingData = errors.New("more than one JSON value")

// Decode decodes the single JSON value in data into v.
func Decode(data []byte, v any) error {
	if err := CheckDuplicateKeys(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return ErrTrailingData
	}
	return nil
}

// CheckDuplicateKeys reports the first object member name that occurs twice
// in the same object of data. Malformed JSON is not its business: it stops
// at the first thing it cannot follow and returns nil, leaving the syntax
// error to the decoder.
func CheckDuplicateKeys(data []byte) error {
	s := scanner{data: data}
	s.value(0)
	return s.err
}

// maxDepth bounds nesting, as encoding/json does (10000); deeper input is
// left to the decoder to refuse.
const maxDepth = 10000

type scanner struct {
	data []byte
	pos  int
	err  error
	bad  bool // input not understood: give up quietly
}

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

func (s *scanner) stop() bool { return s.err != nil || s.bad }

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
		s.pos++
		s.skipSpace()
		if s.pos < len(s.data) && s.data[s.pos] == ']' {
			s.pos++
			return
		}
		for !s.stop() {
			s.value(depth + 1)
			s.skipSpace()
			if s.stop() || s.pos >= len(s.data) {
				s.bad = true
				return
			}
			if s.data[s.pos] == ']' {
				s.pos++
				return
			}
			if s.data[s.pos] != ',' {
				s.bad = true
				return
			}
			s.pos++
		}
	case c == '"':
		s.str()
	default:
		// A number, true, false or null: skip to the next delimiter.
		for s.pos < len(s.data) {
			switch s.data[s.pos] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return
			}
			s.pos++
		}
	}
}

// str skips a string and returns its raw bytes (without quotes) and whether
// it has escapes.
func (s *scanner) str() (raw []byte, escaped bool) {
	start := s.pos + 1
	for i := start; i < len(s.data); i++ {
		switch s.data[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			s.pos = i + 1
			return s.data[start:i], escaped
		}
	}
	s.bad = true
	return nil, false
}

func (s *scanner) object(depth int) {
	s.pos++
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return
	}
	var small []string
	var large map[string]struct{}
	for !s.stop() {
		s.skipSpace()
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			s.bad = true
			return
		}
		keyAt := s.pos
		raw, escaped := s.str()
		if s.stop() {
			return
		}
		key := string(raw)
		if escaped {
			k, err := strconv.Unquote(`"` + key + `"`)
			if err != nil {
				// JSON escapes Go does not share (\/) or invalid ones;
				// let encoding/json have its say.
				var js string
				if json.Unmarshal(s.data[keyAt:s.pos], &js) != nil {
					s.bad = true
					return
				}
				k = js
			}
			key = k
		}
		dup := false
		if large != nil {
			_, dup = large[key]
			large[key] = struct{}{}
		} else {
			for _, k := range small {
				if k == key {
					dup = true
					break
				}
			}
			small = append(small, key)
			if len(small) > 16 {
				large = make(map[string]struct{}, 32)
				for _, k := range small {
					large[k] = struct{}{}
				}
			}
		}
		if dup {
			s.err = &DuplicateKeyError{Key: key, Offset: keyAt}
			return
		}
		s.skipSpace()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			s.bad = true
			return
		}
		s.pos++
		s.value(depth + 1)
		s.skipSpace()
		if s.stop() || s.pos >= len(s.data) {
			s.bad = true
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
