package smtpout

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// reply is one SMTP reply (RFC 5321 section 4.2), possibly of many lines.
type reply struct {
	code int
	// enhanced is the RFC 3463 status code of the first line ("5.1.1"), or
	// empty.
	enhanced string
	// text is the reply's lines joined by spaces, without the codes. It is
	// kept only where it is worth an allocation: refusals, the answer to the
	// message itself, and replies read with keepText.
	text string
}

func (r reply) String() string {
	return strings.TrimSpace(strconv.Itoa(r.code) + " " + r.enhanced + " " + r.text)
}

// replyError is a refusal, by reply, of a step that has no message of its
// own to classify: the greeting, EHLO, STARTTLS.
type replyError struct {
	step  string
	reply reply
}

func (e *replyError) Error() string { return e.step + ": " + e.reply.String() }

// errProtocol marks a reply that is not SMTP.
var errProtocol = errors.New("malformed reply")

// maxReplyLines bounds a multi-line reply; EHLO answers have a few dozen.
const maxReplyLines = 100

// readReply reads one reply. Its lines must all carry the same code. With
// eachLine set, every line's text after the code is passed to it (EHLO
// keywords); the slice is valid only during the call.
func readReply(br *bufio.Reader, keepText bool, eachLine func([]byte)) (reply, error) {
	var r reply
	var text strings.Builder
	for n := 0; ; n++ {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return r, fmt.Errorf("%w: line longer than %d bytes", errProtocol, br.Size())
			}
			return r, err
		}
		line = trimEOL(line)
		if len(line) < 3 || (len(line) > 3 && line[3] != ' ' && line[3] != '-') {
			return r, fmt.Errorf("%w: %q", errProtocol, line)
		}
		code := 0
		for _, b := range line[:3] {
			if b < '0' || b > '9' {
				return r, fmt.Errorf("%w: %q", errProtocol, line)
			}
			code = code*10 + int(b-'0')
		}
		if code < 200 || code > 599 {
			return r, fmt.Errorf("%w: code %d", errProtocol, code)
		}
		if n == 0 {
			r.code = code
		} else if code != r.code {
			return r, fmt.Errorf("%w: code %d continues a reply of code %d", errProtocol, code, r.code)
		}
		var rest []byte
		if len(line) > 4 {
			rest = line[4:]
		}
		if eachLine != nil {
			eachLine(rest)
		}
		last := len(line) == 3 || line[3] == ' '
		if keepText || code >= 400 {
			enh, msg := splitEnhanced(rest, code)
			if n == 0 {
				r.enhanced = enh
			}
			if len(msg) > 0 {
				if text.Len() > 0 {
					text.WriteByte(' ')
				}
				text.Write(msg)
			}
		}
		if last {
			r.text = text.String()
			return r, nil
		}
		if n == maxReplyLines {
			return r, fmt.Errorf("%w: more than %d lines", errProtocol, maxReplyLines)
		}
	}
}

func trimEOL(line []byte) []byte {
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line
}

// splitEnhanced splits an RFC 3463 enhanced status code ("4.7.28") off the
// start of a reply line's text. The code's class must match the reply's.
func splitEnhanced(text []byte, code int) (string, []byte) {
	if len(text) < 5 || int(text[0]-'0') != code/100 || text[1] != '.' {
		return "", text
	}
	i, dots := 2, 1
	digits := 0
	for ; i < len(text) && text[i] != ' '; i++ {
		switch b := text[i]; {
		case b == '.':
			if digits == 0 || dots == 2 {
				return "", text
			}
			dots++
			digits = 0
		case b >= '0' && b <= '9':
			if digits++; digits > 3 {
				return "", text
			}
		default:
			return "", text
		}
	}
	if dots != 2 || digits == 0 {
		return "", text
	}
	enh := string(text[:i])
	for i < len(text) && text[i] == ' ' {
		i++
	}
	return enh, text[i:]
}
