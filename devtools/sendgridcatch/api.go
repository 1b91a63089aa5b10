package sendgridcatch

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/mail"
	"strconv"
	"strings"

	"herald/devtools/fakeapi"
)

// MailSend is the body of POST /v3/mail/send, as the API reference gives
// it. Members the server does not look at are kept raw, so that a member
// the API does not have is refused rather than ignored.
type MailSend struct {
	Personalizations []Personalization `json:"personalizations"`
	From             *Address          `json:"from"`
	ReplyTo          *Address          `json:"reply_to,omitempty"`
	ReplyToList      []Address         `json:"reply_to_list,omitempty"`
	Subject          string            `json:"subject,omitempty"`
	Content          []Content         `json:"content,omitempty"`
	Attachments      json.RawMessage   `json:"attachments,omitempty"`
	TemplateID       string            `json:"template_id,omitempty"`
	Sections         map[string]string `json:"sections,omitempty"`
	Headers          map[string]string `json:"headers,omitempty"`
	Categories       []string          `json:"categories,omitempty"`
	CustomArgs       map[string]string `json:"custom_args,omitempty"`
	SendAt           int64             `json:"send_at,omitempty"`
	BatchID          string            `json:"batch_id,omitempty"`
	Asm              json.RawMessage   `json:"asm,omitempty"`
	IPPoolName       string            `json:"ip_pool_name,omitempty"`
	MailSettings     json.RawMessage   `json:"mail_settings,omitempty"`
	TrackingSettings json.RawMessage   `json:"tracking_settings,omitempty"`
}

// Personalization is one email of a request: its recipients and what is
// theirs alone.
type Personalization struct {
	To                  []Address         `json:"to"`
	From                *Address          `json:"from,omitempty"`
	Cc                  []Address         `json:"cc,omitempty"`
	Bcc                 []Address         `json:"bcc,omitempty"`
	Subject             string            `json:"subject,omitempty"`
	Headers             map[string]string `json:"headers,omitempty"`
	Substitutions       map[string]string `json:"substitutions,omitempty"`
	CustomArgs          map[string]string `json:"custom_args,omitempty"`
	DynamicTemplateData json.RawMessage   `json:"dynamic_template_data,omitempty"`
	Categories          []string          `json:"categories,omitempty"`
	SendAt              int64             `json:"send_at,omitempty"`
}

// Address is an email address with an optional display name.
type Address struct {
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
}

// Content is one body of the message.
type Content struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// Limits of Mail Send.
const (
	MaxPersonalizations = 1000
	MaxRecipients       = 1000
	// MaxCustomArgsBytes bounds the custom_args of one email (the
	// request's and its personalization's together).
	MaxCustomArgsBytes = 10000
)

// reservedHeaders may not be set through headers.
var reservedHeaders = []string{"x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type",
	"content-transfer-encoding", "to", "from", "subject", "reply-to", "cc", "bcc"}

func (s *Server) newHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v3/mail/send", s.serveMailSend)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeErrors(w, http.StatusNotFound, []Error{{Message: "no such endpoint: " + r.Method + " " + r.URL.Path}})
	})
	return mux
}

func (s *Server) serveMailSend(w http.ResponseWriter, r *http.Request) {
	s.inflight.Add(1)
	defer s.inflight.Done()
	s.count(func(st *Stats) { st.Requests++ })
	key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch {
	case !ok || subtle.ConstantTimeCompare([]byte(key), []byte(s.opts.APIKey)) != 1 && !forbidden(s.opts.ForbiddenKeys, key):
		s.count(func(st *Stats) { st.Unauthorized++ })
		writeErrors(w, http.StatusUnauthorized, []Error{{Message: "The provided authorization grant is invalid, expired, or revoked"}})
		return
	case forbidden(s.opts.ForbiddenKeys, key):
		s.count(func(st *Stats) { st.Unauthorized++ })
		writeErrors(w, http.StatusForbidden, []Error{{Message: "access forbidden"}})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		s.count(func(st *Stats) { st.Invalid++ })
		if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
			writeErrors(w, http.StatusRequestEntityTooLarge, []Error{{Message: "The JSON payload you have included in your request is too large. Please reduce the size of your email to less than " + strconv.FormatInt(s.opts.MaxBodyBytes, 10) + " bytes."}})
			return
		}
		writeErrors(w, http.StatusBadRequest, []Error{{Message: "Bad Request: " + err.Error()}})
		return
	}
	var req MailSend
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		s.count(func(st *Stats) { st.Invalid++ })
		writeErrors(w, http.StatusBadRequest, []Error{{Message: "Bad Request: " + err.Error()}})
		return
	}
	if errs := Validate(&req); len(errs) > 0 {
		s.count(func(st *Stats) { st.Invalid++ })
		writeErrors(w, http.StatusBadRequest, errs)
		return
	}

	s.mu.Lock()
	fault := s.fault
	s.mu.Unlock()
	var f Fault
	if fault != nil {
		var fr Request
		for _, p := range req.Personalizations {
			fr.To = append(fr.To, p.To[0].Email)
			fr.Keys = append(fr.Keys, p.CustomArgs["herald_key"])
		}
		f = fault(fr)
	}
	if f.Delay != 0 || f.Status != 0 || f.Drop || f.DropAfterAccept {
		s.count(func(st *Stats) { st.Faulted++ })
	}
	if fakeapi.Apply(w, fakeapi.Fault{Delay: f.Delay, Drop: f.Drop}, s.closing) {
		return
	}
	if f.Status != 0 {
		errs := f.Errors
		if len(errs) == 0 {
			errs = []Error{{Message: strings.ToLower(http.StatusText(f.Status))}}
		}
		if f.Status == http.StatusTooManyRequests {
			w.Header().Set("X-RateLimit-Limit", "600")
			w.Header().Set("X-RateLimit-Remaining", "0")
			if !f.RateLimitReset.IsZero() {
				w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(f.RateLimitReset.Unix(), 10))
			}
		}
		writeErrors(w, f.Status, errs)
		return
	}
	id := s.accept(&req)
	if f.DropAfterAccept {
		fakeapi.Drop(w)
		return
	}
	w.Header().Set("X-Message-Id", id)
	w.WriteHeader(http.StatusAccepted)
}

