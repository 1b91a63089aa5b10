package feedback

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"

	"herald/ingest/internal/store"
	"herald/shared/event"
)

// KeyFunc recovers a delivery's key from the return path its email was
// sent from: the VERP address an SMTP send used as envelope sender, which
// a bounce is addressed to. It returns an error for an address that is
// not one of Herald's, or whose delivery cannot be found.
type KeyFunc func(returnPath string) (event.DeliveryKey, error)

// maxReportPart bounds the machine-readable part of a report (and the
// headers of the original message it encloses): real ones are a few
// hundred bytes a recipient.
const maxReportPart = 256 << 10

// ParseReport reads a multipart/report sent to returnPath — an RFC 3464
// delivery status notification or an RFC 5965 ARF feedback report — and
// returns one report per recipient, keyed by key(returnPath).
//
// A DSN recipient whose Action is failed with a 5.x.x Status is Bounced;
// one failed with 4.x.x, or delayed, is SoftBounce; delivered is
// Delivered; relayed and expanded are ignored (nothing is known yet). An
// ARF report of Feedback-Type abuse is Complained, other types are
// ignored. Feedback loops often send ARF reports to an address of their
// own choosing rather than to the return path, so when returnPath names no
// delivery the report's Original-Mail-From field, and then the enclosed
// message's Return-Path, are tried: each is the original envelope sender.
//
// The event id is the report's Message-ID and the recipient, so a report
// delivered twice is the same event; a report without a Message-ID stands
// in a hash of its bytes.
func ParseReport(raw []byte, returnPath string, key KeyFunc) (Batch, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return Batch{}, fmt.Errorf("%w: report is not a message: %v", ErrMalformed, err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" {
		return Batch{}, fmt.Errorf("%w: report Content-Type %q, want multipart/report", ErrMalformed, msg.Header.Get("Content-Type"))
	}
	if params["boundary"] == "" {
		return Batch{}, fmt.Errorf("%w: multipart/report without a boundary", ErrMalformed)
	}
	var status, feedback []byte
	var original mail.Header
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Batch{}, fmt.Errorf("%w: report parts: %v", ErrMalformed, err)
		}
		pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		switch pt {
		case "message/delivery-status", "message/global-delivery-status":
			status, err = readPart(p)
		case "message/feedback-report":
			feedback, err = readPart(p)
		case "message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers":
			original = enclosedHeader(p)
		}
		if err != nil {
			return Batch{}, err
		}
	}
	id := strings.Trim(strings.TrimSpace(msg.Header.Get("Message-Id")), "<>")
	if id == "" {
		sum := sha256.Sum256(raw)
		id = "sha256:" + hex.EncodeToString(sum[:])
	}
	switch strings.ToLower(params["report-type"]) {
	case "delivery-status":
		if status == nil {
			return Batch{}, fmt.Errorf("%w: delivery-status report without a message/delivery-status part", ErrMalformed)
		}
		return parseDSN(status, id, returnPath, key)
	case "feedback-report":
		if feedback == nil {
			return Batch{}, fmt.Errorf("%w: feedback report without a message/feedback-report part", ErrMalformed)
		}
		return parseARF(feedback, original, id, returnPath, key)
	default:
		return Batch{}, fmt.Errorf("%w: report-type %q, want delivery-status or feedback-report", ErrMalformed, params["report-type"])
	}
}

// readPart reads a part's body, undoing base64 (multipart already undoes
// quoted-printable).
func readPart(p *multipart.Part) ([]byte, error) {
	var r io.Reader = p
	if strings.EqualFold(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding")), "base64") {
		r = base64.NewDecoder(base64.StdEncoding, p)
	}
	b, err := io.ReadAll(io.LimitReader(r, maxReportPart+1))
	if err != nil {
		return nil, fmt.Errorf("%w: report part: %v", ErrMalformed, err)
	}
	if len(b) > maxReportPart {
		return nil, fmt.Errorf("%w: report part larger than %d bytes", ErrMalformed, maxReportPart)
	}
	return b, nil
}

// enclosedHeader reads the header of the original message a report
// encloses, or nil when it cannot.
func enclosedHeader(p *multipart.Part) mail.Header {
	r := textproto.NewReader(bufio.NewReader(io.LimitReader(p, maxReportPart)))
	h, err := r.ReadMIMEHeader()
	if err != nil && len(h) == 0 {
		return nil
	}
	return mail.Header(h)
}

// fields is one block of a report's "Name: value" lines, by canonical
// name; a field given twice keeps each value.
type fields map[string][]string

