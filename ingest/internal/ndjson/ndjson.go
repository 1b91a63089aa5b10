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
	// Malformed marks a line that is not a JSON object of the upload's
	// shape (bad syntax, a duplicate or unknown member, a wrong type);
	// otherwise the line is well formed and one of its values is refused.
	Malformed bool `json:"-"`
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

// Next decodes the next non-empty line into v as strictjson does. It
// returns io.EOF at the end of input, a LineError for a bad line (the
// caller may go on to the next), and any other error when reading the
// input itself fails.
func (r *Reader) Next(v any) error {
	for {
		line, err := r.readLine()
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		err = strictjson.Decode(line, v)
		var refused *strictjson.ValueError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &refused):
			return LineError{Line: r.line, Field: refused.Path, Message: refused.Reason}
		default:
			return LineError{Line: r.line, Message: describe(err), Malformed: true}
		}
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
			return nil, LineError{Line: r.line, Message: fmt.Sprintf("longer than %d bytes", r.maxLine), Malformed: true}
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
	case errors.Is(err, strictjson.ErrTrailingData):
		return "more than one JSON value on the line: " + err.Error()
	default:
		return err.Error()
	}
}
