package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"

	"herald/deploy/stack"
	"herald/devtools/devpg"
	"herald/devtools/devpubsub"
	"herald/devtools/testenv"
)

// env checks that the machine has what the tests need (installing what it
// can), starts PostgreSQL and the Pub/Sub emulator, runs a command that uses
// them, and stops them again.
func env(ctx context.Context, args []string, stderr io.Writer, log *slog.Logger) error {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		return errors.New("usage: local env -- COMMAND [ARGS...]")
	}
	if err := prepare(ctx, stderr, os.Getenv); err != nil {
		return err
	}
	root, err := stack.ModuleRoot()
	if err != nil {
		return err
	}
	promtool := os.Getenv("PROMTOOL")
	if promtool == "" {
		if promtool, err = preparePromtool(ctx, root, stderr); err != nil {
			return err
		}
	}
	pg, err := devpg.Start(ctx, devpg.Options{Log: log})
	if err != nil {
		return err
	}
	defer pg.Stop()
	ps, err := devpubsub.Start(ctx, devpubsub.Options{Log: log, RequireEmulator: os.Getenv("CI") == "true"})
	if err != nil {
		return err
	}
	defer ps.Stop()
	fmt.Fprintf(stderr, "PostgreSQL at %s, Pub/Sub %s at %s\n", pg.URL("postgres"), ps.Kind(), ps.Host())
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr, cmd.Stdin = os.Stdout, os.Stderr, os.Stdin
	cmd.Env = append(os.Environ(),
		testenv.EnvDatabaseURL+"="+pg.URL("postgres"),
		testenv.EnvPubsubHost+"="+ps.Host(),
		"PROMTOOL="+promtool,
	)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	return nil
}