func (f fields) get(name string) string {
	if v := f[textproto.CanonicalMIMEHeaderKey(name)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// fieldBlocks splits a delivery-status or feedback-report body into its
// blocks, which blank lines separate, unfolding continuation lines and
// dropping parenthesised comments at the end of a value.
func fieldBlocks(body []byte) ([]fields, error) {
	var blocks []fields
	var cur fields
	var last string
	text := strings.ReplaceAll(string(body), "\r\n", "\n")
	for n, line := range strings.Split(text, "\n") {
		switch {
		case strings.TrimSpace(line) == "":
			if cur != nil {
				blocks = append(blocks, cur)
			}
			cur, last = nil, ""
		case line[0] == ' ' || line[0] == '\t':
			if last == "" {
				return nil, fmt.Errorf("%w: line %d continues no field", ErrMalformed, n+1)
			}
			v := cur[last]
			v[len(v)-1] += " " + strings.TrimSpace(line)
		default:
			name, value, ok := strings.Cut(line, ":")
			if !ok || strings.TrimSpace(name) == "" || strings.ContainsAny(name, " \t") {
				return nil, fmt.Errorf("%w: line %d is not a field: %q", ErrMalformed, n+1, line)
			}
			if cur == nil {
				cur = fields{}
			}
			last = textproto.CanonicalMIMEHeaderKey(name)
			cur[last] = append(cur[last], strings.TrimSpace(value))
		}
	}
	if cur != nil {
		blocks = append(blocks, cur)
	}
	return blocks, nil
}

// typedAddress reads "rfc822; ada@example.com" (a Final-Recipient or
// Original-Recipient) as its address.
func typedAddress(v string) string {
	if _, addr, ok := strings.Cut(v, ";"); ok {
		v = addr
	}
	return strings.ToLower(strings.Trim(strings.TrimSpace(v), "<>"))
}

var dsnStatus = regexp.MustCompile(`^([245])\.[0-9]{1,3}\.[0-9]{1,3}(\s|\(|$)`)

func parseDSN(body []byte, id, returnPath string, key KeyFunc) (Batch, error) {
	blocks, err := fieldBlocks(body)
	if err != nil {
		return Batch{}, err
	}
	if len(blocks) == 0 || blocks[0].get("Reporting-MTA") == "" {
		return Batch{}, fmt.Errorf("%w: delivery status without Reporting-MTA", ErrMalformed)
	}
	if len(blocks) == 1 {
		return Batch{}, fmt.Errorf("%w: delivery status names no recipient", ErrMalformed)
	}
	k, keyErr := keyOf(key, returnPath)
	var b Batch
	for i, r := range blocks[1:] {
		rcpt := typedAddress(r.get("Final-Recipient"))
		action := strings.ToLower(r.get("Action"))
		status := dsnStatus.FindStringSubmatch(r.get("Status"))
		if rcpt == "" || action == "" || status == nil {
			return Batch{}, fmt.Errorf("%w: recipient %d of the delivery status lacks a Final-Recipient, Action or x.y.z Status", ErrMalformed, i+1)
		}
		var kind store.FeedbackKind
		switch {
		case action == "delivered":
			kind = store.Delivered
		case action == "delayed":
			kind = store.SoftBounce
		case action == "failed" && status[1] == "5":
			kind = store.Bounced
		case action == "failed" && status[1] == "4":
			kind = store.SoftBounce
		case action == "relayed" || action == "expanded":
			b.Ignored++
			continue
		default:
			return Batch{}, fmt.Errorf("%w: recipient %s: Action %q with Status %s", ErrMalformed, rcpt, action, r.get("Status"))
		}
		b.add(ProviderSMTP, id+"/"+rcpt, k, keyErr, kind)
	}
	return b, nil
}

func parseARF(body []byte, original mail.Header, id, returnPath string, key KeyFunc) (Batch, error) {
	blocks, err := fieldBlocks(body)
	if err != nil {
		return Batch{}, err
	}
	f := fields{}
	for _, b := range blocks {
		for name, v := range b {
			f[name] = append(f[name], v...)
		}
	}
	typ := strings.ToLower(f.get("Feedback-Type"))
	if typ == "" {
		return Batch{}, fmt.Errorf("%w: feedback report without Feedback-Type", ErrMalformed)
	}
	if typ != "abuse" {
		return Batch{Ignored: 1}, nil
	}
	k, keyErr := keyOf(key, returnPath)
	if keyErr != nil {
		for _, sender := range []string{f.get("Original-Mail-From"), original.Get("Return-Path")} {
			if sender == "" {
				continue
			}
			if alt, err := keyOf(key, sender); err == nil {
				k, keyErr = alt, nil
				break
			}
		}
	}
	if rcpt := typedAddress(f.get("Original-Rcpt-To")); rcpt != "" {
		id += "/" + rcpt
	}
	var b Batch
	b.add(ProviderSMTP, id, k, keyErr, store.Complained)
	return b, nil
}

// keyOf calls key on an address stripped of its angle brackets.
func keyOf(key KeyFunc, returnPath string) (event.DeliveryKey, error) {
	returnPath = strings.TrimSpace(strings.Trim(strings.TrimSpace(returnPath), "<>"))
	if returnPath == "" {
		return event.DeliveryKey{}, errors.New("no return path")
	}
	return key(returnPath)
}
