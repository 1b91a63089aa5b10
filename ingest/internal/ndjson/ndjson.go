// Package ndjson reads newline-delimited JSON uploads one line at a time, in
// constant memory, with errors that name the line.
package ndjson

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"herald/ingest/internal/strictjson"
)

// LineError is a problem with one line of an upload.
type LineError struct {
	Line    int64  `json:"line"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (e LineError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Message)
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Message)
}

// Reader yields one JSON object per non-empty line.
type Reader struct {
	r       *bufio.Reader
	line    int64
	maxLine int
	buf     []byte
}

// NewReader reads from r; a line longer than maxLine bytes is an error.
func NewReader(r io.Reader, maxLine int) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), maxLine: maxLine}
}

// Line is the number of the line last returned.
func (r *Reader) Line() int64 { return r.line }

// Next decodes the next non-empty line into v, rejecting duplicate keys,
// unknown fields and anything after the object. It returns io.EOF at the end of input, a
// LineError for a bad line (the caller may go on to the next), and any other
// error when reading the input itself fails.
func (r *Reader) Next(v any) error {
	for {
		line, err := r.readLine()
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if err := strictjson.CheckDuplicateKeys(line); err != nil {
			return LineError{Line: r.line, Message: err.Error()}
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			return LineError{Line: r.line, Message: describe(err)}
		}
		if dec.More() {
			return LineError{Line: r.line, Message: "more than one JSON value on the line"}
		}
		return nil
	}
}

// ErrLineTooLong is wrapped by the LineError for an overlong line.
var ErrLineTooLong = errors.New("line too long")

func (r *Reader) readLine() ([]byte, error) {
	r.buf = r.buf[:0]
	for {
		chunk, err := r.r.ReadSlice('\n')
		r.buf = append(r.buf, chunk...)
		if len(r.buf) > r.maxLine {
			r.line++
			// Skip the rest of the overlong line so the caller can go on.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.r.ReadSlice('\n')
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			return nil, LineError{Line: r.line, Message: fmt.Sprintf("longer than %d bytes", r.maxLine)}
		}
		switch {
		case err == nil:
			r.line++
			return r.buf, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(r.buf) == 0 {
				return nil, io.EOF
			}
			r.line++
			return r.buf, nil
		default:
			return nil, err
		}
	}
}

// describe turns encoding/json's errors into messages for partners.
func describe(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("invalid JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("field %q must be %s, not %s", typ.Field, typ.Type, typ.Value)
		}
		return fmt.Sprintf("must be a JSON object, not %s", typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	default:
		return err.Error()
	}
}
