package feedback_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"herald/ingest/internal/feedback"
	"herald/ingest/internal/store"
	"herald/shared/event"
)

// sampleKey is the delivery whose tags the samples in testdata carry.
var sampleKey = event.DeliveryKey{Tenant: "acme", Job: "0b9f5a4e-3c1d-4e8a-9f00-1234567890ab", Channel: event.ChannelEmail, Customer: "c-42"}

func TestSampleTagsAreTheSampleKeys(t *testing.T) {
	tenant, delivery, err := sampleKey.Tags()
	if err != nil || tenant != "YWNtZQ" || delivery != "C59aTjwdToqfABI0VniQq2VjLTQy" {
		t.Fatalf("the samples' tags are not sampleKey's: %q %q %v", tenant, delivery, err)
	}
}

func readSample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ses(id string, kind store.FeedbackKind) store.Feedback {
	return store.Feedback{Provider: feedback.ProviderSES, EventID: id, Key: sampleKey, Kind: kind}
}

func TestParseSES(t *testing.T) {
	tests := []struct {
		sample string
		want   feedback.Batch
	}{
		{"ses-bounce-permanent.json", feedback.Batch{Events: []store.Feedback{ses("sns-1", store.Bounced)}}},
		{"ses-bounce-transient-two.json", feedback.Batch{Events: []store.Feedback{ses("sns-1/0", store.SoftBounce), ses("sns-1/1", store.SoftBounce)}}},
		{"ses-complaint.json", feedback.Batch{Events: []store.Feedback{ses("sns-1", store.Complained)}}},
		{"ses-delivery.json", feedback.Batch{Events: []store.Feedback{ses("sns-1", store.Delivered)}}},
		{"ses-open.json", feedback.Batch{Ignored: 1}},
		{"ses-bounce-untagged.json", feedback.Batch{Unkeyed: []feedback.Unkeyed{{EventID: "sns-1", Reason: "no herald_tenant and herald_delivery tags"}}}},
		{"ses-bounce-bad-tenant.json", feedback.Batch{Unkeyed: []feedback.Unkeyed{{EventID: "sns-1", Reason: `tenant tag "YWNtZSBjb3Jw" does not hold a tenant id`}}}},
	}
	for _, tt := range tests {
		t.Run(tt.sample, func(t *testing.T) {
			got, err := feedback.ParseSES("sns-1", string(readSample(t, tt.sample)))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("batch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseSESRefusesMalformedEvents(t *testing.T) {
	for name, message := range map[string]string{
		"not JSON":                     "Bounce!",
		"a bounce without its object":  string(readSample(t, "ses-bounce-no-object.json")),
		"an unknown bounce type":       `{"eventType":"Bounce","bounce":{"bounceType":"Sideways","bouncedRecipients":[{"emailAddress":"a@example.net"}]}}`,
		"a bounce naming no recipient": `{"eventType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[]}}`,
		"no event type":                `{"mail":{"messageId":"x"}}`,
	} {
		if b, err := feedback.ParseSES("sns-1", message); !errors.Is(err, feedback.ErrMalformed) {
			t.Errorf("%s: %+v, %v; want ErrMalformed", name, b, err)
		}
	}
}

func TestParseSESReadsIdentityNotifications(t *testing.T) {
	// SES's older identity notifications name the type notificationType.
	got, err := feedback.ParseSES("sns-1", `{"notificationType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"ada@example.net"}]},
		"mail":{"tags":{"herald_tenant":["YWNtZQ"],"herald_delivery":["C59aTjwdToqfABI0VniQq2VjLTQy"]}}}`)
	if err != nil || len(got.Events) != 1 || got.Events[0].Kind != store.Complained {
		t.Fatalf("%+v, %v", got, err)
	}
}
