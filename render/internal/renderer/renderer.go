// Package email renders the email of every recipient of a batch from the
// job's template and the products picked for them, and publishes the
// finished messages, compressed, to dispatch.
package email

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/mail"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"herald/shared/emailtemplate"
	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
	"herald/shared/messaging"
	"herald/shared/unsubscribe"
)

//go:embed sql/template.sql
var templateSQL string

// Publisher is where rendered batches go.
type Publisher interface {
	Publish(ctx context.Context, b event.Batch, traceparent string) (*pubsub.PublishResult, error)
}

// Config says how links in messages are built.
type Config struct {
	// PublicURL is the base of the public endpoints (one-click unsubscribe)
	// as recipients reach them.
	PublicURL string
	Signer    *unsubscribe.Signer
}

// Renderer handles render batches.
type Renderer struct {
	db        *pgxpool.Pool
	pub       Publisher
	log       *slog.Logger
	cfg       Config
	templates sync.Map // templateKey -> *compiled
	now       func() time.Time
	rendered  *prometheus.CounterVec
}

// New returns a renderer.
func New(db *pgxpool.Pool, pub Publisher, log *slog.Logger, reg prometheus.Registerer, cfg Config) *Renderer {
	f := promauto.With(reg)
	return &Renderer{
		db: db, pub: pub, log: log, cfg: cfg, now: time.Now,
		rendered: f.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_render_messages_total", Help: "Messages rendered, by outcome (ok, failed).",
		}, []string{"outcome"}),
	}
}

type templateKey struct {
	tenant, id string
	version    int32
}

// compiled is a parsed template with the tenant's brand.
type compiled struct {
	tmpl  *emailtemplate.Template
	brand emailtemplate.Brand
	// domain is the sender's domain, used in Message-IDs.
	domain string
}

// errNoTemplate means a job's template version is gone; every recipient of
// the batch fails with that reason.
var errNoTemplate = errors.New("template version not found")

// template returns the job's compiled template; templates are immutable per
// version, so a compiled one is cached for the life of the process.
func (r *Renderer) template(ctx context.Context, job *eventv1.Job) (*compiled, error) {
	key := templateKey{job.TenantId, job.TemplateId, job.TemplateVersion}
	if c, ok := r.templates.Load(key); ok {
		return c.(*compiled), nil
	}
	var src emailtemplate.Source
	var b emailtemplate.Brand
	err := r.db.QueryRow(ctx, templateSQL, key.tenant, key.id, key.version).Scan(&src.FromName, &src.FromEmail,
		&src.Subject, &src.Preheader, &src.HTML, &src.Text, &b.Name, &b.URL, &b.LogoURL, &b.HeroURL, &b.Address)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errNoTemplate
	}
	if err != nil {
		return nil, fmt.Errorf("load template: %w", err)
	}
	t, err := emailtemplate.Parse(src)
	if err != nil {
		return nil, fmt.Errorf("parse stored template %s v%d: %w", key.id, key.version, err)
	}
	c := &compiled{tmpl: t, brand: b, domain: src.FromEmail[strings.LastIndexByte(src.FromEmail, '@')+1:]}
	r.templates.Store(key, c)
	return c, nil
}

// Handle renders one batch and publishes it to dispatch; it returns only
// after Pub/Sub has the result.
func (r *Renderer) Handle(ctx context.Context, m *pubsub.Message) error {
	var in eventv1.RenderBatch
	if err := event.Decode(m.Data, m.Attributes, &in); err != nil {
		return err
	}
	out, err := r.Render(ctx, &in)
	if err != nil {
		return err
	}
	results, err := r.publish(ctx, out, m.Attributes[event.AttrTraceparent])
	if err != nil {
		return err
	}
	for _, res := range results {
		if _, err := res.Get(ctx); err != nil {
			return fmt.Errorf("publish dispatch batch: %w", err)
		}
	}
	var ok, failed int
	for _, msg := range out.Messages {
		if msg.Error != "" {
			failed++
		} else {
			ok++
		}
	}
	r.rendered.WithLabelValues("ok").Add(float64(ok))
	r.rendered.WithLabelValues("failed").Add(float64(failed))
	return nil
}

// publish sends b, halving it until each part fits in a message. Parts
// share the batch's seq; dispatch serializes them on the same batch lock.
func (r *Renderer) publish(ctx context.Context, b *eventv1.DispatchBatch, traceparent string) ([]*pubsub.PublishResult, error) {
	res, err := r.pub.Publish(ctx, b, traceparent)
	if errors.Is(err, messaging.ErrTooLarge) && len(b.Messages) > 1 {
		half := len(b.Messages) / 2
		left, err := r.publish(ctx, &eventv1.DispatchBatch{Job: b.Job, From: b.From, Messages: b.Messages[:half]}, traceparent)
		if err != nil {
			return nil, err
		}
		right, err := r.publish(ctx, &eventv1.DispatchBatch{Job: b.Job, From: b.From, Messages: b.Messages[half:]}, traceparent)
		return append(left, right...), err
	}
	if err != nil {
		return nil, err
	}
	return []*pubsub.PublishResult{res}, nil
}

