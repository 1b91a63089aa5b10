package tenantid

import (
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"acme", true},
		{"Acme-2.eu_west", true},
		{"0", true},
		{strings.Repeat("a", MaxLen), true},
		{"", false},
		{strings.Repeat("a", MaxLen+1), false},
		{" acme", false},
		{"acme ", false},
		{"acme\t", false},
		{"\tacme", false},
		{"ac me", false},
		{"acme\n", false},
		{"-acme", false},
		{".acme", false},
		{"_acme", false},
		{"acme/x", false},
		{"acmé", false},
		{"acme\x00", false},
	}
	for _, tc := range tests {
		if got := Valid(tc.id); got != tc.want {
			t.Errorf("Valid(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}
