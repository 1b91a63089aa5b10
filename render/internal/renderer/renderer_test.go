package renderer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"herald/shared/emailtemplate"
	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
	"herald/shared/unsubscribe"
)

// benchDir holds the reference render workload, kept beside the template
// engine's tests.
const benchDir = "../fasttmpl/testdata"

const demoText = `Hi {{.Customer.FirstName}}, your Black Friday picks are here.
{{range .Items}}
* {{.Title}} ({{.Brand}}) - {{.Price}}{{if .WasPrice}}, was {{.WasPrice}}{{end}}
  {{.URL}}
{{end}}
Unsubscribe: {{.Recipient.UnsubscribeURL}}
{{.Brand.Name}}, {{.Brand.Address}}
`

// referenceSource is the reference workload's template as a partner would
// upload it, with the demo's text part.
func referenceSource(t testing.TB) emailtemplate.Source {
	t.Helper()
	html, err := os.ReadFile(benchDir + "/reference-email.html.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	return emailtemplate.Source{
		FromName: "Acme Outfitters", FromEmail: "deals@acme-outfitters.example",
		Subject:   "{{.Customer.FirstName}}, your Black Friday picks are here",
		Preheader: "Up to 60% off the things you have been eyeing — today only.",
		HTML:      string(html), Text: demoText,
	}
}

func testRenderer(t testing.TB) *Renderer {
	t.Helper()
	signer, err := unsubscribe.NewSigner([]byte("an unsubscribe secret for tests"))
	if err != nil {
		t.Fatal(err)
	}
	r := New(nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), nil,
		Config{PublicURL: "https://email.acme-outfitters.example", Signer: signer})
	r.now = func() time.Time { return time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC) }
	return r
}

var firstNames = []string{"Charlotte", "Zoë", "O'Neil", "Ana <b>", "Łukasz", "Renée", "Björn", "Tomás"}

// referenceBatch is a render batch of n recipients of the reference
// workload: each gets 6 products from a pool of 50 shared by the job.
func referenceBatch(n int, channel event.Channel) *eventv1.RenderBatch {
	job := &eventv1.Job{TenantId: "acme", JobId: "0193a0c4-7e3f-7b2a-9c1d-2f4e6a8b0c1d", Seq: 3, Channel: string(channel),
		TemplateId: "black-friday", TemplateVersion: 4, ProductsPerMessage: 6, Campaign: "cmp_2026_bf_0042",
		SubmittedAt: timestamppb.New(time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC)),
		Deadline:    timestamppb.New(time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC))}
	b := &eventv1.RenderBatch{Job: job, Strategies: []string{event.StrategyPartnerRankings, event.StrategyCatalogBestSellers}}
	titles := []string{"Men's Merino Crew Sweater", "Waterproof Trail Runner <GTX>", "Down Parka & Hood", "Wool Beanie",
		"Canvas Backpack 20L", "Cashmere Scarf"}
	for i := range 50 {
		sku := fmt.Sprintf("SKU-%05d-%02d", 31337+7*i, i%100)
		p := &eventv1.Product{Id: sku, Title: fmt.Sprintf("%s #%d", titles[i%len(titles)], i), Brand: "Acme Outdoor",
			Url:        fmt.Sprintf("https://www.acme-outfitters.example/p/%s", strings.ToLower(sku)),
			ImageUrl:   fmt.Sprintf("https://cdn.acme-outfitters.example/images/products/%s/main_520x520.jpg?v=%d", sku, i%4),
			PriceCents: int64(2000 + 137*i), Currency: "USD", Rating: 3 + float32(i%20)/10, Reviews: int32(17 * (i + 1))}
		if i%3 != 1 {
			p.CompareAtCents = p.PriceCents * 3 / 2
		}
		b.Products = append(b.Products, p)
	}
	for r := range n {
		c := fmt.Sprintf("c%08d", 1234574+r)
		name := firstNames[r%len(firstNames)]
		p := &eventv1.Picked{
			Recipient: &eventv1.Recipient{CustomerId: c, Email: fmt.Sprintf("user.o'brien+%d@example.com", r),
				FirstName: name, LastName: "Lovelace", Locale: []string{"en", "de", "fr"}[r%3]},
			Source:     "partner_rankings+catalog_best_sellers",
			Provenance: &eventv1.Provenance{Strategy: "partner_rankings+catalog_best_sellers", ModelVersion: "m-9", CatalogVersion: 77},
		}
		for k := range 6 {
			p.Products = append(p.Products, int32((r*7+k*11)%50))
			p.ProductStrategies = append(p.ProductStrategies, int32(k/4))
		}
		b.Recipients = append(b.Recipients, p)
	}
	return b
}

