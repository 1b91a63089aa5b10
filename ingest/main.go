// Command ingest serves Herald's partner API and plans accepted jobs into
// recipient batches on the recommend topic.
//
//	ingest [flags]           serve
//	ingest migrate [flags]   apply the database schema and exit
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	_ "time/tzdata" // customers' time zones are checked against it

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"herald/ingest/internal/api"
	"herald/ingest/internal/feedback"
	"herald/ingest/internal/ops"
	"herald/ingest/internal/planner"
	"herald/ingest/internal/store"
	"herald/ingest/internal/triggers"
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
		fmt.Fprintln(os.Stderr, "ingest:", err)
		os.Exit(1)
	}
}

type settings struct {
	service.Common
	Planner           planner.Config
	Limits            api.Limits
	UnsubscribeSecret string
	WebhookSecret     string
	UploadDir         string
	OpsMetrics        string
	Triggers          triggers.Config
	Feedback          feedbackSettings
	Inbound           inboundSettings
}

// inboundSettings turn on the SMTP receiver of bounces and complaints sent
// to dispatch's VERP return paths.
type inboundSettings struct {
	Addr           string // empty: off
	ReturnDomain   string
	VERPSecret     string
	VERPSecretFile string
}

// feedbackSettings turn on the providers' feedback endpoints.
type feedbackSettings struct {
	SESTopics       string // comma-separated SNS topic ARNs
	SendGridKey     string // the Event Webhook verification key, base64 DER or PEM
	SendGridKeyFile string
	SoftBounceLimit int
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "migrate" {
		return service.Migrate(ctx, "ingest", args[1:], getenv, stdout)
	}
	var cfg settings
	set := config.New("ingest", getenv)
	cfg.Define(set, ":8080")
	set.Int(&cfg.Planner.BatchSize, "batch-size", "HERALD_BATCH_SIZE", 500, "recipients per batch message")
	set.Int(&cfg.Planner.ChunkBatches, "plan-chunk", "HERALD_PLAN_CHUNK", 20, "batches published between planning checkpoints")
	set.Int(&cfg.Planner.Workers, "planners", "HERALD_PLANNERS", 4, "jobs planned concurrently")
	set.Duration(&cfg.Planner.Lease, "plan-lease", "HERALD_PLAN_LEASE", 30*time.Second, "how long a planning task stays with a planner between checkpoints")
	set.Duration(&cfg.Planner.Poll, "plan-poll", "HERALD_PLAN_POLL", time.Second, "planner poll interval when no notification arrives")
	set.Duration(&cfg.Planner.Stall, "stall-after", "HERALD_STALL_AFTER", time.Minute, "how long a job may make no progress before its unfinished batches are published again")
	set.Int(&cfg.Planner.Window, "window", "HERALD_WINDOW", 64, "batches in flight in the whole pipeline at most")
	set.Int(&cfg.Planner.JobWindow, "job-window", "HERALD_JOB_WINDOW", 48, "batches in flight of one job at most (less than -window, so a new job always has room)")
	set.Duration(&cfg.Planner.ReleaseEvery, "release-every", "HERALD_RELEASE_EVERY", 100*time.Millisecond, "how often batches are released when no completion wakes the releaser")
	set.Int(&cfg.Planner.MaxPublishes, "max-publishes", "HERALD_MAX_PUBLISHES", 10, "publishes of one batch before the re-drives of a stalled job back off (doubling, and once after its deadline)")
	set.Duration(&cfg.Triggers.Poll, "trigger-poll", "HERALD_TRIGGER_POLL", 2*time.Second, "how often catalog changes (back in stock, price drop) are looked for")
	set.Int(&cfg.Triggers.Attempts, "trigger-attempts", "HERALD_TRIGGER_ATTEMPTS", 8, "how often acting on a catalog change may fail before it is parked")
	cfg.Limits = api.DefaultLimits
	set.Float(&cfg.Limits.TenantRate, "tenant-rate", "HERALD_TENANT_RATE", api.DefaultLimits.TenantRate, "partner API requests a second per tenant and replica (0: unlimited)")
	set.Int(&cfg.Limits.TenantBurst, "tenant-burst", "HERALD_TENANT_BURST", api.DefaultLimits.TenantBurst, "partner API requests a tenant may make at once above its rate")
	set.Int(&cfg.Limits.TenantUploads, "tenant-uploads", "HERALD_TENANT_UPLOADS", api.DefaultLimits.TenantUploads, "NDJSON uploads a tenant may have in progress at once per replica")
	set.Float(&cfg.Limits.Body.BytesPerSecond, "body-min-rate", "HERALD_BODY_MIN_RATE", api.DefaultLimits.Body.BytesPerSecond, "slowest a request body may arrive, in bytes a second after -body-grace (0: no minimum)")
	set.Duration(&cfg.Limits.Body.Grace, "body-grace", "HERALD_BODY_GRACE", api.DefaultLimits.Body.Grace, "how long a request body may take before -body-min-rate applies")
	set.String(&cfg.UploadDir, "upload-dir", "HERALD_UPLOAD_DIR", "", "directory for uploads' checked rows until they are stored (empty: the system's temporary directory)")
	set.Secret(&cfg.UnsubscribeSecret, "unsubscribe-secret", "HERALD_UNSUBSCRIBE_SECRET", "", "key that signs unsubscribe links, as render has it (at least 16 bytes)")
	set.String(&cfg.OpsMetrics, "ops-metrics", "HERALD_OPS_METRICS", "", "metrics URL of each stage for the ops page, e.g. recommend=http://recommend:8080/metrics,...")
	set.Secret(&cfg.WebhookSecret, "webhook-secret", "HERALD_WEBHOOK_SECRET", "", "shared secret of the ESP's bounce and complaint webhook (empty: webhook off)")
	set.String(&cfg.Feedback.SESTopics, "ses-topic-arns", "HERALD_SES_TOPIC_ARNS", "", "SNS topics SES event publishing writes to, comma-separated; their HTTPS subscription posts to /v1/webhooks/ses (empty: off)")
	set.String(&cfg.Feedback.SendGridKey, "sendgrid-public-key", "HERALD_SENDGRID_PUBLIC_KEY", "", "SendGrid Event Webhook verification key as SendGrid shows it; events post to /v1/webhooks/sendgrid (empty: off)")
	set.String(&cfg.Feedback.SendGridKeyFile, "sendgrid-public-key-file", "HERALD_SENDGRID_PUBLIC_KEY_FILE", "", "file holding the SendGrid verification key, instead of -sendgrid-public-key")
	set.Int(&cfg.Feedback.SoftBounceLimit, "soft-bounce-limit", "HERALD_SOFT_BOUNCE_LIMIT", api.DefaultSoftBounceLimit, "soft bounces in a row that suppress an address")
	set.String(&cfg.Inbound.Addr, "feedback-smtp-addr", "HERALD_FEEDBACK_SMTP_ADDR", "", "address of the SMTP receiver the return domain's MX points to, taking bounces and ARF reports for dispatch's VERP return paths, e.g. :2525 (empty: off)")
	set.String(&cfg.Inbound.ReturnDomain, "smtp-return-domain", "HERALD_SMTP_RETURN_DOMAIN", "", "domain of dispatch's VERP return paths bounce+<token>@domain, as dispatch has it")
	set.Secret(&cfg.Inbound.VERPSecret, "smtp-verp-secret", "HERALD_SMTP_VERP_SECRET", "", "secret that signs VERP tokens, as dispatch has it: a forged return path is refused before any lookup")
	set.String(&cfg.Inbound.VERPSecretFile, "smtp-verp-secret-file", "HERALD_SMTP_VERP_SECRET_FILE", "", "file holding the VERP secret, instead of -smtp-verp-secret")
	if err := set.Parse(args); err != nil {
		return err
	}
	signer, err := validate(cfg)
	if err != nil {
		return err
	}
	fb, err := feedbackConfig(cfg.Feedback)
	if err != nil {
		return err
	}
	returnPath, err := inboundReturnPath(cfg.Inbound, os.ReadFile)
	if err != nil {
		return err
	}
	p, err := service.Start(ctx, "ingest", cfg.Common, set, stdout, true)
	if err != nil {
		return err
	}
	defer p.Close()
	if err := messaging.EnsureTopology(ctx, p.Pubsub, messaging.Recommend); err != nil {
		return err
	}
	st := store.New(p.DB)
	if err := st.EnsurePartitions(ctx, time.Now()); err != nil {
		return err
	}
	pub := messaging.NewPublisher(p.Pubsub, messaging.Recommend, event.Identity, p.Registry)
	defer pub.Stop()
	plan := planner.New(p.DB, pub, p.Log, p.Registry, cfg.Planner)
	cfg.Triggers.MaxAudience = cfg.Limits.MaxAudienceIDs
	catalogTriggers := triggers.New(st, p.Log, p.Registry, cfg.Triggers)
	stages, err := parseStages(cfg.OpsMetrics)
	if err != nil {
		return err
	}
	routes := http.NewServeMux()
	routes.Handle("/", api.New(st, p.Log, p.Registry, api.Config{Limits: cfg.Limits, Unsubscribe: signer, WebhookSecret: cfg.WebhookSecret,
		UploadDir: cfg.UploadDir, Feedback: fb}).Handler())
	routes.Handle("/ops", ops.New(p.DB, stages, p.Log).Handler())
	routes.Handle("/ops/", ops.New(p.DB, stages, p.Log).Handler())
	traced := otelhttp.NewHandler(routes, "ingest", otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
		return r.Pattern // "POST /v1/jobs": the route, not the ids in the path
	}))
	loops := []service.Loop{plan.Run, plan.Release, plan.Redrive, catalogTriggers.Run}
	if returnPath != nil {
		in, err := newInbound(*returnPath, st, cfg.Feedback.SoftBounceLimit, p.Log)
		if err != nil {
			return err
		}
		l, err := net.Listen("tcp", cfg.Inbound.Addr)
		if err != nil {
			return fmt.Errorf("listen for inbound feedback: %w", err)
		}
		p.Log.InfoContext(ctx, "inbound feedback listening", "addr", l.Addr().String(), "return_domain", returnPath.Domain)
		loops = append(loops, in.Run(l))
	}
	return p.Run(ctx, traced, append(loops, func(ctx, _ context.Context) error {
		// The ledger partition for a day must exist before its first job.
		t := time.NewTicker(time.Hour)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case now := <-t.C:
				if err := st.EnsurePartitions(ctx, now); err != nil {
					p.Log.ErrorContext(ctx, "ensure ledger partitions", "error", err)
				}
			}
		}
	})...)
}

