// Command render renders every recipient's message for the batches on the
// render topic and passes them, compressed, to dispatch.
//
//	render [flags]           serve
//	render migrate [flags]   apply the database schema and exit
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"herald/render/internal/renderer"
	"herald/shared/config"
	"herald/shared/event"
	"herald/shared/messaging"
	"herald/shared/service"
	"herald/shared/unsubscribe"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal ends the process at once
	}()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}

type settings struct {
	service.Common
	Receive           messaging.ReceiveConfig
	PublicURL         string
	UnsubscribeSecret string
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "migrate" {
		return service.Migrate(ctx, "render", args[1:], getenv, stdout)
	}
	var cfg settings
	set := config.New("render", getenv)
	cfg.Define(set, ":8082")
	set.Int(&cfg.Receive.Streams, "streams", "HERALD_STREAMS", 4, "Pub/Sub streaming pulls")
	set.Int(&cfg.Receive.MaxInFlight, "in-flight", "HERALD_IN_FLIGHT", 2, "batches handled at once per stream")
	set.String(&cfg.PublicURL, "public-url", "HERALD_PUBLIC_URL", "", "base URL of the public endpoints (one-click unsubscribe) as recipients reach them")
	set.Secret(&cfg.UnsubscribeSecret, "unsubscribe-secret", "HERALD_UNSUBSCRIBE_SECRET", "", "key that signs unsubscribe links (at least 16 bytes)")
	if err := set.Parse(args); err != nil {
		return err
	}
	signer, err := validate(cfg)
	if err != nil {
		return err
	}
	cfg.Receive.Grace = cfg.Grace
	cfg.Receive.LeaseStep = 15 * time.Second
	p, err := service.Start(ctx, "render", cfg.Common, set, stdout, true)
	if err != nil {
		return err
	}
	defer p.Close()
	cfg.Receive.Registry = p.Registry
	if err := messaging.EnsureTopology(ctx, p.Pubsub, messaging.Render, messaging.Dispatch); err != nil {
		return err
	}
	pub := messaging.NewPublisher(p.Pubsub, messaging.Dispatch, event.Zstd, p.Registry)
	defer pub.Stop()
	r := renderer.New(p.DB, pub, p.Log, p.Registry, renderer.Config{PublicURL: cfg.PublicURL, Signer: signer})
	return p.Run(ctx, nil, func(ctx, workCtx context.Context) error {
		return messaging.Receive(ctx, workCtx, p.Pubsub, messaging.Render, cfg.Receive, p.Log, r.Handle)
	})
}

func validate(cfg settings) (*unsubscribe.Signer, error) {
	var errs []error
	if cfg.Receive.Streams < 1 || cfg.Receive.MaxInFlight < 1 {
		errs = append(errs, errors.New("-streams and -in-flight must be positive"))
	}
	if u, err := url.Parse(cfg.PublicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errs = append(errs, errors.New("-public-url (HERALD_PUBLIC_URL) must be an absolute http(s) URL"))
	}
	signer, err := unsubscribe.NewSigner([]byte(cfg.UnsubscribeSecret))
	if err != nil {
		errs = append(errs, fmt.Errorf("-unsubscribe-secret (HERALD_UNSUBSCRIBE_SECRET): %w", err))
	}
	return signer, errors.Join(errs...)
}
