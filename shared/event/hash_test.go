package event_test

import (
	"testing"

	"herald/shared/event"
)

func TestHashEmail(t *testing.T) {
	tests := []struct {
		in, normalized, hash string
	}{
		// Surrounding white space goes and letters are lower-cased.
		{"Test@Example.com ", "test@example.com", "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"},
		// Gmail dots and "+tag" suffixes are kept: Meta documents neither.
		{"\tAnn.Smith+Shop@GMAIL.com\n", "ann.smith+shop@gmail.com", ""},
		{"ÄNN@EXAMPLE.DE", "änn@example.de", ""},
	}
	for _, tc := range tests {
		if got := event.NormalizeEmail(tc.in); got != tc.normalized {
			t.Errorf("NormalizeEmail(%q) = %q, want %q", tc.in, got, tc.normalized)
		}
		got := event.HashEmail(tc.in)
		if tc.hash != "" && got != tc.hash {
			t.Errorf("HashEmail(%q) = %s, want %s", tc.in, got, tc.hash)
		}
		if got != event.HashEmail(tc.normalized) || len(got) != 64 {
			t.Errorf("HashEmail(%q) = %s, not the hash of its normal form", tc.in, got)
		}
	}
	if event.HashEmail("ann.smith@gmail.com") == event.HashEmail("annsmith@gmail.com") {
		t.Error("Gmail dots were removed")
	}
}

func TestValidEmail(t *testing.T) {
	for in, want := range map[string]bool{
		"ann@example.com":         true,
		`"odd@local"@example.com`: true,
		"":                        false,
		"no-at-sign":              false,
		"@example.com":            false,
		"ann@":                    false,
		"ann smith@example.com":   false,
		"ann\tsmith@example.com":  false,
	} {
		if got := event.ValidEmail(in); got != want {
			t.Errorf("ValidEmail(%q) = %v, want %v", in, got, want)
		}
	}
}
