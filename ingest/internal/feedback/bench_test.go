package feedback_test

import (
	"context"
	"testing"
	"time"

	"herald/ingest/internal/feedback"
	"herald/ingest/internal/feedback/feedbacktest"
)

// BenchmarkSNSNotification is the CPU an SES event costs ingest through
// SNS once the signing certificate is cached: parse, RSA-2048 SHA-256
// verification, SES event.
func BenchmarkSNSNotification(b *testing.B) {
	fake := feedbacktest.NewSNS(b)
	v, err := feedback.NewSNS(feedback.SNSConfig{Topics: []string{feedbacktest.Topic}, Client: fake.Client})
	if err != nil {
		b.Fatal(err)
	}
	body := feedbacktest.Body(fake.Notification("n-1", string(readSample(b, "ses-bounce-permanent.json"))))
	for b.Loop() {
		m, err := v.Verify(context.Background(), body)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := feedback.ParseSES(m.MessageID, m.Message); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSendGridRequest is the CPU of one signed SendGrid post of the
// sample's 11 events: ECDSA P-256 verification and parsing.
func BenchmarkSendGridRequest(b *testing.B) {
	account := feedbacktest.NewSendGrid(b)
	v, err := feedback.NewSendGrid(account.PublicKey, 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	body := readSample(b, "sendgrid-events.json")
	sig, ts := account.Sign(body, time.Now())
	for b.Loop() {
		if err := v.Verify(sig, ts, body); err != nil {
			b.Fatal(err)
		}
		if _, err := feedback.ParseSendGrid(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseReport is the CPU of reading one DSN.
func BenchmarkParseReport(b *testing.B) {
	raw := readSample(b, "dsn-hard-bounce.eml")
	for b.Loop() {
		if _, err := feedback.ParseReport(raw, sampleReturnPath, sampleDecoder); err != nil {
			b.Fatal(err)
		}
	}
}
