package smtpout

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
)

// FuzzWriteData checks writeData's fast paths against the line-by-line
// stuffing every message could take: the bytes on the wire are the same.
func FuzzWriteData(f *testing.F) {
	for _, seed := range []string{
		"", ".", "..", "\r\n", ".\r\n", "a\r\n.b\r\n..c\r\n", "x\r\n.", "a\r\n.\r\nb\r\n",
		"bare\nline\n.dot\n", "old\rmac\r.dot\r", "mixed\r\n.dot\nlf\r\n", "\n.", "\r\n.\r\n.",
		strings.Repeat(".card{x}=\r\n", 600), strings.Repeat("0123456789\r\n", 1000) + ".end",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		var want bytes.Buffer
		ref := bufio.NewWriter(&want)
		stuff(ref, msg)
		_, _ = ref.WriteString(endOfData)
		if err := ref.Flush(); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		cw := &countingWriter{w: &got}
		bw := bufio.NewWriterSize(cw, 4096)
		if err := writeData(bw, cw, msg); err != nil {
			t.Fatal(err)
		}
		if err := bw.Flush(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("writeData(%q) wrote %q, want %q", msg, got.Bytes(), want.Bytes())
		}
	})
}

// BenchmarkWriteData writes a 13 KiB quoted-printable message in which
// every eighth line starts with a dot, as rendered HTML often has
// (".card{…}=" after a soft line break), through the general line-by-line
// stuffing and through writeData.
//
//	go test -run '^$' -bench WriteData ./dispatch/internal/smtpout
func BenchmarkWriteData(b *testing.B) {
	var msg []byte
	for i := range 180 {
		line := strings.Repeat("x", 74) + "=\r\n"
		if i%8 == 0 {
			line = "." + line[1:]
		}
		msg = append(msg, line...)
	}
	cw := &countingWriter{w: io.Discard}
	bw := bufio.NewWriterSize(cw, 64<<10)
	b.Run("path=line-by-line", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			stuff(bw, msg)
		}
	})
	b.Run("path=writeData", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			_ = writeData(bw, cw, msg)
		}
	})
}