func forbidden(keys []string, key string) bool {
	for _, k := range keys {
		if subtle.ConstantTimeCompare([]byte(k), []byte(key)) == 1 {
			return true
		}
	}
	return false
}

// Validate checks req against Mail Send's documented rules and returns one
// error per broken rule, with the field it is about.
func Validate(req *MailSend) []Error {
	var errs []Error
	add := func(field, msg string) {
		errs = append(errs, Error{Message: msg, Field: &field})
	}
	if n := len(req.Personalizations); n == 0 || n > MaxPersonalizations {
		add("personalizations", "The personalizations field is required and must have at least one personalization, and at most "+strconv.Itoa(MaxPersonalizations)+".")
	}
	recipients := 0
	allSubjects := len(req.Personalizations) > 0
	for i, p := range req.Personalizations {
		at := "personalizations." + strconv.Itoa(i)
		if len(p.To) == 0 {
			add(at+".to", "The to array is required for all personalization objects, and must have at least one email object with a valid email address.")
		}
		for _, l := range []struct {
			kind string
			list []Address
		}{{"to", p.To}, {"cc", p.Cc}, {"bcc", p.Bcc}} {
			kind, list := l.kind, l.list
			for j, a := range list {
				if !validAddress(a.Email) {
					add(fmt.Sprintf("%s.%s.%d.email", at, kind, j), "Does not contain a valid address.")
				}
			}
			recipients += len(list)
		}
		if p.Subject == "" {
			allSubjects = false
		}
		if size := argsSize(req.CustomArgs) + argsSize(p.CustomArgs); size >= MaxCustomArgsBytes {
			add(at+".custom_args", "The custom_args of an email must total less than 10,000 bytes; these are "+strconv.Itoa(size)+".")
		}
		if h := reserved(p.Headers); h != "" {
			add(at+".headers", "The following header is reserved and cannot be used: "+h)
		}
	}
	if recipients > MaxRecipients {
		add("personalizations", "The total number of recipients must be no more than "+strconv.Itoa(MaxRecipients)+".")
	}
	if req.From == nil || req.From.Email == "" {
		add("from.email", "The from object must be provided for every email send. It is an object that requires the email parameter, but may also contain a name parameter.")
	} else if !validAddress(req.From.Email) {
		add("from.email", "The from email does not contain a valid address.")
	}
	if req.ReplyTo != nil && !validAddress(req.ReplyTo.Email) {
		add("reply_to.email", "The reply_to email does not contain a valid address.")
	}
	if req.TemplateID == "" {
		if req.Subject == "" && !allSubjects {
			add("subject", "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.")
		}
		if len(req.Content) == 0 {
			add("content", "Unless a valid template_id is provided, the content parameter is required. There must be at least one defined content block.")
		}
	}
	for i, c := range req.Content {
		at := "content." + strconv.Itoa(i)
		if c.Type == "" {
			add(at+".type", "The content type must be a string at least one character in length.")
		}
		if c.Value == "" {
			add(at+".value", "The content value must be a string at least one character in length.")
		}
		if i > 0 && c.Type == "text/plain" {
			add(at+".type", "If present, text/plain must be first, followed by text/html, followed by any other content.")
		}
	}
	if h := reserved(req.Headers); h != "" {
		add("headers", "The following header is reserved and cannot be used: "+h)
	}
	return errs
}

func validAddress(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s
}

func argsSize(args map[string]string) int {
	n := 0
	for k, v := range args {
		n += len(k) + len(v)
	}
	return n
}

func reserved(headers map[string]string) string {
	for k := range headers {
		for _, r := range reservedHeaders {
			if strings.EqualFold(k, r) {
				return k
			}
		}
	}
	return ""
}

// accept records each personalization of req as a message and returns the
// request's message id.
func (s *Server) accept(req *MailSend) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	id := fmt.Sprintf("sgcatch%015d", s.seq)
	now := s.opts.Now()
	var text, html string
	for _, c := range req.Content {
		switch {
		case c.Type == "text/plain" && text == "":
			text = c.Value
		case c.Type == "text/html" && html == "":
			html = c.Value
		}
	}
	for _, p := range req.Personalizations {
		m := Message{MessageID: id, From: *req.From, Subject: req.Subject, Text: text, HTML: html,
			Headers: map[string]string{}, CustomArgs: map[string]string{}, TrackingSettings: string(req.TrackingSettings), Received: now}
		if p.From != nil {
			m.From = *p.From
		}
		if p.Subject != "" {
			m.Subject = p.Subject
		}
		for _, a := range p.To {
			m.To = append(m.To, a.Email)
		}
		maps.Copy(m.Headers, req.Headers)
		maps.Copy(m.Headers, p.Headers)
		maps.Copy(m.CustomArgs, req.CustomArgs)
		maps.Copy(m.CustomArgs, p.CustomArgs)
		s.messages = append(s.messages, m)
		s.stats.Messages++
	}
	return id
}

func (s *Server) count(f func(*Stats)) {
	s.mu.Lock()
	f(&s.stats)
	s.mu.Unlock()
}

// writeErrors answers with SendGrid's error body.
func writeErrors(w http.ResponseWriter, status int, errs []Error) {
	fakeapi.WriteJSON(w, status, map[string][]Error{"errors": errs})
}
