// Command recommend picks the products for every recipient of the batches on
// the recommend topic and passes them on to render.
//
//	recommend [flags]           serve
//	recommend migrate [flags]   apply the database schema and exit
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"herald/recommend/internal/picker"
	"herald/shared/config"
	"herald/shared/event"
	"herald/shared/messaging"
	"herald/shared/service"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal ends the process at once
	}()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "recommend:", err)
		os.Exit(1)
	}
}

type settings struct {
	service.Common
	Receive messaging.ReceiveConfig
	Picker  picker.Config
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "migrate" {
		return service.Migrate(ctx, "recommend", args[1:], getenv, stdout)
	}
	var cfg settings
	set := config.New("recommend", getenv)
	cfg.Define(set, ":8081")
	set.Int(&cfg.Receive.Streams, "streams", "HERALD_STREAMS", 4, "Pub/Sub streaming pulls")
	set.Int(&cfg.Receive.MaxInFlight, "in-flight", "HERALD_IN_FLIGHT", 4, "batches handled at once per stream")
	set.Duration(&cfg.Picker.AssociationRefresh, "association-refresh", "HERALD_ASSOCIATION_REFRESH", 6*time.Hour,
		"how old item-to-item associations (co_purchase, co_view) may get before they are recomputed")
	if err := set.Parse(args); err != nil {
		return err
	}
	if cfg.Receive.Streams < 1 || cfg.Receive.MaxInFlight < 1 {
		return errors.New("-streams and -in-flight must be positive")
	}
	if cfg.Picker.AssociationRefresh < time.Minute {
		return errors.New("-association-refresh must be at least a minute")
	}
	cfg.Receive.Grace = cfg.Grace
	cfg.Receive.LeaseStep = 15 * time.Second
	p, err := service.Start(ctx, "recommend", cfg.Common, set, stdout, true)
	if err != nil {
		return err
	}
	defer p.Close()
	cfg.Receive.Registry = p.Registry
	if err := messaging.EnsureTopology(ctx, p.Pubsub, messaging.Recommend, messaging.Render); err != nil {
		return err
	}
	pub := messaging.NewPublisher(p.Pubsub, messaging.Render, event.Identity, p.Registry)
	defer pub.Stop()
	pick := picker.New(p.DB, pub, p.Registry, cfg.Picker)
	return p.Run(ctx, nil, func(ctx, workCtx context.Context) error {
		return messaging.Receive(ctx, workCtx, p.Pubsub, messaging.Recommend, cfg.Receive, p.Log, pick.Handle)
	})
}