// Render renders every recipient of in. A recipient whose render fails is
// carried with the error so dispatch records the failure; only problems that
// could succeed on a retry (the database) fail the whole batch.
func (r *Renderer) Render(ctx context.Context, in *eventv1.RenderBatch) (*eventv1.DispatchBatch, error) {
	job := in.GetJob()
	out := &eventv1.DispatchBatch{Job: job, Messages: make([]*eventv1.Rendered, 0, len(in.Recipients))}
	c, err := r.template(ctx, job)
	if errors.Is(err, errNoTemplate) {
		for _, p := range in.Recipients {
			out.Messages = append(out.Messages, &eventv1.Rendered{CustomerId: p.Recipient.CustomerId,
				Email: p.Recipient.Email, Error: errNoTemplate.Error()})
		}
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	out.From = c.tmpl.FromEmail
	now := r.now()
	items := make([]emailtemplate.Item, len(in.Products))
	for i, p := range in.Products {
		items[i] = item(p)
	}
	var parts emailtemplate.Rendered
	var buf bytes.Buffer
	for _, p := range in.Recipients {
		rec := p.Recipient
		msgID := MessageID(job.TenantId, job.JobId, job.Channel, rec.CustomerId, c.domain)
		d := r.data(job, c, rec, now)
		d.Items = make([]emailtemplate.Item, len(p.Products))
		for i, idx := range p.Products {
			if int(idx) >= len(items) {
				return nil, fmt.Errorf("%w: product index %d of %d", event.ErrMalformed, idx, len(items))
			}
			d.Items[i] = items[idx]
			d.Items[i].RowStart, d.Items[i].RowEnd = i%2 == 0, i%2 == 1 || i == len(p.Products)-1
			d.Items[i].Reason = reason(p.Source)
		}
		if err := c.tmpl.Render(d, &parts); err != nil {
			out.Messages = append(out.Messages, &eventv1.Rendered{CustomerId: rec.CustomerId, Email: rec.Email,
				MessageId: msgID, Error: err.Error()})
			continue
		}
		buf.Reset()
		AppendMIME(&buf, &Message{
			From:           c.tmpl.From,
			To:             mail.Address{Name: strings.TrimSpace(rec.FirstName + " " + rec.LastName), Address: rec.Email},
			Subject:        parts.Subject,
			MessageID:      msgID,
			Date:           now,
			UnsubscribeURL: d.Recipient.UnsubscribeURL,
			FeedbackID:     job.Campaign + ":" + job.TenantId + ":herald",
			HTML:           parts.HTML.Bytes(),
			Text:           parts.Text.Bytes(),
		})
		out.Messages = append(out.Messages, &eventv1.Rendered{CustomerId: rec.CustomerId, Email: rec.Email,
			MessageId: msgID, Mime: bytes.Clone(buf.Bytes())})
	}
	return out, nil
}

func (r *Renderer) data(job *eventv1.Job, c *compiled, rec *eventv1.Recipient, now time.Time) *emailtemplate.Data {
	token := r.cfg.Signer.Sign(unsubscribe.Claim{Tenant: job.TenantId, Customer: rec.CustomerId, Email: rec.Email, Job: job.JobId})
	base := strings.TrimRight(r.cfg.PublicURL, "/")
	rid := MessageID(job.TenantId, job.JobId, job.Channel, rec.CustomerId, "")
	rid = "r_" + rid[:16]
	campaign := job.Campaign
	if campaign == "" {
		campaign = job.JobId
	}
	return &emailtemplate.Data{
		Customer: emailtemplate.Customer{ID: rec.CustomerId, FirstName: rec.FirstName, LastName: rec.LastName,
			Email: rec.Email, Locale: rec.Locale},
		Brand: c.brand,
		Job:   emailtemplate.Job{ID: job.JobId, Campaign: campaign, HeroAlt: c.brand.Name, Year: now.Year()},
		Recipient: emailtemplate.Recipient{
			ID:             rid,
			UnsubscribeURL: base + "/u/" + token,
			PreferencesURL: base + "/u/" + token + "?preferences=1",
			OpenPixelURL:   base + "/o/" + rid + ".gif",
		},
	}
}

// item turns a catalog product into a card.
func item(p *eventv1.Product) emailtemplate.Item {
	it := emailtemplate.Item{
		SKU: p.Id, Title: p.Title, Brand: p.Brand, ImageURL: p.ImageUrl, URL: p.Url,
		Price: money(p.PriceCents, p.Currency), Rating: math.Round(float64(p.Rating)*10) / 10,
		Stars: stars(p.Rating), Reviews: int(p.Reviews),
	}
	if p.CompareAtCents > p.PriceCents && p.CompareAtCents > 0 {
		it.WasPrice = money(p.CompareAtCents, p.Currency)
		it.Badge = fmt.Sprintf("-%d%%", (p.CompareAtCents-p.PriceCents)*100/p.CompareAtCents)
	}
	return it
}

func money(cents int64, currency string) string {
	amount := fmt.Sprintf("%d.%02d", cents/100, cents%100)
	switch currency {
	case "USD", "":
		return "$" + amount
	case "EUR":
		return "€" + amount
	case "GBP":
		return "£" + amount
	default:
		return amount + " " + currency
	}
}

func stars(rating float32) string {
	n := min(max(int(math.Round(float64(rating))), 0), 5)
	return strings.Repeat("★", n) + strings.Repeat("☆", 5-n)
}

func reason(source string) string {
	switch source {
	case "best_sellers":
		return "A best seller right now"
	default:
		return "Picked for you"
	}
}
