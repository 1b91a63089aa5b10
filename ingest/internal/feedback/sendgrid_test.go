package feedback_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"herald/ingest/internal/feedback"
	"herald/ingest/internal/feedback/feedbacktest"
	"herald/ingest/internal/store"
	"herald/shared/event"
)

func TestSendGridSignature(t *testing.T) {
	account := feedbacktest.NewSendGrid(t)
	now := time.Unix(1764231300, 0)
	v, err := feedback.NewSendGrid(account.PublicKey, 0, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	body := readSample(t, "sendgrid-events.json")
	sig, ts := account.Sign(body, now)
	other := feedbacktest.NewSendGrid(t)
	forged, _ := other.Sign(body, now)
	oldSig, oldTS := account.Sign(body, now.Add(-time.Hour))
	futureSig, futureTS := account.Sign(body, now.Add(time.Hour))
	tampered := append([]byte(nil), body...)
	tampered[len(tampered)-3] = ' '

	tests := []struct {
		name          string
		signature, ts string
		body          []byte
		ok            bool
	}{
		{"signed by the account", sig, ts, body, true},
		{"unsigned", "", "", body, false},
		{"no timestamp", sig, "", body, false},
		{"signed by another key", forged, ts, body, false},
		{"a body changed after signing", sig, ts, tampered, false},
		{"a signature moved to another timestamp", sig, oldTS, body, false},
		{"replayed an hour later", oldSig, oldTS, body, false},
		{"signed an hour ahead", futureSig, futureTS, body, false},
		{"a timestamp that is not one", sig, "now", body, false},
		{"a signature that is not base64", "%%%", ts, body, false},
	}
	for _, tt := range tests {
		err := v.Verify(tt.signature, tt.ts, tt.body)
		if tt.ok && err != nil {
			t.Errorf("%s: refused: %v", tt.name, err)
		}
		if !tt.ok && !errors.Is(err, feedback.ErrSignature) {
			t.Errorf("%s: err = %v, want ErrSignature", tt.name, err)
		}
	}
}

func TestSendGridKeyIsWhatSendGridShows(t *testing.T) {
	account := feedbacktest.NewSendGrid(t)
	der, _ := base64.StdEncoding.DecodeString(account.PublicKey)
	pemKey := "-----BEGIN PUBLIC KEY-----\n" + base64.StdEncoding.EncodeToString(der) + "\n-----END PUBLIC KEY-----\n"
	for _, k := range []string{account.PublicKey, account.PublicKey + "\n", pemKey} {
		if _, err := feedback.ParseSendGridKey(k); err != nil {
			t.Errorf("%q: %v", k, err)
		}
	}
	spki := func(pub any) string {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(der)
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for _, k := range []string{"", "not base64!", base64.StdEncoding.EncodeToString([]byte("not DER")),
		spki(&rsaKey.PublicKey), spki(&p384.PublicKey)} {
		if _, err := feedback.ParseSendGridKey(k); err == nil {
			t.Errorf("%q accepted", k)
		}
	}
}

func TestParseSendGrid(t *testing.T) {
	got, err := feedback.ParseSendGrid(readSample(t, "sendgrid-events.json"))
	if err != nil {
		t.Fatal(err)
	}
	sg := func(id string, kind store.FeedbackKind) store.Feedback {
		return store.Feedback{Provider: feedback.ProviderSendGrid, EventID: id, Key: sampleKey, Kind: kind}
	}
	want := feedback.Batch{
		Events: []store.Feedback{
			sg("ZGVsaXZlcmVkLTAwMDE", store.Delivered),
			sg("Ym91bmNlLTAwMDE", store.Bounced),
			sg("YmxvY2tlZC0wMDAx", store.SoftBounce),
			sg("ZGVmZXJyZWQtMDAwMQ", store.SoftBounce),
			sg("ZHJvcHBlZC0wMDAx", store.Bounced),
			sg("c3BhbXJlcG9ydC0wMDAx", store.Complained),
		},
		Unkeyed: []feedback.Unkeyed{
			{EventID: "Ym91bmNlLTAwMDI", Reason: "no herald_tenant and herald_delivery tags"},
			{EventID: "Ym91bmNlLTAwMDM", Reason: `tenant tag "YWNtZSBjb3Jw" does not hold a tenant id`},
		},
		Ignored: 3, // processed, dropped for an unsubscribed address, open
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("batch (-want +got):\n%s", diff)
	}
}

func TestParseSendGridReadsTheCustomArgsHeraldSets(t *testing.T) {
	tenant, delivery, _ := sampleKey.Tags()
	body, _ := json.Marshal([]map[string]any{{"event": "spamreport", "sg_event_id": "e1", event.TagTenant: tenant, event.TagDelivery: delivery}})
	got, err := feedback.ParseSendGrid(body)
	if err != nil || len(got.Events) != 1 || got.Events[0].Key != sampleKey {
		t.Fatalf("custom args %s, %s not read: %+v, %v", event.TagTenant, event.TagDelivery, got, err)
	}
}

func TestParseSendGridRefusesMalformedBodies(t *testing.T) {
	for _, body := range []string{"", "{}", `{"event":"bounce"}`, `[{"event":"bounce","sg_event_id":7}]`, `[1, 2]`, `[{"event":"delivered"}`} {
		if b, err := feedback.ParseSendGrid([]byte(body)); !errors.Is(err, feedback.ErrMalformed) {
			t.Errorf("%q: %+v, %v; want ErrMalformed", body, b, err)
		}
	}
	b, err := feedback.ParseSendGrid([]byte(`[{"event":"bounce","type":"bounce","herald_tenant":"YWNtZQ","herald_delivery":"C59aTjwdToqfABI0VniQq2VjLTQy"}]`))
	if err != nil || len(b.Unkeyed) != 1 || len(b.Events) != 0 {
		t.Errorf("an event without sg_event_id: %+v, %v; want it unkeyed", b, err)
	}
}
