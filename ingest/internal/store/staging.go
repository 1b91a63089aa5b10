package store

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// stagingMemory is how much of an upload's rows Staging keeps in memory
// before it moves them to a temporary file.
const stagingMemory = 1 << 20

// Staging holds the checked rows of one upload until Load stores them, as
// COPY text: in memory while they are few, then in a temporary file. An
// upload is read and checked whole before it takes a database connection,
// so a client that is slow to send holds none, and the transaction that
// stores it lasts as long as PostgreSQL needs to read a local file.
type Staging struct {
	d    Dataset
	dir  string
	mem  bytes.Buffer
	file *os.File
	w    *bufio.Writer
	rows int64
	err  error
}

// NewStaging returns an empty staging area for rows of d, spilling to a
// temporary file in dir ("" for the system's).
func NewStaging(d Dataset, dir string) *Staging {
	return &Staging{d: d, dir: dir}
}

// Add stages one row: its values in the order of the dataset's columns,
// each a string, bool, int, int32, int64, float32, time.Time, []string or
// []float32.
func (s *Staging) Add(row ...any) error {
	if s.err != nil {
		return s.err
	}
	if len(row) != len(s.d.columns) {
		return fmt.Errorf("stage %s: %d values for %d columns", s.d.Name, len(row), len(s.d.columns))
	}
	var line []byte
	for i, v := range row {
		if i > 0 {
			line = append(line, '\t')
		}
		var err error
		if line, err = appendCopyValue(line, v); err != nil {
			return fmt.Errorf("stage %s column %s: %w", s.d.Name, s.d.columns[i], err)
		}
	}
	line = append(line, '\n')
	if s.file == nil && s.mem.Len()+len(line) > stagingMemory {
		s.err = s.spill()
	}
	if s.err == nil {
		if s.file != nil {
			_, s.err = s.w.Write(line)
		} else {
			s.mem.Write(line)
		}
	}
	if s.err != nil {
		return s.err
	}
	s.rows++
	return nil
}

// Rows is how many rows are staged.
func (s *Staging) Rows() int64 { return s.rows }

func (s *Staging) spill() error {
	f, err := os.CreateTemp(s.dir, "herald-upload-*.copy")
	if err != nil {
		return fmt.Errorf("stage %s: %w", s.d.Name, err)
	}
	// Unlinked at once where the system allows it, so that nothing is left
	// behind if the process dies; Close removes it otherwise.
	_ = os.Remove(f.Name())
	s.file, s.w = f, bufio.NewWriterSize(f, 256<<10)
	_, err = s.w.Write(s.mem.Bytes())
	s.mem = bytes.Buffer{}
	return err
}

// rowsReader returns the staged rows from the first.
func (s *Staging) rowsReader() (io.Reader, error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.file == nil {
		return bytes.NewReader(s.mem.Bytes()), nil
	}
	if err := s.w.Flush(); err != nil {
		return nil, fmt.Errorf("stage %s: %w", s.d.Name, err)
	}
	if _, err := s.file.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("stage %s: %w", s.d.Name, err)
	}
	return bufio.NewReaderSize(s.file, 256<<10), nil
}

// Close releases what the staged rows take, the temporary file included.
func (s *Staging) Close() error {
	s.mem = bytes.Buffer{}
	if s.file == nil {
		return nil
	}
	err := s.file.Close()
	_ = os.Remove(s.file.Name())
	s.file = nil
	return err
}

// copyStatement is the COPY that reads staged rows into d's staging table.
func (d Dataset) copyStatement() string {
	return "COPY " + d.table + " (" + strings.Join(d.columns, ", ") + ") FROM STDIN"
}

// appendCopyValue appends v in COPY's text format.
func appendCopyValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		return appendCopyText(b, v), nil
	case bool:
		if v {
			return append(b, 't'), nil
		}
		return append(b, 'f'), nil
	case int:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int32:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case float32:
		return strconv.AppendFloat(b, float64(v), 'g', -1, 32), nil
	case time.Time:
		// Microseconds, truncated, as PostgreSQL keeps them.
		return v.UTC().Truncate(time.Microsecond).AppendFormat(b, "2006-01-02T15:04:05.999999Z07:00"), nil
	case []string:
		var lit strings.Builder
		lit.WriteByte('{')
		for i, e := range v {
			if i > 0 {
				lit.WriteByte(',')
			}
			// Quoted, so that NULL, braces, commas and spaces are text.
			lit.WriteByte('"')
			for j := 0; j < len(e); j++ {
				if e[j] == '"' || e[j] == '\\' {
					lit.WriteByte('\\')
				}
				lit.WriteByte(e[j])
			}
			lit.WriteByte('"')
		}
		lit.WriteByte('}')
		return appendCopyText(b, lit.String()), nil
	case []float32:
		b = append(b, '{')
		for i, f := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendFloat(b, float64(f), 'g', -1, 32)
		}
		return append(b, '}'), nil
	default:
		return b, fmt.Errorf("cannot stage a %T", v)
	}
}

// appendCopyText appends s escaped for COPY's text format: backslash and
// the characters that end a column or a row.
func appendCopyText(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b = append(b, '\\', '\\')
		case '\t':
			b = append(b, '\\', 't')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = append(b, c)
		}
	}
	return b
}
