package sescatch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"strconv"
	"strings"

	"herald/devtools/fakeapi"
)

// Status is the HTTP status SES answers error code with: SendEmail's
// documented errors, then the common errors of AWS APIs. A code it does
// not know is 400.
func Status(code string) int {
	switch code {
	case "TooManyRequestsException":
		return http.StatusTooManyRequests
	case "NotFoundException":
		return http.StatusNotFound
	case "InternalFailure", "InternalServiceErrorException":
		return http.StatusInternalServerError
	case "ServiceUnavailable", "ServiceUnavailableException":
		return http.StatusServiceUnavailable
	case "AccessDeniedException", "UnrecognizedClientException", "InvalidClientTokenId",
		"SignatureDoesNotMatch", "InvalidSignatureException", "MissingAuthenticationTokenException",
		"OptInRequired", "ExpiredTokenException":
		return http.StatusForbidden
	default:
		// AccountSuspendedException, BadRequestException,
		// LimitExceededException, MailFromDomainNotVerifiedException,
		// MessageRejected, SendingPausedException, ThrottlingException…
		return http.StatusBadRequest
	}
}

// SendEmailRequest is the body of SendEmail, as the API reference gives it.
// Members the server does not look at are kept raw, so that a request with
// a member the API does not have is refused rather than ignored.
type SendEmailRequest struct {
	FromEmailAddress                          string          `json:"FromEmailAddress,omitempty"`
	FromEmailAddressIdentityArn               string          `json:"FromEmailAddressIdentityArn,omitempty"`
	Destination                               *Destination    `json:"Destination,omitempty"`
	ReplyToAddresses                          []string        `json:"ReplyToAddresses,omitempty"`
	FeedbackForwardingEmailAddress            string          `json:"FeedbackForwardingEmailAddress,omitempty"`
	FeedbackForwardingEmailAddressIdentityArn string          `json:"FeedbackForwardingEmailAddressIdentityArn,omitempty"`
	Content                                   *EmailContent   `json:"Content,omitempty"`
	EmailTags                                 []MessageTag    `json:"EmailTags,omitempty"`
	ConfigurationSetName                      string          `json:"ConfigurationSetName,omitempty"`
	ConfigurationOverrides                    json.RawMessage `json:"ConfigurationOverrides,omitempty"`
	ListManagementOptions                     json.RawMessage `json:"ListManagementOptions,omitempty"`
	EndpointId                                string          `json:"EndpointId,omitempty"`
	TenantName                                string          `json:"TenantName,omitempty"`
}

// Destination holds a message's recipients.
type Destination struct {
	ToAddresses  []string `json:"ToAddresses,omitempty"`
	CcAddresses  []string `json:"CcAddresses,omitempty"`
	BccAddresses []string `json:"BccAddresses,omitempty"`
}

// EmailContent is one of a simple, a raw or a templated message.
type EmailContent struct {
	Simple   json.RawMessage `json:"Simple,omitempty"`
	Raw      *RawMessage     `json:"Raw,omitempty"`
	Template json.RawMessage `json:"Template,omitempty"`
}

// RawMessage is a whole MIME message; JSON carries it base64.
type RawMessage struct {
	Data []byte `json:"Data"`
}

// MessageTag is one of a message's tags.
type MessageTag struct {
	Name  string `json:"Name"`
	Value string `json:"Value"`
}

// MaxRecipients is the most recipients one message may have.
const MaxRecipients = 50

func (s *Server) newHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v2/email/outbound-emails", s.serveSendEmail)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "UnknownOperationException", "no such operation: "+r.Method+" "+r.URL.Path)
	})
	return mux
}

func (s *Server) serveSendEmail(w http.ResponseWriter, r *http.Request) {
	s.inflight.Add(1)
	defer s.inflight.Done()
	s.mu.Lock()
	s.stats.Requests++
	s.mu.Unlock()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.opts.MaxMessageBytes)*4/3+(1<<20)))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "MessageRejected", "Message length is more than "+strconv.Itoa(s.opts.MaxMessageBytes)+" bytes")
		return
	}
	if aerr := verify(r, body, s.creds, s.opts.Region, s.opts.Now()); aerr != nil {
		s.mu.Lock()
		s.stats.Unauthorized++
		s.mu.Unlock()
		writeError(w, aerr.status, aerr.code, aerr.message)
		return
	}
	var req SendEmailRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		s.reject(w, "SerializationException", "malformed request body: "+err.Error())
		return
	}
	msg, code, text := s.check(&req)
	if code != "" {
		s.reject(w, code, text)
		return
	}

	s.mu.Lock()
	fault := s.fault
	s.mu.Unlock()
	var f Fault
	if fault != nil {
		f = fault(Request{From: msg.From, To: msg.To, Tags: msg.Tags})
	}
	if f != (Fault{}) {
		s.mu.Lock()
		s.stats.Faulted++
		s.mu.Unlock()
	}
	if fakeapi.Apply(w, fakeapi.Fault{Delay: f.Delay, Drop: f.Drop}, s.closing) {
		return
	}
	if f.Error != "" {
		text := f.Message
		if text == "" {
			text = f.Error + " (injected)"
		}
		writeError(w, Status(f.Error), f.Error, text)
		return
	}
	id := s.accept(msg, req.Content.Raw.Data)
	if f.DropAfterAccept {
		fakeapi.Drop(w)
		return
	}
	w.Header().Set("X-Amzn-Requestid", id)
	fakeapi.WriteJSON(w, http.StatusOK, map[string]string{"MessageId": id})
}

