package sescatch_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"

	"herald/devtools/sescatch"
)

const (
	keyID  = "AKIAHERALDTEST000001"
	secret = "c2VjcmV0LWFjY2Vzcy1rZXktZm9yLXRlc3Rz"
)

func start(t *testing.T, opts sescatch.Options) *sescatch.Server {
	t.Helper()
	if opts.AccessKeyID == "" {
		opts.AccessKeyID, opts.SecretAccessKey = keyID, secret
	}
	s, err := sescatch.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// client is the SDK's client for s, signing with id and key, its requests
// passed through rt (nil: the default transport).
func client(s *sescatch.Server, id, key string, rt http.RoundTripper) *sesv2.Client {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return sesv2.New(sesv2.Options{
		Region:       s.Region(),
		BaseEndpoint: aws.String(s.URL()),
		Credentials:  credentials.NewStaticCredentialsProvider(id, key, ""),
		HTTPClient:   &http.Client{Transport: rt, Timeout: 10 * time.Second},
		Retryer:      aws.NopRetryer{},
	})
}

const raw = "From: Shop <news@shop.example>\r\nTo: ann@example.com\r\nSubject: hi\r\nMessage-ID: <abc@herald.test>\r\n\r\nhello\r\n"

func input() *sesv2.SendEmailInput {
	return &sesv2.SendEmailInput{
		FromEmailAddress:     aws.String("news@shop.example"),
		Destination:          &types.Destination{ToAddresses: []string{"ann@example.com"}},
		Content:              &types.EmailContent{Raw: &types.RawMessage{Data: []byte(raw)}},
		ConfigurationSetName: aws.String("herald"),
		EmailTags: []types.MessageTag{
			{Name: aws.String("herald-job"), Value: aws.String("0b7c6d2e-9f3a-4c1b-8e5d-2a6f7b8c9d0e")},
			{Name: aws.String("herald-tenant"), Value: aws.String("YWNtZS5ldQ")},
		},
	}
}

// code is the SDK's error code of err, "" if it has none.
func code(err error) string {
	if api, ok := errors.AsType[smithy.APIError](err); ok {
		return api.ErrorCode()
	}
	return ""
}

func TestAcceptsWhatTheSDKSends(t *testing.T) {
	s := start(t, sescatch.Options{Region: "eu-west-1", KeepRaw: true, Identities: []string{"shop.example"}, ConfigurationSets: []string{"herald"}})
	out, err := client(s, keyID, secret, nil).SendEmail(t.Context(), input())
	if err != nil {
		t.Fatal(err)
	}
	msgs := s.Messages()
	if len(msgs) != 1 {
		t.Fatalf("recorded %d messages, want 1", len(msgs))
	}
	got := msgs[0]
	if aws.ToString(out.MessageId) != got.MessageID || got.MessageID == "" {
		t.Errorf("answered id %q, recorded %q", aws.ToString(out.MessageId), got.MessageID)
	}
	want := sescatch.Message{
		MessageID: got.MessageID, From: "news@shop.example", To: []string{"ann@example.com"}, ConfigurationSet: "herald",
		Tags: map[string]string{"herald-job": "0b7c6d2e-9f3a-4c1b-8e5d-2a6f7b8c9d0e", "herald-tenant": "YWNtZS5ldQ"},
		Size: len(raw), Received: got.Received, Raw: []byte(raw),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("recorded message (-want +got):\n%s", diff)
	}
}

// tamper changes a request after the SDK has signed it.
type tamper func(*http.Request)

func (f tamper) RoundTrip(r *http.Request) (*http.Response, error) {
	f(r)
	return http.DefaultTransport.RoundTrip(r)
}

func TestRefusesWhatIsNotSignedWithTheSecret(t *testing.T) {
	tests := []struct {
		name     string
		id, key  string
		rt       http.RoundTripper
		now      func() time.Time
		wantCode string
	}{
		{name: "another secret", id: keyID, key: "forged-secret", wantCode: "SignatureDoesNotMatch"},
		{name: "another key id", id: "AKIAOTHER00000000000", key: secret, wantCode: "UnrecognizedClientException"},
		{name: "body changed after signing", id: keyID, key: secret, wantCode: "SignatureDoesNotMatch", rt: tamper(func(r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			b = bytes.Replace(b, []byte("ann@example.com"), []byte("bob@example.com"), 1)
			r.Body = io.NopCloser(bytes.NewReader(b))
		})},
		{name: "signed header changed", id: keyID, key: secret, wantCode: "SignatureDoesNotMatch", rt: tamper(func(r *http.Request) {
			r.Header.Set("Content-Type", "text/plain")
		})},
		{name: "signature removed", id: keyID, key: secret, wantCode: "MissingAuthenticationTokenException", rt: tamper(func(r *http.Request) {
			r.Header.Del("Authorization")
		})},
		{name: "signed an hour ago", id: keyID, key: secret, now: func() time.Time { return time.Now().Add(time.Hour) }, wantCode: "InvalidSignatureException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, sescatch.Options{Now: tt.now})
			_, err := client(s, tt.id, tt.key, tt.rt).SendEmail(t.Context(), input())
			if got := code(err); got != tt.wantCode {
				t.Errorf("error %v: code %q, want %q", err, got, tt.wantCode)
			}
			if re, ok := errors.AsType[*awshttp.ResponseError](err); !ok || re.HTTPStatusCode() != http.StatusForbidden {
				t.Errorf("error %v: want status 403", err)
			}
			if st := s.Stats(); st.Messages != 0 || st.Unauthorized != 1 {
				t.Errorf("stats %+v: want one unauthorized request and no message", st)
			}
		})
	}
}

