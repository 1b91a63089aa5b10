// Command local runs Herald on this machine with real parts.
//
//	local demo    start everything, load a demo retailer, send a Black
//	              Friday job to 100,000 customers with a progress bar, print
//	              the outcome, and keep running until Ctrl-C
//	local bench   the same on a 1,000,000-recipient job against a counting
//	              SMTP sink; prints throughput, CPU and memory per service,
//	              and submit-to-delivered latency
//	local promtool
//	              print the path of the promtool tools/go.mod pins,
//	              building it first if this machine has none
//	local env -- CMD...
//	              start PostgreSQL and the Pub/Sub emulator, run CMD with
//	              HERALD_TEST_DATABASE_URL and PUBSUB_EMULATOR_HOST set,
//	              then stop them (make test runs the tests this way)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"herald/deploy/stack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "local:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: local demo|bench|env|promtool [flags]")
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	switch args[0] {
	case "demo":
		return demo(ctx, args[1:], stdout, stderr, log)
	case "bench":
		return bench(ctx, args[1:], stdout, stderr, log)
	case "env":
		return env(ctx, args[1:], stderr, log)
	case "promtool":
		root, err := stack.ModuleRoot()
		if err != nil {
			return err
		}
		bin, err := preparePromtool(ctx, root, stderr)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, bin)
		return nil
	default:
		return fmt.Errorf("unknown command %q: want demo, bench, env or promtool", args[0])
	}
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}