func mustCompile(t testing.TB, src emailtemplate.Source) *compiled {
	t.Helper()
	return mustCompileWithin(t, src, emailtemplate.DefaultBudget)
}

func mustCompileWithin(t testing.TB, src emailtemplate.Source, budget emailtemplate.Budget) *compiled {
	t.Helper()
	c, err := compile(src, budget)
	if err != nil {
		t.Fatal(err)
	}
	c.brand = emailtemplate.Brand{Name: "Acme Outfitters & Co.", URL: "https://www.acme-outfitters.example",
		LogoURL: "https://cdn.acme-outfitters.example/assets/email/logo@2x.png",
		HeroURL: "https://cdn.acme-outfitters.example/assets/email/bf-2026-hero-600x260@2x.jpg",
		Address: "123 Market Street, Suite 400, San Francisco, CA 94105, USA"}
	return c
}

func render(t testing.TB, r *Renderer, c *compiled, in *eventv1.RenderBatch) *eventv1.DispatchBatch {
	t.Helper()
	out, err := r.renderWith(c, in, &eventv1.DispatchBatch{Job: in.Job})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCompiledPartsMatchReference renders a job with the compiled engine
// and with the reference (emailtemplate: html/template and text/template)
// and requires the same bytes for every part of every recipient.
func TestCompiledPartsMatchReference(t *testing.T) {
	src := referenceSource(t)
	c := mustCompile(t, src)
	if fb := c.fallbacks(); len(fb) > 0 {
		t.Fatalf("reference template parts fell back: %v", fb)
	}
	r := testRenderer(t)
	in := referenceBatch(200, event.ChannelEmail)
	items := make([]emailtemplate.Item, len(in.Products))
	for i, p := range in.Products {
		items[i] = item(p)
	}
	var ps parts
	for i, p := range in.Recipients {
		d := &emailtemplate.Data{}
		if err := r.fill(d, in.Job, c, p.Recipient, r.now()); err != nil {
			t.Fatal(err)
		}
		for k, idx := range p.Products {
			it := items[idx]
			it.RowStart, it.RowEnd, it.Reason = k%2 == 0, k%2 == 1, reason(in.Strategies[p.ProductStrategies[k]])
			d.Items = append(d.Items, it)
		}
		ref := *d
		var want emailtemplate.Rendered
		if err := c.tmpl.Render(&ref, &want); err != nil {
			t.Fatal(err)
		}
		if err := c.render(d, &ps, r.cfg.Budget.Limits(time.Now())); err != nil {
			t.Fatal(err)
		}
		got := []string{ps.subject, ps.html.String(), ps.text.String()}
		if diff := cmp.Diff([]string{want.Subject, want.HTML.String(), want.Text.String()}, got); diff != "" {
			t.Fatalf("recipient %d (-reference +compiled):\n%s", i, diff)
		}
	}
}

// textPart returns the decoded part of type ct of a MIME message.
func mimePart(t *testing.T, raw []byte, ct string) string {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err != nil {
			t.Fatalf("no %s part: %v", ct, err)
		}
		if strings.HasPrefix(p.Header.Get("Content-Type"), ct) {
			b, err := io.ReadAll(quotedprintable.NewReader(p))
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
}

func TestRenderEmail(t *testing.T) {
	r := testRenderer(t)
	c := mustCompile(t, referenceSource(t))
	in := referenceBatch(3, event.ChannelEmail)
	out := render(t, r, c, in)
	if len(out.Messages) != 3 || out.From != "deals@acme-outfitters.example" {
		t.Fatalf("%d messages from %q", len(out.Messages), out.From)
	}
	m := out.Messages[1]
	msg, err := mail.ReadMessage(bytes.NewReader(m.Mime))
	if err != nil {
		t.Fatal(err)
	}
	h := msg.Header
	if h.Get("Message-ID") != "<"+m.MessageId+">" || !strings.HasSuffix(m.MessageId, "@acme-outfitters.example") {
		t.Errorf("Message-ID %q, message id %q", h.Get("Message-ID"), m.MessageId)
	}
	if h.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" || !strings.HasPrefix(h.Get("List-Unsubscribe"), "<https://email.acme-outfitters.example/u/") {
		t.Errorf("List-Unsubscribe %q, List-Unsubscribe-Post %q", h.Get("List-Unsubscribe"), h.Get("List-Unsubscribe-Post"))
	}
	if subject, _ := new(mime.WordDecoder).DecodeHeader(h.Get("Subject")); subject != "Zoë, your Black Friday picks are here" {
		t.Errorf("subject %q", subject)
	}
	text := mimePart(t, m.Mime, "text/plain")
	if !strings.Contains(text, "Hi Zoë,") || !strings.Contains(text, in.Products[in.Recipients[1].Products[0]].Title) {
		t.Errorf("text part:\n%s", text)
	}
	html := mimePart(t, m.Mime, "text/html")
	if !strings.Contains(html, "Waterproof Trail Runner &lt;GTX&gt;") || strings.Contains(html, "<GTX>") {
		t.Errorf("catalog data not escaped in HTML")
	}
	if !strings.Contains(html, "Still") && !strings.Contains(html, "A best seller right now") {
		t.Errorf("product cards do not say why they are there")
	}
	want := &eventv1.Provenance{Strategy: "partner_rankings+catalog_best_sellers", ModelVersion: "m-9", CatalogVersion: 77, TemplateVersion: 4}
	if got := m.Provenance; got.Strategy != want.Strategy || got.ModelVersion != want.ModelVersion ||
		got.CatalogVersion != want.CatalogVersion || got.TemplateVersion != want.TemplateVersion {
		t.Errorf("provenance %v, want %v", got, want)
	}
}

// TestMessageIDsAreTheDeliveryKeys: on every channel, a message's
// Message-ID is its delivery key's at the sender's domain (dispatch
// reconciles unknown sends by it), the email's header carries it, and the
// recipient id in links is derived from the same key.
func TestMessageIDsAreTheDeliveryKeys(t *testing.T) {
	r := testRenderer(t)
	c := mustCompile(t, referenceSource(t))
	for _, ch := range event.Channels {
		in := referenceBatch(3, ch)
		for i, m := range render(t, r, c, in).Messages {
			rec := in.Recipients[i].Recipient
			k := event.DeliveryKey{Tenant: "acme", Job: in.Job.JobId, Channel: ch, Customer: rec.CustomerId}
			want := k.MessageID("acme-outfitters.example")
			if m.MessageId != want {
				t.Errorf("%s, %s: message id %q, want %q", ch, rec.CustomerId, m.MessageId, want)
			}
			if ch == event.ChannelEmail {
				msg, err := mail.ReadMessage(bytes.NewReader(m.Mime))
				if err != nil {
					t.Fatal(err)
				}
				if got := msg.Header.Get("Message-ID"); got != "<"+want+">" {
					t.Errorf("%s: Message-ID header %q, want <%s>", rec.CustomerId, got, want)
				}
			}
			d := &emailtemplate.Data{}
			if err := r.fill(d, in.Job, c, rec, r.now()); err != nil {
				t.Fatal(err)
			}
			if want := "r_" + k.MessageID("")[:16]; d.Recipient.ID != want {
				t.Errorf("%s, %s: recipient id %q, want %q", ch, rec.CustomerId, d.Recipient.ID, want)
			}
		}
	}
}

// TestRenderHeaderHygiene renders a subject of over a thousand bytes for
// a campaign whose name has a ':' and 8-bit characters: the subject is
// folded to lines of at most 78 bytes and reads back whole, and the
// Feedback-ID keeps its three fields of safe characters.
func TestRenderHeaderHygiene(t *testing.T) {
	r := testRenderer(t)
	src := referenceSource(t)
	src.Subject = `{{range .Items}}{{range $.Items}}{{.Title}} by {{.Brand}}, {{end}}{{end}}`
	c := mustCompile(t, src)
	in := referenceBatch(1, event.ChannelEmail)
	in.Job.Campaign = "Été: -50% ★"
	m := render(t, r, c, in).Messages[0]
	if m.Error != "" {
		t.Fatal(m.Error)
	}
	head, _, _ := bytes.Cut(m.Mime, []byte("\r\n\r\n"))
	field := ""
	for _, l := range strings.Split(string(head), "\r\n") {
		if l[0] != ' ' {
			field, _, _ = strings.Cut(l, ":")
		}
		// A line holding one long token (the unsubscribe URL) cannot
		// be folded; none may pass RFC 5322's 998.
		if len(l) > 998 || field == "Subject" && len(l) > 78 {
			t.Errorf("a %s line of %d bytes: %.80q", field, len(l), l)
		}
	}
	msg, err := mail.ReadMessage(bytes.NewReader(m.Mime))
	if err != nil {
		t.Fatal(err)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil || len(subject) < 1000 || !strings.HasPrefix(subject, in.Products[in.Recipients[0].Products[0]].Title+" by ") {
		t.Errorf("subject of %d bytes (%v): %.80q", len(subject), err, subject)
	}
	if id := msg.Header.Get("Feedback-ID"); !regexp.MustCompile(`^[A-Za-z0-9._-]+:acme:herald$`).MatchString(id) {
		t.Errorf("Feedback-ID %q", id)
	}
}

func TestRenderSkippedRecipient(t *testing.T) {
	r := testRenderer(t)
	c := mustCompile(t, referenceSource(t))
	in := referenceBatch(2, event.ChannelEmail)
	in.Recipients[0].Products, in.Recipients[0].ProductStrategies = nil, nil
	in.Recipients[0].SkipReason = "too few products: 0 of the 1 products needed after abandoned_cart"
	in.Recipients[0].Source = "skipped"
	out := render(t, r, c, in)
	skipped, sent := out.Messages[0], out.Messages[1]
	if skipped.SkipReason != in.Recipients[0].SkipReason || skipped.Error != "skipped: "+skipped.SkipReason || len(skipped.Mime) != 0 {
		t.Errorf("skipped recipient: skip %q, error %q, %d bytes of MIME", skipped.SkipReason, skipped.Error, len(skipped.Mime))
	}
	if skipped.MessageId == "" || skipped.Provenance.GetTemplateVersion() != 4 {
		t.Errorf("skipped recipient lacks its message id or provenance: %v", skipped)
	}
	if sent.Error != "" || len(sent.Mime) == 0 {
		t.Errorf("the other recipient: error %q, %d bytes", sent.Error, len(sent.Mime))
	}
}

// TestRenderBudgetFailsOnlyThatRecipient gives one recipient a product whose
// data makes the message blow the output budget.
func TestRenderBudgetFailsOnlyThatRecipient(t *testing.T) {
	r := testRenderer(t)
	src := referenceSource(t)
	c := mustCompile(t, src)
	in := referenceBatch(3, event.ChannelEmail)
	huge := &eventv1.Product{Id: "HUGE", Title: strings.Repeat("<b>", emailtemplate.MaxOutputBytes/10), Url: "https://x.example/p", Currency: "USD"}
	in.Products = append(in.Products, huge)
	in.Recipients[1].Products[0] = int32(len(in.Products) - 1)
	out := render(t, r, c, in)
	for i, m := range out.Messages {
		failed := m.Error != ""
		if failed != (i == 1) {
			t.Errorf("recipient %d: error %q", i, m.Error)
		}
	}
	if e := out.Messages[1].Error; !strings.Contains(e, ErrRenderBudget.Error()) || !strings.Contains(e, "output budget exceeded") {
		t.Errorf("over-budget recipient's reason %q", e)
	}
}

// TestRenderBudgetOnTheFallback renders a template that runs on
// html/template (a template called inside <script>) and whose loops write
// nothing: the recipient whose 24 products take it over its steps fails,
// the other is rendered, and the batch goes on.
func TestRenderBudgetOnTheFallback(t *testing.T) {
	r := testRenderer(t)
	r.cfg.Budget = emailtemplate.Budget{Steps: 100, Bytes: emailtemplate.MaxOutputBytes}
	src := referenceSource(t)
	src.HTML = `<script>var brand = {{template "brand" .}};</script>{{define "brand"}}{{.Brand.Name}}{{end}}` +
		`{{range .Items}}{{range $.Items}}{{end}}{{end}}<p>{{.Customer.FirstName}}</p>`
	c := mustCompileWithin(t, src, r.cfg.Budget)
	if _, ok := c.fallbacks()["html"]; !ok {
		t.Fatal("the HTML part runs on the compiled engine; the test needs it on html/template")
	}
	in := referenceBatch(2, event.ChannelEmail)
	for k := range 24 - 6 { // 1+1+24+576 steps, where 6 products take 44
		in.Recipients[1].Products = append(in.Recipients[1].Products, int32(k))
	}
	out := render(t, r, c, in)
	ok, over := out.Messages[0], out.Messages[1]
	if ok.Error != "" || len(ok.Mime) == 0 {
		t.Errorf("recipient within budget: error %q, %d bytes of MIME", ok.Error, len(ok.Mime))
	}
	if !strings.Contains(over.Error, ErrRenderBudget.Error()) || !strings.Contains(over.Error, "step budget exceeded") || len(over.Mime) != 0 {
		t.Errorf("recipient over budget: error %q, %d bytes of MIME", over.Error, len(over.Mime))
	}
}

// TestUnusableTemplate sorts the errors of loading a job's template into
// those that fail every recipient of the batch with the reason (the
// template is gone, or no longer passes its checks or budget on the
// sample) and those worth retrying the batch for.
func TestUnusableTemplate(t *testing.T) {
	src := referenceSource(t)
	src.HTML = `{{range .Items}}{{range $.Items}}{{end}}{{end}}`
	_, overBudget := compile(src, emailtemplate.Budget{Steps: 10})
	src.HTML = `{{call .Customer.FirstName}}`
	_, invalid := compile(src, emailtemplate.DefaultBudget)
	tests := []struct {
		name   string
		err    error
		reason string // "" for an error to retry the batch for
	}{
		{"gone", fmt.Errorf("load: %w", errNoTemplate), "template version not found"},
		{"over budget on the sample", fmt.Errorf("parse stored template bf v1: %w", overBudget), "step budget exceeded"},
		{"no longer valid", fmt.Errorf("parse stored template bf v1: %w", invalid), `"call" is not allowed`},
		{"the database", errors.New("load template: connection refused"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reason, ok := unusable(tc.err)
			if ok != (tc.reason != "") || !strings.Contains(reason, tc.reason) {
				t.Errorf("unusable(%v) = %q, %v; want a reason with %q", tc.err, reason, ok, tc.reason)
			}
		})
	}
}

func TestRenderOnsite(t *testing.T) {
	r := testRenderer(t)
	c := mustCompile(t, referenceSource(t))
	in := referenceBatch(4, event.ChannelOnsite)
	out := render(t, r, c, in)
	m := out.Messages[3] // "Ana <b>"
	if len(m.Mime) != 0 || len(m.Payload) == 0 {
		t.Fatalf("onsite message has %d bytes of MIME and %d of payload", len(m.Mime), len(m.Payload))
	}
	if bytes.ContainsAny(m.Payload, "<>") {
		t.Errorf("onsite JSON is not safe to inline: it contains < or >")
	}
	var got OnsiteMessage
	if err := json.Unmarshal(m.Payload, &got); err != nil {
		t.Fatal(err)
	}
	if got.Title != "Ana <b>, your Black Friday picks are here" || got.MessageID != m.MessageId || got.CustomerID != m.CustomerId {
		t.Errorf("onsite message %+v", got)
	}
	if !strings.Contains(got.HTML, "Hi Ana &lt;b&gt;,") || strings.Contains(got.HTML, "Ana <b>") {
		t.Errorf("customer data not escaped in the onsite HTML")
	}
	if len(got.Products) != 6 || got.Products[0].ID != in.Products[in.Recipients[3].Products[0]].Id || got.Strategy == "" {
		t.Errorf("onsite products %+v, strategy %q", got.Products, got.Strategy)
	}
	if !got.ExpiresAt.Equal(in.Job.Deadline.AsTime()) {
		t.Errorf("expires at %v, want the deadline", got.ExpiresAt)
	}
}

// TestRenderAdMember checks that an ad is the recipient's audience entry
// and nothing more: the hash dispatch uploads (event.HashEmail, the
// trimmed and lower-cased address), no per-person creative.
func TestRenderAdMember(t *testing.T) {
	r := testRenderer(t)
	c := mustCompile(t, referenceSource(t))
	in := referenceBatch(2, event.ChannelAd)
	in.Recipients[0].Recipient.Email = " User.O'Brien+0@Example.com " // as a partner may have loaded it
	out := render(t, r, c, in)
	sum := sha256.Sum256([]byte("user.o'brien+0@example.com"))
	want := AdMember{MessageID: out.Messages[0].MessageId, CustomerID: in.Recipients[0].Recipient.CustomerId,
		HashedEmail: hex.EncodeToString(sum[:])}
	var got AdMember
	dec := json.NewDecoder(bytes.NewReader(out.Messages[0].Payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ad payload (-want +got):\n%s", diff)
	}
	if got.HashedEmail != event.HashEmail(in.Recipients[0].Recipient.Email) {
		t.Errorf("hashed email %q is not event.HashEmail of %q", got.HashedEmail, in.Recipients[0].Recipient.Email)
	}
	for _, m := range out.Messages {
		if m.Error != "" || len(m.Mime) != 0 || bytes.Contains(m.Payload, []byte("headline")) {
			t.Errorf("ad message %+v", m)
		}
	}
}

func TestRenderRejectsUntrustedTemplates(t *testing.T) {
	for name, html := range map[string]string{
		"call":           `{{call .Customer.FirstName}}`,
		"range a number": `{{range .Job.Year}}x{{end}}`,
		"recursion":      `{{define "a"}}{{template "a" .}}{{end}}{{template "a" .}}`,
	} {
		src := referenceSource(t)
		src.HTML = html
		_, err := compile(src, emailtemplate.DefaultBudget)
		var bad *emailtemplate.ProblemError
		if !errors.As(err, &bad) {
			t.Errorf("%s: compile returned %v, want a ProblemError", name, err)
		}
	}
}

// wireBytes is the compressed size on the wire of out.
func wireBytes(t testing.TB, out *eventv1.DispatchBatch) int {
	t.Helper()
	body, _, err := event.Encode(out, event.Zstd, "")
	if err != nil {
		t.Fatal(err)
	}
	return len(body)
}

// TestWireSizePerEmail checks that a batch of reference emails travels to
// dispatch in at most about 2 KB per email.
func TestWireSizePerEmail(t *testing.T) {
	r := testRenderer(t)
	c := mustCompile(t, referenceSource(t))
	out := render(t, r, c, referenceBatch(1000, event.ChannelEmail))
	var raw int
	for _, m := range out.Messages {
		raw += len(m.Mime)
	}
	per := wireBytes(t, out) / len(out.Messages)
	t.Logf("%d bytes of MIME per email, %d on the wire", raw/len(out.Messages), per)
	if per > 2048 {
		t.Errorf("%d bytes per email on the wire, want at most 2048", per)
	}
}
