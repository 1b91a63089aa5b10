package email

// appendQP appends body quoted-printable encoded to dst, byte for byte as
// mime/quotedprintable.Writer (text mode) writes it followed by Close, in a
// single pass without the Writer's per-line flushes: encoding the HTML part
// with the standard writer cost more than rendering it.
func appendQP(dst, body []byte) []byte {
	const lineMaxLen = 76
	const upperhex = "0123456789ABCDEF"
	i := 0 // bytes on the current output line
	cr := false
	encode := func(b byte) {
		if lineMaxLen-1-i < 3 {
			dst = append(dst, '=', '\r', '\n')
			i = 0
		}
		dst = append(dst, '=', upperhex[b>>4], upperhex[b&0x0f])
		i += 3
	}
	// lastSpace encodes a space or tab ending the current line: trailing
	// white space would be lost in transport.
	lastSpace := func() {
		if i == 0 {
			return
		}
		if b := dst[len(dst)-1]; b == ' ' || b == '\t' {
			dst = dst[:len(dst)-1]
			i--
			encode(b)
		}
	}
	for k := 0; k < len(body); {
		switch qpClass[body[k]] {
		case qpLiteral:
			room := lineMaxLen - 1 - i
			if room == 0 {
				dst = append(dst, '=', '\r', '\n')
				i, room = 0, lineMaxLen-1
			}
			run := body[k:min(len(body), k+room)]
			n := 1
			for n < len(run) && qpClass[run[n]] == qpLiteral {
				n++
			}
			dst = append(dst, run[:n]...)
			i += n
			cr = false
			k += n
			continue
		case qpNewline:
			b := body[k]
			if cr && b == '\n' {
				cr = false
				break
			}
			cr = b == '\r'
			lastSpace()
			dst = append(dst, '\r', '\n')
			i = 0
		default:
			encode(body[k])
		}
		k++
	}
	lastSpace()
	return dst
}

const (
	qpEncoded = iota
	qpLiteral
	qpNewline
)

// qpClass says how each byte is written: as is (printable ASCII but '=',
// space and tab), as a line break (CR, LF) or encoded.
var qpClass = func() (t [256]byte) {
	for b := '!'; b <= '~'; b++ {
		t[b] = qpLiteral
	}
	t['='] = qpEncoded
	t[' '], t['\t'] = qpLiteral, qpLiteral
	t['\r'], t['\n'] = qpNewline, qpNewline
	return t
}()