// inboundReturnPath reads the SMTP receiver's settings: the return path
// whose addresses it takes reports for, or nil when it is off.
func inboundReturnPath(s inboundSettings, readFile func(string) ([]byte, error)) (*event.ReturnPath, error) {
	secret, err := config.ValueOrFile("smtp-verp-secret", s.VERPSecret, s.VERPSecretFile, readFile)
	if err != nil {
		return nil, err
	}
	if s.Addr == "" {
		if s.ReturnDomain != "" || secret != "" {
			return nil, errors.New("-smtp-return-domain and -smtp-verp-secret need -feedback-smtp-addr")
		}
		return nil, nil
	}
	rp := event.ReturnPath{Domain: s.ReturnDomain, Secret: []byte(secret)}
	if err := rp.Validate(); err != nil {
		return nil, fmt.Errorf("-feedback-smtp-addr needs -smtp-return-domain and -smtp-verp-secret: %w", err)
	}
	return &rp, nil
}

// newInbound is the SMTP receiver of the return domain: it checks each
// return path's MAC, finds its delivery by the Message-ID hash, and
// applies the report to it. Its limits are feedback's defaults: messages
// of 10 MiB, 64 connections at once, 5 minutes a connection, a minute a
// read or write.
func newInbound(rp event.ReturnPath, st *store.Store, softLimit int, log *slog.Logger) (*feedback.Inbound, error) {
	return feedback.NewInbound(feedback.InboundConfig{
		Domain: rp.Domain,
		Key:    feedback.VERPKey(rp, st.DeliveryByMessageHash),
		Apply: func(ctx context.Context, f store.Feedback) (store.FeedbackResult, error) {
			return st.ApplyFeedback(ctx, f, softLimit)
		},
		Log: log,
	})
}

