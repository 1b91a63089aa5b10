package sendgridout

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"unicode/utf8"
)

// Parts is what Mail Send takes of a rendered message: SendGrid builds the
// MIME message itself, from these.
type Parts struct {
	From    mail.Address
	ReplyTo *mail.Address
	Subject string
	// Text and HTML are the bodies, decoded; either may be empty, not both.
	Text, HTML string
	// Headers are the header fields passed on as they are (PassHeaders).
	Headers map[string]string
}

// PassHeaders are the header fields of a rendered message that go to
// SendGrid as custom headers. The others are SendGrid's to write (From,
// To, Subject, Reply-To, the Content-* fields, Message-ID, Date) or mean
// nothing once SendGrid has rebuilt the message: a DKIM-Signature over
// Herald's bytes would not verify, and SendGrid signs with the domain
// authenticated in its account instead.
var PassHeaders = []string{"List-Unsubscribe", "List-Unsubscribe-Post", "Feedback-ID"}

// Parse takes a rendered RFC 5322 message apart: its From, Reply-To and
// Subject (RFC 2047 words decoded), its text/plain and text/html bodies
// (transfer encodings undone; a multipart/alternative, mixed or related
// message is searched for them) and the PassHeaders. Bodies must be UTF-8
// (or US-ASCII), as Mail Send's JSON strings are.
func Parse(raw []byte) (Parts, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return Parts{}, fmt.Errorf("read message: %w", err)
	}
	var p Parts
	from, err := msg.Header.AddressList("From")
	if err != nil || len(from) != 1 {
		return Parts{}, fmt.Errorf("read From: want one address, have %q", msg.Header.Get("From"))
	}
	p.From = *from[0]
	if v := msg.Header.Get("Reply-To"); v != "" {
		rt, err := mail.ParseAddress(v)
		if err != nil {
			return Parts{}, fmt.Errorf("read Reply-To: %w", err)
		}
		p.ReplyTo = rt
	}
	var dec mime.WordDecoder
	if p.Subject, err = dec.DecodeHeader(msg.Header.Get("Subject")); err != nil {
		return Parts{}, fmt.Errorf("decode Subject: %w", err)
	}
	for _, name := range PassHeaders {
		if v := msg.Header.Get(name); v != "" {
			if p.Headers == nil {
				p.Headers = map[string]string{}
			}
			p.Headers[name] = v
		}
	}
	err = p.body(msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body, 0)
	if err != nil {
		return Parts{}, err
	}
	if p.Text == "" && p.HTML == "" {
		return Parts{}, errors.New("the message has neither a text/plain nor a text/html body")
	}
	return p, nil
}

// maxDepth bounds how deeply multiparts may nest.
const maxDepth = 4

// body reads one entity of content type ct, keeping the first text/plain
// and the first text/html it finds.
func (p *Parts) body(ct, cte string, r io.Reader, depth int) error {
	if ct == "" {
		ct = "text/plain; charset=us-ascii"
	}
	media, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("parse Content-Type %q: %w", ct, err)
	}
	if strings.HasPrefix(media, "multipart/") {
		if depth >= maxDepth {
			return fmt.Errorf("multiparts nested more than %d deep", maxDepth)
		}
		mr := multipart.NewReader(r, params["boundary"])
		for {
			// NextRawPart: the transfer encoding is undone below, for
			// every encoding alike.
			part, err := mr.NextRawPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", media, err)
			}
			err = p.body(part.Header.Get("Content-Type"), part.Header.Get("Content-Transfer-Encoding"), part, depth+1)
			if err != nil {
				return err
			}
		}
	}
	if media != "text/plain" && media != "text/html" {
		return nil // attachments and the like: not sent through Mail Send here
	}
	if cs := strings.ToLower(params["charset"]); cs != "" && cs != "utf-8" && cs != "us-ascii" {
		return fmt.Errorf("%s body in charset %q: only UTF-8 is supported", media, cs)
	}
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, r) // which skips line breaks
	case "", "7bit", "8bit", "binary":
	default:
		return fmt.Errorf("%s body in unknown transfer encoding %q", media, cte)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("decode %s body: %w", media, err)
	}
	if !utf8.Valid(b) {
		return fmt.Errorf("%s body is not valid UTF-8", media)
	}
	switch {
	case media == "text/plain" && p.Text == "":
		p.Text = string(b)
	case media == "text/html" && p.HTML == "":
		p.HTML = string(b)
	}
	return nil
}
