package feedback_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"herald/ingest/internal/feedback"
	"herald/ingest/internal/feedback/feedbacktest"
)

func newVerifier(t *testing.T, fake *feedbacktest.SNS) *feedback.SNS {
	t.Helper()
	v, err := feedback.NewSNS(feedback.SNSConfig{Topics: []string{feedbacktest.Topic}, Client: fake.Client})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSNSCertificatesComeOnlyFromSNSHosts(t *testing.T) {
	fake := feedbacktest.NewSNS(t)
	v := newVerifier(t, fake)
	// The host rule is checked before any signature, so the key that signs
	// does not matter here.
	key, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	for certURL, ok := range map[string]bool{
		"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem":     true,
		"https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-0000000000000000000000.pem": true,
		"https://" + feedbacktest.OtherHost + "/SimpleNotificationService-0000000000000000000000.pem":  false,
		"http://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem":      false,
		"https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-0.pem":                     false,
		"https://user@sns.us-east-1.amazonaws.com/SimpleNotificationService-0.pem":                     false,
		"https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-0.pem":             false,
		"https://evilsns.us-east-1.amazonaws.com/SimpleNotificationService-0.pem":                      false,
		// S3 buckets named "sns": on amazonaws.com, but anyone's.
		"https://sns.s3.amazonaws.com/SimpleNotificationService-0.pem":                   false,
		"https://sns.s3-website-us-east-1.amazonaws.com/SimpleNotificationService-0.pem": false,
		"https://sns.us-east-1.amazonaws.com/not-a-certificate":                          false,
		"sns.us-east-1.amazonaws.com/SimpleNotificationService-0.pem":                    false,
	} {
		m := feedbacktest.SignWith(fake.Notification("m-1", "{}"), 2, key, certURL)
		_, err := v.Verify(context.Background(), feedbacktest.Body(m))
		switch {
		case ok && errors.Is(err, feedback.ErrSignature) && strings.Contains(err.Error(), "SigningCertURL"):
			t.Errorf("%s: refused as a certificate URL: %v", certURL, err)
		case !ok && !errors.Is(err, feedback.ErrSignature):
			t.Errorf("%s: err = %v, want ErrSignature", certURL, err)
		}
	}
	for _, r := range fake.Requests() {
		if !strings.HasPrefix(r, feedbacktest.SNSHost+"/") && !strings.HasPrefix(r, "sns.cn-north-1.amazonaws.com.cn/") {
			t.Errorf("fetched %s, which is not an SNS host", r)
		}
	}
}

func TestSNSVerifiesEveryMessage(t *testing.T) {
	fake := feedbacktest.NewSNS(t)
	v := newVerifier(t, fake)
	forger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	subject := "Amazon SES Email Event Notification"
	withSubject := fake.Notification("m-3", `{"eventType":"Delivery"}`)
	withSubject.Subject = &subject
	emptySubject := fake.Notification("m-4", `{"eventType":"Delivery"}`)
	empty := ""
	emptySubject.Subject = &empty
	unsub := fake.SubscriptionConfirmation("m-6", "tok-2")
	unsub.Type = feedback.SNSUnsubscribeConfirmation

	good := fake.Notification("m-1", `{"eventType":"Delivery"}`)
	tests := []struct {
		name string
		body []byte
		want error
	}{
		{"a notification, SignatureVersion 2", feedbacktest.Body(good), nil},
		{"a notification, SignatureVersion 1", feedbacktest.Body(fake.Sign(fake.Notification("m-2", "{}"), 1)), nil},
		{"a notification with a subject", feedbacktest.Body(fake.Sign(withSubject, 2)), nil},
		{"a notification with an empty subject", feedbacktest.Body(fake.Sign(emptySubject, 2)), nil},
		{"a subscription confirmation", feedbacktest.Body(fake.SubscriptionConfirmation("m-5", "tok-1")), nil},
		{"an unsubscribe confirmation", feedbacktest.Body(fake.Sign(unsub, 2)), nil},

		{"a forged message: the body changed after signing", feedbacktest.Body(func() feedback.SNSMessage {
			m := good
			m.Message = `{"eventType":"Complaint"}`
			return m
		}()), feedback.ErrSignature},
		{"a forged message: a subject added after signing", feedbacktest.Body(func() feedback.SNSMessage {
			m := good
			m.Subject = &subject
			return m
		}()), feedback.ErrSignature},
		{"a forged message: another key, SNS's certificate", feedbacktest.Body(
			feedbacktest.SignWith(fake.Notification("m-7", "{}"), 2, forger, fake.CertURL)), feedback.ErrSignature},
		{"a version-2 signature claimed as version 1", feedbacktest.Body(func() feedback.SNSMessage {
			m := good
			m.SignatureVersion = "1"
			return m
		}()), feedback.ErrSignature},
		{"an unsigned message", feedbacktest.Body(func() feedback.SNSMessage {
			m := good
			m.Signature = ""
			return m
		}()), feedback.ErrSignature},
		{"an unknown signature version", feedbacktest.Body(func() feedback.SNSMessage {
			m := good
			m.SignatureVersion = "3"
			return m
		}()), feedback.ErrSignature},
		{"a signature that is not base64", feedbacktest.Body(func() feedback.SNSMessage {
			m := good
			m.Signature = "not base64!"
			return m
		}()), feedback.ErrSignature},
		{"a replay of a message two days old", feedbacktest.Body(func() feedback.SNSMessage {
			m := good
			m.Timestamp = time.Now().Add(-48 * time.Hour).UTC().Format(time.RFC3339Nano)
			return fake.Sign(m, 2)
		}()), feedback.ErrSignature},
		{"a correctly signed message of another topic", feedbacktest.Body(func() feedback.SNSMessage {
			m := good
			m.TopicArn = "arn:aws:sns:us-east-1:210987654321:someone-else"
			return fake.Sign(m, 2)
		}()), feedback.ErrTopic},
		{"not JSON", []byte("Type=Notification"), feedback.ErrMalformed},
		{"an unknown type", feedbacktest.Body(func() feedback.SNSMessage {
			m := good
			m.Type = "Announcement"
			return m
		}()), feedback.ErrMalformed},
		{"a confirmation without SubscribeURL", feedbacktest.Body(func() feedback.SNSMessage {
			m := fake.SubscriptionConfirmation("m-8", "tok-3")
			m.SubscribeURL = ""
			return fake.Sign(m, 1)
		}()), feedback.ErrMalformed},
		{"a timestamp that is not one", feedbacktest.Body(func() feedback.SNSMessage {
			m := good
			m.Timestamp = "yesterday"
			return fake.Sign(m, 2)
		}()), feedback.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := v.Verify(context.Background(), tt.body)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if m.MessageID == "" || m.TopicArn != feedbacktest.Topic {
					t.Errorf("verified message %+v", m)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if n := v.Fetched(); n != 1 {
		t.Errorf("the signing certificate was fetched %d times, want once (cached)", n)
	}
}

func TestSNSConfirmsASubscriptionOnlyAtSNS(t *testing.T) {
	fake := feedbacktest.NewSNS(t)
	v := newVerifier(t, fake)
	ctx := context.Background()
	m, err := v.Verify(ctx, feedbacktest.Body(fake.SubscriptionConfirmation("m-1", "tok-1")))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Confirm(ctx, m); err != nil {
		t.Fatal(err)
	}
	if got := fake.Confirmed(); !slices.Equal(got, []string{"tok-1"}) {
		t.Fatalf("confirmed %v, want [tok-1]", got)
	}

	m.SubscribeURL = "https://" + feedbacktest.OtherHost + "/?Action=ConfirmSubscription&Token=tok-2"
	if err := v.Confirm(ctx, m); !errors.Is(err, feedback.ErrMalformed) {
		t.Errorf("a SubscribeURL on another host: err = %v, want ErrMalformed", err)
	}
	if got := fake.Confirmed(); len(got) != 1 {
		t.Errorf("confirmed %v after a SubscribeURL on another host", got)
	}
	n := fake.Notification("m-2", "{}")
	if err := v.Confirm(ctx, n); !errors.Is(err, feedback.ErrMalformed) {
		t.Errorf("confirming a notification: err = %v", err)
	}
}

func TestSNSRefusesAConfigurationWithoutTopics(t *testing.T) {
	for _, topics := range [][]string{nil, {"herald-ses-events"}} {
		if _, err := feedback.NewSNS(feedback.SNSConfig{Topics: topics}); err == nil {
			t.Errorf("topics %q accepted", topics)
		}
	}
}