func validate(cfg settings) (*unsubscribe.Signer, error) {
	var errs []error
	if cfg.Planner.BatchSize < 1 || cfg.Planner.BatchSize > 5000 {
		errs = append(errs, errors.New("-batch-size must be between 1 and 5000"))
	}
	if cfg.Planner.ChunkBatches < 1 {
		errs = append(errs, errors.New("-plan-chunk must be positive"))
	}
	if cfg.Planner.Workers < 1 {
		errs = append(errs, errors.New("-planners must be positive"))
	}
	if cfg.Planner.Lease < 5*time.Second {
		errs = append(errs, errors.New("-plan-lease must be at least 5s"))
	}
	if cfg.Planner.Poll <= 0 {
		errs = append(errs, errors.New("-plan-poll must be positive"))
	}
	if cfg.Planner.Stall < 5*time.Second {
		errs = append(errs, errors.New("-stall-after must be at least 5s"))
	}
	if cfg.Planner.JobWindow < 1 || cfg.Planner.JobWindow >= cfg.Planner.Window {
		errs = append(errs, errors.New("-job-window must be positive and less than -window"))
	}
	if cfg.Planner.ReleaseEvery <= 0 {
		errs = append(errs, errors.New("-release-every must be positive"))
	}
	if cfg.Triggers.Poll <= 0 {
		errs = append(errs, errors.New("-trigger-poll must be positive"))
	}
	if cfg.Triggers.Attempts < 1 {
		errs = append(errs, errors.New("-trigger-attempts must be positive"))
	}
	if cfg.Planner.MaxPublishes < 1 {
		errs = append(errs, errors.New("-max-publishes must be positive"))
	}
	if cfg.Limits.TenantRate < 0 || cfg.Limits.TenantBurst < 1 {
		errs = append(errs, errors.New("-tenant-rate must not be negative and -tenant-burst must be positive"))
	}
	if cfg.Limits.TenantUploads < 1 {
		errs = append(errs, errors.New("-tenant-uploads must be positive"))
	}
	if cfg.Limits.Body.BytesPerSecond < 0 || cfg.Limits.Body.Grace < time.Second {
		errs = append(errs, errors.New("-body-min-rate must not be negative and -body-grace must be at least 1s"))
	}
	if cfg.WebhookSecret != "" && len(cfg.WebhookSecret) < 16 {
		errs = append(errs, errors.New("-webhook-secret must be at least 16 bytes"))
	}
	signer, err := unsubscribe.NewSigner([]byte(cfg.UnsubscribeSecret))
	if err != nil {
		errs = append(errs, fmt.Errorf("-unsubscribe-secret (HERALD_UNSUBSCRIBE_SECRET): %w", err))
	}
	return signer, errors.Join(errs...)
}

