package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The binaries that ship: the four services and the edge (which the local
// stack runs in place of Istio's gateway, and which is built like them).
var shipped = []string{"herald/ingest", "herald/recommend", "herald/render", "herald/dispatch", "herald/deploy/edge"}

// devPackage reports whether pkg is development or test tooling, which no
// shipped binary may link: local servers, catchers, the test harness.
func devPackage(pkg string) bool {
	for _, prefix := range []string{"herald/devtools/", "herald/deploy/local", "herald/deploy/stack", "herald/e2e"} {
		if pkg == strings.TrimSuffix(prefix, "/") || strings.HasPrefix(pkg, prefix) {
			return true
		}
	}
	return false
}

// TestShippedBinariesLinkNoDevTooling keeps the test servers out of the
// services: shared/ holds only what they run on.
func TestShippedBinariesLinkNoDevTooling(t *testing.T) {
	for _, bin := range shipped {
		out, err := exec.CommandContext(t.Context(), "go", "list", "-deps", bin).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", bin, err)
		}
		for _, pkg := range strings.Fields(string(out)) {
			if devPackage(pkg) {
				t.Errorf("%s links %s, which is development tooling", bin, pkg)
			}
		}
	}
}

func TestDevPackage(t *testing.T) {
	for pkg, want := range map[string]bool{
		"herald/devtools/mailcatch": true, "herald/deploy/stack": true, "herald/e2e": true,
		"herald/shared/messaging": false, "herald/deploy/edge": false,
	} {
		if got := devPackage(pkg); got != want {
			t.Errorf("devPackage(%q) = %v, want %v", pkg, got, want)
		}
	}
}
