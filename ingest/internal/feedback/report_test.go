package feedback_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"herald/ingest/internal/feedback"
	"herald/ingest/internal/store"
	"herald/shared/event"
)

// The samples' return path, and the decoder standing in for the VERP
// codec: it knows that one address.
const sampleReturnPath = "bounce+aaaa@bounces.acme.example"

func sampleDecoder(returnPath string) (event.DeliveryKey, error) {
	if strings.EqualFold(returnPath, sampleReturnPath) {
		return sampleKey, nil
	}
	return event.DeliveryKey{}, fmt.Errorf("%q is not a return path of ours", returnPath)
}

func smtpReport(id string, kind store.FeedbackKind) store.Feedback {
	return store.Feedback{Provider: feedback.ProviderSMTP, EventID: id, Key: sampleKey, Kind: kind}
}

func TestParseReport(t *testing.T) {
	tests := []struct {
		sample     string
		returnPath string
		want       feedback.Batch
	}{
		{"dsn-hard-bounce.eml", sampleReturnPath, feedback.Batch{Events: []store.Feedback{
			smtpReport("20261127081408.7F3A1C0042@mx1.example.net/ada@example.net", store.Bounced)}}},
		{"dsn-delayed.eml", "<" + sampleReturnPath + ">", feedback.Batch{Events: []store.Feedback{
			smtpReport("delay-1764317647-0042@relay.example.org/ada@example.net", store.SoftBounce)}}},
		{"dsn-several.eml", sampleReturnPath, feedback.Batch{Events: []store.Feedback{
			smtpReport("dsn.0001.4411@mail.example.com/first@example.com", store.SoftBounce),
			smtpReport("dsn.0001.4411@mail.example.com/third@example.com", store.Delivered),
		}, Ignored: 1}},
		// A DSN to an address that is not a return path of ours names no
		// delivery.
		{"dsn-hard-bounce.eml", "postmaster@bounces.acme.example", feedback.Batch{Unkeyed: []feedback.Unkeyed{{
			EventID: "20261127081408.7F3A1C0042@mx1.example.net/ada@example.net",
			Reason:  `"postmaster@bounces.acme.example" is not a return path of ours`}}}},
		// A feedback loop's report to its own address: Original-Mail-From.
		{"arf-abuse.eml", "abuse@bounces.acme.example", feedback.Batch{Events: []store.Feedback{
			smtpReport("fbl-7a1b2c3d-1764351612@fbl.example.com/ada@example.net", store.Complained)}}},
		// …or the enclosed headers' Return-Path.
		{"arf-headers-only.eml", "fbl-reports@acme.example", feedback.Batch{Events: []store.Feedback{
			smtpReport("arf-2@isp.example", store.Complained)}}},
		{"arf-not-spam.eml", sampleReturnPath, feedback.Batch{Ignored: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.sample+" to "+tt.returnPath, func(t *testing.T) {
			got, err := feedback.ParseReport(readSample(t, tt.sample), tt.returnPath, sampleDecoder)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("batch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseReportReadsCRLF(t *testing.T) {
	raw := bytes.ReplaceAll(readSample(t, "dsn-hard-bounce.eml"), []byte("\n"), []byte("\r\n"))
	got, err := feedback.ParseReport(raw, sampleReturnPath, sampleDecoder)
	if err != nil || len(got.Events) != 1 || got.Events[0].Kind != store.Bounced {
		t.Fatalf("%+v, %v", got, err)
	}
}

func TestParseReportWithoutMessageIDKeepsOneIDPerReport(t *testing.T) {
	raw := bytes.Replace(readSample(t, "dsn-hard-bounce.eml"), []byte("Message-ID: <20261127081408.7F3A1C0042@mx1.example.net>\n"), nil, 1)
	a, err := feedback.ParseReport(raw, sampleReturnPath, sampleDecoder)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := feedback.ParseReport(raw, sampleReturnPath, sampleDecoder)
	if len(a.Events) != 1 || !strings.HasPrefix(a.Events[0].EventID, "sha256:") || a.Events[0].EventID != b.Events[0].EventID {
		t.Fatalf("event ids %+v and %+v", a.Events, b.Events)
	}
}

func TestParseReportRefusesMalformedReports(t *testing.T) {
	for _, sample := range []string{
		"bad-plain-bounce.eml",         // not multipart/report
		"bad-no-boundary.eml",          // multipart without a boundary
		"bad-dsn-no-status.eml",        // a recipient without Status
		"bad-dsn-status-code.eml",      // Status 550 is an SMTP code, not x.y.z
		"bad-dsn-truncated.eml",        // cut off inside the delivery status
		"bad-dsn-no-reporting-mta.eml", // no per-message fields
		"bad-arf-no-type.eml",          // no Feedback-Type
		"ses-bounce-permanent.json",    // not a message at all
	} {
		if b, err := feedback.ParseReport(readSample(t, sample), sampleReturnPath, sampleDecoder); !errors.Is(err, feedback.ErrMalformed) {
			t.Errorf("%s: %+v, %v; want ErrMalformed", sample, b, err)
		}
	}
	// A delivery-status report whose status part is missing.
	raw := bytes.Replace(readSample(t, "dsn-hard-bounce.eml"), []byte("Content-Type: message/delivery-status"), []byte("Content-Type: text/plain"), 1)
	if _, err := feedback.ParseReport(raw, sampleReturnPath, sampleDecoder); !errors.Is(err, feedback.ErrMalformed) {
		t.Errorf("no delivery-status part: %v", err)
	}
}
