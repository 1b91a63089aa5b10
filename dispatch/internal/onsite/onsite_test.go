package onsite

import "testing"

// The inbox's name is what the ledger records as the provider of every
// onsite delivery, and the kind tenants name it by: both stay "onsite".
func TestNameIsTheOnsiteKind(t *testing.T) {
	if got := New(nil).Name(); got != "onsite" {
		t.Fatalf("Name() = %q, want %q", got, "onsite")
	}
}
