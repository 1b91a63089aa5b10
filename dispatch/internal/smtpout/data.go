package smtpout

import (
	"bufio"
	"bytes"
	"net"
	"strconv"
)

// crlfOnly reports whether every line of msg ends in CRLF: CR and LF
// appear only together (the last line may lack its end). Rendered messages
// do, so the check is two vectorised scans.
func crlfOnly(msg []byte) bool {
	lines := 0
	for i := 0; ; {
		j := bytes.IndexByte(msg[i:], '\n')
		if j < 0 {
			break
		}
		k := i + j
		if k == 0 || msg[k-1] != '\r' {
			return false
		}
		lines++
		i = k + 1
	}
	// Every LF follows a CR, so equal counts mean every CR precedes an LF.
	return bytes.Count(msg, []byte{'\r'}) == lines
}

// hasLeadingDot reports whether a line of msg starts with a dot.
func hasLeadingDot(msg []byte) bool {
	return (len(msg) > 0 && msg[0] == '.') || bytes.Contains(msg, []byte("\n."))
}

// endOfData is the line that ends DATA content (RFC 5321 section 4.1.1.4).
const endOfData = ".\r\n"

// writeData buffers msg as DATA content followed by the end-of-data line;
// the caller flushes. Line ends are made CRLF (a lone CR or LF counts as a
// line end, as the RFC forbids them bare), a missing last line end is
// added, and a dot is doubled at the start of a line (section 4.5.2).
//
// An error means the end-of-data line was not completely handed to the
// connection, so the server cannot have taken the message.
func writeData(bw *bufio.Writer, cw *countingWriter, msg []byte) error {
	if len(msg) == 0 || !crlfOnly(msg) {
		stuff(bw, msg)
		_, err := bw.WriteString(endOfData)
		return err
	}
	end := endOfData
	if !bytes.HasSuffix(msg, []byte("\r\n")) {
		end = "\r\n" + endOfData
	}
	if hasLeadingDot(msg) {
		// Quoted-printable HTML often breaks a line just before a dot
		// (".card{...}", ".example/..."): copy the runs between those lines
		// whole rather than line by line.
		if msg[0] == '.' {
			_ = bw.WriteByte('.')
		}
		for {
			i := bytes.Index(msg, []byte("\n."))
			if i < 0 {
				break
			}
			_, _ = bw.Write(msg[:i+1])
			_ = bw.WriteByte('.')
			msg = msg[i+1:]
		}
		_, _ = bw.Write(msg)
		_, err := bw.WriteString(end)
		return err
	}
	return writeRaw(bw, cw, msg, end)
}

// writeChunk buffers msg as the one and last BDAT chunk (RFC 3030): the
// command with its exact size, then the content unchanged. The caller has
// checked that every line ends in CRLF; the server adds nothing and
// unstuffs nothing. Errors are as writeData's.
func writeChunk(bw *bufio.Writer, cw *countingWriter, msg []byte) error {
	_, _ = bw.WriteString("BDAT ")
	_, _ = bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(msg)), 10))
	_, _ = bw.WriteString(" LAST\r\n")
	return writeRaw(bw, cw, msg, "")
}

// writeRaw buffers msg and then end; a message larger than the buffer goes
// out at once, without a copy: in one writev on TCP.
func writeRaw(bw *bufio.Writer, cw *countingWriter, msg []byte, end string) error {
	if len(msg)+len(end) <= bw.Available() {
		_, _ = bw.Write(msg)
		_, err := bw.WriteString(end)
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	bufs := net.Buffers{msg}
	if end != "" {
		bufs = append(bufs, []byte(end))
	}
	tcp, ok := cw.w.(*net.TCPConn)
	if !ok {
		_, err := bufs.WriteTo(cw)
		return err
	}
	n, err := bufs.WriteTo(tcp)
	cw.n += n
	return err
}

// stuff writes msg with CRLF line ends and leading dots doubled, line by
// line: the general path, for messages with bare CR or LF. The writer's
// errors stick; the caller sees them at its next write.
func stuff(bw *bufio.Writer, msg []byte) {
	for len(msg) > 0 {
		line := msg
		next := len(msg)
		if i := bytes.IndexAny(msg, "\r\n"); i >= 0 {
			line = msg[:i]
			next = i + 1
			if msg[i] == '\r' && i+1 < len(msg) && msg[i+1] == '\n' {
				next++
			}
		}
		if len(line) > 0 && line[0] == '.' {
			_ = bw.WriteByte('.')
		}
		_, _ = bw.Write(line)
		_, _ = bw.WriteString("\r\n")
		msg = msg[next:]
	}
}
