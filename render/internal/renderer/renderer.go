// Package renderer renders every recipient of a batch for the job's
// channel, from the job's template and the products picked for them, and
// publishes the results, compressed, to dispatch.
//
// Channels (the job's channel field, an event.Channel):
//   - "email": subject, HTML and text alternative in a MIME message (package
//     email) with RFC 8058 one-click List-Unsubscribe and the Message-ID of
//     the delivery's event.DeliveryKey.
//   - "onsite": a JSON document with the title, the HTML snippet and the
//     products, for the onsite read API (see OnsiteMessage).
//   - "ad": the recipient's audience entry, their hashed address (see
//     AdMember). The template is not rendered: an ad platform's
//     custom-audience API takes people, not a creative per person; the
//     ad's creative is the campaign's, made in the platform.
//
// Partner templates are untrusted: they are vetted by emailtemplate.Parse
// (allow-listed functions, bounded loops, no recursion, few template
// calls) and rendered within a per-recipient budget of steps, bytes and
// time (Config.Budget, the budget of uploads and previews too) on either
// engine; a recipient whose render fails or runs out of its budget is
// carried to dispatch with the reason, and nobody else is affected.
package renderer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"herald/render/internal/email"
	"herald/shared/emailtemplate"
	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
	"herald/shared/messaging"
	"herald/shared/unsubscribe"
)

// Publisher is where rendered batches go.
type Publisher interface {
	Publish(ctx context.Context, b event.Batch, traceparent string) (*pubsub.PublishResult, error)
}

