package mailbox_test

import (
	"testing"

	"herald/dispatch/internal/mailbox"
)

func TestOf(t *testing.T) {
	rules, err := mailbox.Parse("gmail=gmail.example;corp=.corp.example")
	if err != nil {
		t.Fatal(err)
	}
	c := mailbox.New(rules)
	for addr, want := range map[string]string{
		"a@gmail.com":            "gmail",
		"a@GoogleMail.com":       "gmail",
		"a@gmail.example":        "gmail",
		"a@hotmail.co.uk":        "outlook",
		"a@corp.example":         "corp",
		"a@eu.mail.corp.example": "corp",
		"a@notcorp.example":      mailbox.Other,
		"a@example.org":          mailbox.Other,
	} {
		if got := c.Of(addr); got != want {
			t.Errorf("Of(%q) = %q, want %q", addr, got, want)
		}
	}
	if _, err := mailbox.Parse("gmail"); err == nil {
		t.Error("a rule without domains was accepted")
	}
	if _, err := mailbox.ParseRates("gmail=0"); err == nil {
		t.Error("a zero rate was accepted")
	}
}
