package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
)

func TestFeedbackConfigTurnsOnWhatIsConfigured(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	key := base64.StdEncoding.EncodeToString(der)
	keyFile := filepath.Join(t.TempDir(), "sendgrid.pub")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	topic := "arn:aws:sns:us-east-1:123456789012:herald-ses-events"

	off, err := feedbackConfig(feedbackSettings{SoftBounceLimit: 3})
	if err != nil || off.SNS != nil || off.SendGrid != nil {
		t.Fatalf("nothing configured: %+v, %v", off, err)
	}
	on, err := feedbackConfig(feedbackSettings{SESTopics: topic + ", " + topic, SendGridKeyFile: keyFile, SoftBounceLimit: 5})
	if err != nil || on.SNS == nil || on.SendGrid == nil || on.SoftBounceLimit != 5 {
		t.Fatalf("both configured: %+v, %v", on, err)
	}
	for name, s := range map[string]feedbackSettings{
		"a soft-bounce limit of 0":     {SoftBounceLimit: 0},
		"a topic that is not an ARN":   {SESTopics: "herald-ses-events", SoftBounceLimit: 3},
		"a key that is not one":        {SendGridKey: "c2VjcmV0", SoftBounceLimit: 3},
		"a key file that is missing":   {SendGridKeyFile: filepath.Join(t.TempDir(), "none"), SoftBounceLimit: 3},
		"a key and a key file at once": {SendGridKey: key, SendGridKeyFile: keyFile, SoftBounceLimit: 3},
	} {
		if _, err := feedbackConfig(s); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
