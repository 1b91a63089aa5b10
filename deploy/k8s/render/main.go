// Command render writes Herald's overlays as plain YAML, one file per
// overlay, for tools that read manifests rather than kustomizations
// (istioctl validate and analyze, see ../istioctl.sh):
//
//	go run ./deploy/k8s/render -out DIR [overlay...]
//
// With no overlay named it renders them all. It renders with the same
// kustomize Go API, and checks with the same strict decoding and
// cross-checks, as the manifest tests: what it writes has passed them.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"herald/deploy/k8s"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("render", flag.ContinueOnError)
	out := fs.String("out", "", "directory to write <overlay>.yaml into (required)")
	dir := fs.String("dir", "deploy/k8s", "directory holding base/, components/ and overlays/")
	root := fs.String("root", ".", "the Herald checkout, for the cross-checks against the code")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("-out is required")
	}
	overlays := fs.Args()
	if len(overlays) == 0 {
		var err error
		if overlays, err = k8s.Overlays(*dir); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, o := range overlays {
		b, err := k8s.Render(filepath.Join(*dir, "overlays", o))
		if err != nil {
			return err
		}
		objs, err := k8s.Decode(b)
		if err != nil {
			return fmt.Errorf("overlay %s: %w", o, err)
		}
		if err := k8s.Check(objs, *root); err != nil {
			return fmt.Errorf("overlay %s: %w", o, err)
		}
		if err := os.WriteFile(filepath.Join(*out, o+".yaml"), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
