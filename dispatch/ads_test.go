package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"herald/devtools/adcatch"
	"herald/dispatch/internal/adsout"
	"herald/dispatch/internal/provider"
)

// TestAdsTokenFromFile builds the ad channel as run does, its token in a
// file as a mounted Secret gives it, and adds someone to an audience at
// the local Meta API; a token given twice, or in an empty file, is refused.
func TestAdsTokenFromFile(t *testing.T) {
	meta, err := adcatch.Start(t.Context(), adcatch.Options{AccessToken: "EAAB-from-file", AdAccountID: "77"})
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close()
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("EAAB-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var cfg settings
	cfg.Ads = adsout.Config{GraphURL: meta.URL(), AdAccountID: "77"}
	cfg.AdsTokenFile = file
	ads, err := newAds(cfg, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	msg := &provider.Message{Key: "acme/j/ad/ann", To: "ann@example.com", Body: adsout.Body(adsout.Payload{Audience: "herald-acme-bf"})}
	if res := ads.Send(t.Context(), []*provider.Message{msg})[0]; res.Outcome != provider.Sent || len(meta.Members("herald-acme-bf")) != 1 {
		t.Errorf("result %+v, members %v", res, meta.Members("herald-acme-bf"))
	}

	cfg.Ads.AccessToken = "EAAB-also-a-flag"
	if _, err := newAds(cfg, os.ReadFile); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("a token twice: %v", err)
	}
	cfg.Ads.AccessToken = ""
	if err := os.WriteFile(file, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newAds(cfg, os.ReadFile); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("an empty token file: %v", err)
	}
}