// check validates a request as SES does and returns the message it would
// send, or the error code and message it refuses it with.
func (s *Server) check(req *SendEmailRequest) (Message, string, string) {
	c := req.Content
	if c == nil {
		return Message{}, "BadRequestException", "Content is required"
	}
	kinds := 0
	for _, set := range []bool{c.Simple != nil, c.Raw != nil, c.Template != nil} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return Message{}, "BadRequestException", "Content must have exactly one of Simple, Raw and Template"
	}
	if c.Raw == nil {
		return Message{}, "BadRequestException", "this server takes Raw content only"
	}
	raw := c.Raw.Data
	if len(raw) == 0 {
		return Message{}, "BadRequestException", "Content.Raw.Data is required"
	}
	if len(raw) > s.opts.MaxMessageBytes {
		return Message{}, "MessageRejected", "Message length is more than " + strconv.Itoa(s.opts.MaxMessageBytes) + " bytes"
	}
	parsed, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return Message{}, "MessageRejected", "Raw message is not a valid MIME message: " + err.Error()
	}
	from := req.FromEmailAddress
	if from == "" {
		a, err := mail.ParseAddress(parsed.Header.Get("From"))
		if err != nil {
			return Message{}, "MessageRejected", "Missing or invalid From header: " + err.Error()
		}
		from = a.Address
	}
	var to []string
	if d := req.Destination; d != nil {
		to = append(append(append(to, d.ToAddresses...), d.CcAddresses...), d.BccAddresses...)
	} else {
		for _, h := range []string{"To", "Cc", "Bcc"} {
			if as, err := parsed.Header.AddressList(h); err == nil {
				for _, a := range as {
					to = append(to, a.Address)
				}
			}
		}
	}
	if len(to) == 0 {
		return Message{}, "MessageRejected", "Missing final '@domain'"
	}
	if len(to) > MaxRecipients {
		return Message{}, "MessageRejected", "Recipient count exceeds " + strconv.Itoa(MaxRecipients)
	}
	for _, a := range to {
		if _, err := mail.ParseAddress(a); err != nil {
			return Message{}, "BadRequestException", fmt.Sprintf("Illegal address %q", a)
		}
	}
	tags := map[string]string{}
	for _, t := range req.EmailTags {
		if !tagText(t.Name) {
			return Message{}, "BadRequestException", fmt.Sprintf("Invalid tag name <%s>: only ASCII letters, numbers, underscores, or dashes, at most 256", t.Name)
		}
		if !tagText(t.Value) {
			return Message{}, "BadRequestException", fmt.Sprintf("Invalid tag value <%s>: only ASCII letters, numbers, underscores, or dashes, at most 256", t.Value)
		}
		if _, dup := tags[t.Name]; dup {
			return Message{}, "BadRequestException", fmt.Sprintf("Duplicate tag name <%s>", t.Name)
		}
		tags[t.Name] = t.Value
	}
	if sets := s.opts.ConfigurationSets; sets != nil && req.ConfigurationSetName != "" && !contains(sets, req.ConfigurationSetName) {
		return Message{}, "NotFoundException", "Configuration set <" + req.ConfigurationSetName + "> does not exist."
	}
	if ids := s.opts.Identities; ids != nil && !verified(ids, from) {
		return Message{}, "MessageRejected", "Email address is not verified. The following identities failed the check in region " + strings.ToUpper(s.opts.Region) + ": " + from
	}
	return Message{From: from, To: to, ConfigurationSet: req.ConfigurationSetName, Tags: tags, Size: len(raw)}, "", ""
}

// tagText reports whether s may be a tag's name or value.
func tagText(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// verified reports whether addr is one of ids, or at a domain that is.
func verified(ids []string, addr string) bool {
	_, domain, _ := strings.Cut(addr, "@")
	for _, id := range ids {
		if strings.EqualFold(id, addr) || strings.EqualFold(id, domain) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// accept records msg and returns its id, shaped like SES's.
func (s *Server) accept(msg Message, raw []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	msg.MessageID = fmt.Sprintf("0100019a%08x-sescatch-%012d-000000", s.seq, s.seq)
	msg.Received = s.opts.Now()
	if s.opts.KeepRaw {
		msg.Raw = bytes.Clone(raw)
	}
	s.messages = append(s.messages, msg)
	s.stats.Messages++
	return msg.MessageID
}

// reject answers a request refused for its content.
func (s *Server) reject(w http.ResponseWriter, code, message string) {
	s.mu.Lock()
	s.stats.Rejected++
	s.mu.Unlock()
	writeError(w, Status(code), code, message)
}

// writeError answers as an AWS REST-JSON service does: the code in
// X-Amzn-ErrorType (with the namespace SES appends) and in __type, the
// text in message.
func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("X-Amzn-ErrorType", code+":http://internal.amazon.com/coral/com.amazonaws.sesv2/")
	fakeapi.WriteJSON(w, status, map[string]string{"__type": code, "message": message})
}