func TestRefusesInvalidSends(t *testing.T) {
	tests := []struct {
		name     string
		change   func(*sesv2.SendEmailInput)
		wantCode string
	}{
		{"tag value with a dot", func(in *sesv2.SendEmailInput) {
			in.EmailTags = append(in.EmailTags, types.MessageTag{Name: aws.String("t"), Value: aws.String("acme.eu")})
		}, "BadRequestException"},
		{"tag name with a slash", func(in *sesv2.SendEmailInput) {
			in.EmailTags = append(in.EmailTags, types.MessageTag{Name: aws.String("a/b"), Value: aws.String("v")})
		}, "BadRequestException"},
		{"unknown configuration set", func(in *sesv2.SendEmailInput) { in.ConfigurationSetName = aws.String("nope") }, "NotFoundException"},
		{"unverified sender", func(in *sesv2.SendEmailInput) { in.FromEmailAddress = aws.String("news@other.example") }, "MessageRejected"},
		{"raw content that is not MIME", func(in *sesv2.SendEmailInput) {
			in.Content.Raw.Data = []byte("no header here")
		}, "MessageRejected"},
		{"simple and raw content", func(in *sesv2.SendEmailInput) {
			in.Content.Simple = &types.Message{Subject: &types.Content{Data: aws.String("x")}, Body: &types.Body{Text: &types.Content{Data: aws.String("y")}}}
		}, "BadRequestException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, sescatch.Options{Identities: []string{"shop.example"}, ConfigurationSets: []string{"herald"}})
			in := input()
			tt.change(in)
			_, err := client(s, keyID, secret, nil).SendEmail(t.Context(), in)
			if got := code(err); got != tt.wantCode {
				t.Errorf("error %v: code %q, want %q", err, got, tt.wantCode)
			}
			if st := s.Stats(); st.Messages != 0 || st.Rejected != 1 {
				t.Errorf("stats %+v: want one rejected request and no message", st)
			}
		})
	}
}

// TestInjectedErrorsReachTheSDKTyped checks that each injected error comes
// with the status SES gives it and as the SDK's typed error where the API
// has one.
func TestInjectedErrorsReachTheSDKTyped(t *testing.T) {
	tests := []struct {
		code   string
		status int
		typed  func(error) bool
	}{
		{"AccountSuspendedException", 400, isType[*types.AccountSuspendedException]},
		{"BadRequestException", 400, isType[*types.BadRequestException]},
		{"LimitExceededException", 400, isType[*types.LimitExceededException]},
		{"MailFromDomainNotVerifiedException", 400, isType[*types.MailFromDomainNotVerifiedException]},
		{"MessageRejected", 400, isType[*types.MessageRejected]},
		{"NotFoundException", 404, isType[*types.NotFoundException]},
		{"SendingPausedException", 400, isType[*types.SendingPausedException]},
		{"TooManyRequestsException", 429, isType[*types.TooManyRequestsException]},
		{"ThrottlingException", 400, nil},
		{"InternalFailure", 500, nil},
		{"ServiceUnavailable", 503, nil},
		{"AccessDeniedException", 403, nil},
	}
	s := start(t, sescatch.Options{})
	c := client(s, keyID, secret, nil)
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			s.SetFault(func(sescatch.Request) sescatch.Fault { return sescatch.Fault{Error: tt.code, Message: "because"} })
			_, err := c.SendEmail(t.Context(), input())
			if got := code(err); got != tt.code {
				t.Errorf("error %v: code %q, want %q", err, got, tt.code)
			}
			if re, ok := errors.AsType[*awshttp.ResponseError](err); !ok || re.HTTPStatusCode() != tt.status {
				t.Errorf("error %v: want status %d", err, tt.status)
			}
			if tt.typed != nil && !tt.typed(err) {
				t.Errorf("error %v (%T) is not the SDK's type for %s", err, errors.Unwrap(err), tt.code)
			}
		})
	}
	if st := s.Stats(); st.Messages != 0 || st.Faulted != int64(len(tests)) {
		t.Errorf("stats %+v: want every request faulted and no message", st)
	}
}

func isType[T error](err error) bool {
	_, ok := errors.AsType[T](err)
	return ok
}

func TestFaultSeesTheRequest(t *testing.T) {
	s := start(t, sescatch.Options{})
	var got sescatch.Request
	s.SetFault(func(r sescatch.Request) sescatch.Fault { got = r; return sescatch.Fault{} })
	if _, err := client(s, keyID, secret, nil).SendEmail(t.Context(), input()); err != nil {
		t.Fatal(err)
	}
	want := sescatch.Request{From: "news@shop.example", To: []string{"ann@example.com"},
		Tags: map[string]string{"herald-job": "0b7c6d2e-9f3a-4c1b-8e5d-2a6f7b8c9d0e", "herald-tenant": "YWNtZS5ldQ"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
}

func TestDropAfterAcceptKeepsTheMessage(t *testing.T) {
	s := start(t, sescatch.Options{})
	s.SetFault(func(sescatch.Request) sescatch.Fault { return sescatch.Fault{DropAfterAccept: true} })
	if _, err := client(s, keyID, secret, nil).SendEmail(t.Context(), input()); err == nil {
		t.Fatal("a dropped connection gave no error")
	}
	if n := len(s.Messages()); n != 1 {
		t.Errorf("recorded %d messages, want 1", n)
	}
}