// feedbackConfig builds the verifiers of the feedback endpoints that are
// configured.
func feedbackConfig(s feedbackSettings) (api.FeedbackConfig, error) {
	var errs []error
	out := api.FeedbackConfig{SoftBounceLimit: s.SoftBounceLimit}
	if s.SoftBounceLimit < 1 {
		errs = append(errs, errors.New("-soft-bounce-limit must be positive"))
	}
	var topics []string
	for _, t := range strings.Split(s.SESTopics, ",") {
		if t = strings.TrimSpace(t); t != "" {
			topics = append(topics, t)
		}
	}
	if len(topics) > 0 {
		sns, err := feedback.NewSNS(feedback.SNSConfig{Topics: topics, Client: &http.Client{Timeout: 10 * time.Second}})
		if err != nil {
			errs = append(errs, fmt.Errorf("-ses-topic-arns: %w", err))
		}
		out.SNS = sns
	}
	key, err := config.ValueOrFile("sendgrid-public-key", s.SendGridKey, s.SendGridKeyFile, os.ReadFile)
	if err != nil {
		errs = append(errs, err)
	}
	if key != "" {
		sg, err := feedback.NewSendGrid(key, 0, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("-sendgrid-public-key: %w", err))
		}
		out.SendGrid = sg
	}
	return out, errors.Join(errs...)
}

// parseStages reads "recommend=http://recommend:8080/metrics,..." into the
// metrics URL of each stage the ops page shows.
func parseStages(spec string) (map[string]string, error) {
	stages := map[string]string{}
	for _, part := range strings.Split(spec, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		name, u, ok := strings.Cut(part, "=")
		if parsed, err := url.Parse(u); !ok || err != nil || parsed.Host == "" {
			return nil, fmt.Errorf("-ops-metrics %q: want stage=http://host:port/metrics", part)
		}
		stages[strings.TrimSpace(name)] = u
	}
	return stages, nil
}