// Config says how links in messages are built and what a render may
// spend.
type Config struct {
	// PublicURL is the base of the public endpoints (one-click unsubscribe)
	// as recipients reach them.
	PublicURL string
	Signer    *unsubscribe.Signer
	// Budget bounds each recipient's render, and the sample render that
	// checks a template before it is used; a zero Budget is
	// emailtemplate.DefaultBudget, the budget of uploads and previews.
	Budget emailtemplate.Budget
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
	if cfg.Budget == (emailtemplate.Budget{}) {
		cfg.Budget = emailtemplate.DefaultBudget
	}
	return &Renderer{
		db: db, pub: pub, log: log, cfg: cfg, now: time.Now,
		rendered: f.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_render_messages_total",
			Help: "Messages rendered, by channel and outcome (ok, failed, skipped).",
		}, []string{"channel", "outcome"}),
	}
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
	var ok, failed, skipped int
	for _, msg := range out.Messages {
		switch {
		case msg.SkipReason != "":
			skipped++
		case msg.Error != "":
			failed++
		default:
			ok++
		}
	}
	ch := in.GetJob().GetChannel()
	r.rendered.WithLabelValues(ch, "ok").Add(float64(ok))
	r.rendered.WithLabelValues(ch, "failed").Add(float64(failed))
	r.rendered.WithLabelValues(ch, "skipped").Add(float64(skipped))
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
// carried with the error so dispatch records the failure, and one the
// picking chain skipped is carried with the skip reason; only problems that
// could succeed on a retry (the database) fail the whole batch.
func (r *Renderer) Render(ctx context.Context, in *eventv1.RenderBatch) (*eventv1.DispatchBatch, error) {
	job := in.GetJob()
	out := &eventv1.DispatchBatch{Job: job, Messages: make([]*eventv1.Rendered, 0, len(in.Recipients))}
	c, err := r.template(ctx, job)
	if reason, ok := unusable(err); ok {
		for _, p := range in.Recipients {
			out.Messages = append(out.Messages, &eventv1.Rendered{CustomerId: p.Recipient.CustomerId,
				Email: p.Recipient.Email, Error: reason, Provenance: provenance(job, p)})
		}
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	return r.renderWith(c, in, out)
}

// unusable reports whether err, from loading a job's template, means the
// template cannot render anyone, and why: it is gone, or no longer passes
// its checks or its budget on the sample data (it was stored under other
// rules). Every recipient of the batch then fails with the reason; failing
// the batch would only have it retried.
func unusable(err error) (reason string, ok bool) {
	var bad *emailtemplate.ProblemError
	switch {
	case errors.Is(err, errNoTemplate):
		return errNoTemplate.Error(), true
	case errors.As(err, &bad):
		return err.Error(), true
	}
	return "", false
}

// renderWith renders in with c into out.
func (r *Renderer) renderWith(c *compiled, in *eventv1.RenderBatch, out *eventv1.DispatchBatch) (*eventv1.DispatchBatch, error) {
	job := in.GetJob()
	out.From = c.tmpl.FromEmail
	now := r.now()
	items := make([]emailtemplate.Item, len(in.Products))
	for i, p := range in.Products {
		items[i] = item(p)
	}
	reasons := make([]string, len(in.Strategies))
	for i, s := range in.Strategies {
		reasons[i] = reason(s)
	}
	var ps parts
	var buf bytes.Buffer
	d := &emailtemplate.Data{Brand: c.brand}
	campaign := job.Campaign
	if campaign == "" {
		campaign = job.JobId // as the template's .Job.Campaign
	}
	feedbackID := email.FeedbackID(campaign, job.TenantId)
	for _, p := range in.Recipients {
		rec := p.Recipient
		msg := &eventv1.Rendered{CustomerId: rec.CustomerId, Email: rec.Email,
			MessageId:  deliveryKey(job, rec.CustomerId).MessageID(c.domain),
			Provenance: provenance(job, p)}
		out.Messages = append(out.Messages, msg)
		if p.SkipReason != "" {
			msg.SkipReason, msg.Error = p.SkipReason, "skipped: "+p.SkipReason
			continue
		}
		if event.Channel(job.Channel) == event.ChannelAd {
			msg.Payload = adPayload(msg)
			continue
		}
		if err := r.fill(d, job, c, rec, now); err != nil {
			return nil, err
		}
		d.Items = d.Items[:0]
		for i, idx := range p.Products {
			if int(idx) >= len(items) {
				return nil, fmt.Errorf("%w: product index %d of %d", event.ErrMalformed, idx, len(items))
			}
			it := items[idx]
			it.RowStart, it.RowEnd = i%2 == 0, i%2 == 1 || i == len(p.Products)-1
			it.Reason = "Picked for you"
			if i < len(p.ProductStrategies) && int(p.ProductStrategies[i]) < len(reasons) {
				it.Reason = reasons[p.ProductStrategies[i]]
			} else if p.Source == "best_sellers" || p.Source == "catalog_best_sellers" {
				it.Reason = reason(p.Source)
			}
			d.Items = append(d.Items, it)
		}
		if err := c.render(d, &ps, r.cfg.Budget.Limits(time.Now())); err != nil {
			msg.Error = err.Error()
			continue
		}
		buf.Reset()
		switch event.Channel(job.Channel) {
		case event.ChannelOnsite:
			appendOnsite(&buf, msg, d, &ps, job)
			msg.Payload = bytes.Clone(buf.Bytes())
		default: // event.ChannelEmail, the only other channel ingest accepts
			m := &email.Message{
				From:           c.tmpl.From,
				To:             mail.Address{Name: strings.TrimSpace(rec.FirstName + " " + rec.LastName), Address: rec.Email},
				Subject:        ps.subject,
				MessageID:      msg.MessageId,
				Date:           now,
				UnsubscribeURL: d.Recipient.UnsubscribeURL,
				FeedbackID:     feedbackID,
				HTML:           ps.html.Bytes(),
				Text:           ps.text.Bytes(),
			}
			msg.Mime = email.AppendMIME(make([]byte, 0, email.Size(m)), m)
		}
	}
	return out, nil
}

// deliveryKey is the ledger key of customer's delivery of job, from which
// the message's Message-ID and its recipient id are derived.
func deliveryKey(job *eventv1.Job, customer string) event.DeliveryKey {
	return event.DeliveryKey{Tenant: job.TenantId, Job: job.JobId, Channel: event.Channel(job.Channel), Customer: customer}
}

// provenance is what the ledger keeps about why the recipient got this
// message.
func provenance(job *eventv1.Job, p *eventv1.Picked) *eventv1.Provenance {
	prov := &eventv1.Provenance{TemplateVersion: job.GetTemplateVersion(), Strategy: p.GetSource()}
	if pp := p.GetProvenance(); pp != nil {
		prov.Strategy, prov.ModelVersion, prov.CatalogVersion = pp.Strategy, pp.ModelVersion, pp.CatalogVersion
	}
	return prov
}

// fill sets d's per-recipient and per-job fields for rec.
func (r *Renderer) fill(d *emailtemplate.Data, job *eventv1.Job, c *compiled, rec *eventv1.Recipient, now time.Time) error {
	if r.cfg.Signer == nil {
		return errors.New("renderer has no unsubscribe signer")
	}
	token := r.cfg.Signer.Sign(unsubscribe.Claim{Tenant: job.TenantId, Customer: rec.CustomerId, Email: rec.Email, Job: job.JobId})
	base := strings.TrimRight(r.cfg.PublicURL, "/")
	rid := deliveryKey(job, rec.CustomerId).MessageID("")
	rid = "r_" + rid[:16]
	campaign := job.Campaign
	if campaign == "" {
		campaign = job.JobId
	}
	d.Subject, d.Preheader = "", ""
	d.Customer = emailtemplate.Customer{ID: rec.CustomerId, FirstName: rec.FirstName, LastName: rec.LastName,
		Email: rec.Email, Locale: rec.Locale}
	d.Brand = c.brand
	d.Job = emailtemplate.Job{ID: job.JobId, Campaign: campaign, HeroAlt: c.brand.Name, Year: now.Year()}
	d.Recipient = emailtemplate.Recipient{
		ID:             rid,
		UnsubscribeURL: base + "/u/" + token,
		PreferencesURL: base + "/u/" + token + "?preferences=1",
		OpenPixelURL:   base + "/o/" + rid + ".gif",
	}
	return nil
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
		it.Badge = "-" + strconv.FormatInt((p.CompareAtCents-p.PriceCents)*100/p.CompareAtCents, 10) + "%"
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

// reason is what a product card says about why it is there, by the
// strategy that picked it.
func reason(strategy string) string {
	switch strategy {
	case event.StrategyBestSellers, event.StrategyCatalogBestSellers:
		return "A best seller right now"
	case event.StrategyCoPurchase:
		return "Often bought with your purchases"
	case event.StrategyCoView:
		return "Shoppers who viewed what you viewed liked this"
	case event.StrategyRecentlyViewed:
		return "You looked at this recently"
	case event.StrategyAbandonedCart:
		return "Still in your cart"
	case event.StrategyBackInStock:
		return "Back in stock"
	case event.StrategyPriceDrop:
		return "Now at a lower price"
	default:
		return "Picked for you"
	}
}
