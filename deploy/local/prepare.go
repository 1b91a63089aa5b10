package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// A prerequisite is a program the tests run and how a machine gets it.
type prerequisite struct {
	what    string   // what it is, for people
	bins    []string // every one must be on PATH
	apt     string   // the Debian package that brings them, "" if none does
	install string   // the one command that installs it
	// needed reports whether this run needs it; nil means always.
	needed func(getenv func(string) string) bool
}

// testPrerequisites are what `make test` needs beyond Go. PostgreSQL and
// the emulator are the servers the tests run against; Chromium renders the
// ops page in its e2e test. promtool is not here: it is pinned in
// tools/go.mod and built from the Go module proxy (see preparePromtool).
var testPrerequisites = []prerequisite{
	{
		what: "PostgreSQL 15's server programs", bins: []string{"initdb", "pg_ctl", "postgres"},
		install: "apt-get install postgresql-15 (then put /usr/lib/postgresql/15/bin on PATH)",
	},
	{
		what: "the Google Cloud SDK with its Pub/Sub emulator", bins: []string{"gcloud", "java"},
		install: "gcloud components install pubsub-emulator (or apt-get install google-cloud-cli-pubsub-emulator)",
		// Off CI, Google's in-process fake stands in.
		needed: func(getenv func(string) string) bool { return getenv("CI") == "true" },
	},
	{
		what: "Chromium, for the ops page's browser test", bins: []string{"chromium"},
		apt: "chromium", install: "apt-get install --no-install-recommends chromium",
	},
}

// missing lists the prerequisites whose programs are not all on PATH.
func missing(reqs []prerequisite, getenv func(string) string, lookPath func(string) (string, error)) []prerequisite {
	var out []prerequisite
	for _, r := range reqs {
		if r.needed != nil && !r.needed(getenv) {
			continue
		}
		for _, bin := range r.bins {
			if _, err := lookPath(bin); err != nil {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

// prepare makes sure the tests' prerequisites are on this machine before
// anything starts. What Debian packages and root with apt can install is
// installed; anything else stops the run at once with one message naming
// each missing part and the command that installs it.
func prepare(ctx context.Context, stderr io.Writer, getenv func(string) string) error {
	lack := missing(testPrerequisites, getenv, exec.LookPath)
	var apt []string
	for _, r := range lack {
		if r.apt != "" {
			apt = append(apt, r.apt)
		}
	}
	if len(apt) > 0 && canApt() {
		fmt.Fprintf(stderr, "installing %s from Debian's packages (once per machine)…\n", strings.Join(apt, ", "))
		if err := aptInstall(ctx, apt); err != nil {
			return err
		}
		lack = missing(testPrerequisites, getenv, exec.LookPath)
	}
	if len(lack) == 0 {
		return nil
	}
	var msg strings.Builder
	msg.WriteString("the tests need what this machine lacks:")
	for _, r := range lack {
		fmt.Fprintf(&msg, "\n  %s (%s): %s", r.what, strings.Join(r.bins, ", "), r.install)
	}
	return errors.New(msg.String())
}

// canApt reports whether this process may install Debian packages itself.
func canApt() bool {
	if os.Geteuid() != 0 {
		return false
	}
	_, err := exec.LookPath("apt-get")
	return err == nil
}

// aptInstall installs packages, refreshing the package lists first only if
// the install fails without it (a new machine has none).
func aptInstall(ctx context.Context, pkgs []string) error {
	install := func() ([]byte, error) {
		args := append([]string{"install", "-y", "-q", "--no-install-recommends"}, pkgs...)
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	if _, err := install(); err == nil {
		return nil
	}
	if out, err := exec.CommandContext(ctx, "apt-get", "update", "-q").CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get update: %w\n%s", err, tailOf(out))
	}
	if out, err := install(); err != nil {
		return fmt.Errorf("apt-get install %s: %w\n%s", strings.Join(pkgs, " "), err, tailOf(out))
	}
	return nil
}

// preparePromtool returns a promtool at the version tools/go.mod pins,
// building it from the Go module proxy into the user's cache directory the
// first time (a few minutes on two cores; once per machine and version).
// It is built without Prometheus's service-discovery plugins, which rule
// checks never use and which are half of its build.
func preparePromtool(ctx context.Context, root string, stderr io.Writer) (string, error) {
	version, err := pinnedVersion(filepath.Join(root, "tools", "go.mod"), "github.com/prometheus/prometheus")
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(cache, "herald", "promtool-"+version, "promtool")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	fmt.Fprintf(stderr, "building promtool %s, pinned in tools/go.mod, into %s (a few minutes, once per machine)…\n", version, filepath.Dir(bin))
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	tmp := bin + ".building"
	var errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags", "remove_all_sd", "-o", tmp, "github.com/prometheus/prometheus/cmd/promtool")
	cmd.Dir = filepath.Join(root, "tools")
	cmd.Stdout, cmd.Stderr = &errOut, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build promtool: %w\n%s", err, tailOf(errOut.Bytes()))
	}
	return bin, os.Rename(tmp, bin)
}

// pinnedVersion reads the version of module mod that a go.mod requires.
func pinnedVersion(gomod, mod string) (string, error) {
	b, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		if len(f) >= 2 && f[0] == mod {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("%s does not require %s", gomod, mod)
}

func tailOf(b []byte) []byte {
	const n = 2000
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
