package renderer

import (
	"bytes"
	"encoding/json"
	"time"

	"herald/shared/emailtemplate"
	eventv1 "herald/shared/event/v1"
)

// OnsiteMessage is the payload of an onsite message (Rendered.payload,
// JSON): what the onsite read API serves the partner's site for a customer.
// HTML is the template's HTML part rendered with html/template's contextual
// escaping, so customer and catalog data in it cannot inject markup or
// script; the JSON encoding escapes <, > and & as well, so the document can
// be inlined in a <script> element.
type OnsiteMessage struct {
	MessageID  string        `json:"message_id"`
	CustomerID string        `json:"customer_id"`
	JobID      string        `json:"job_id"`
	Campaign   string        `json:"campaign,omitempty"`
	Title      string        `json:"title"`
	Preheader  string        `json:"preheader,omitempty"`
	HTML       string        `json:"html"`
	Products   []PayloadItem `json:"products"`
	Strategy   string        `json:"strategy"`
	ExpiresAt  time.Time     `json:"expires_at"` // the job's deadline
}

// AdCreative is the payload of an ad (Rendered.payload, JSON): the creative
// an ad platform adapter syncs for the customer's audience entry, the
// customer matched by the hashed address as ad platforms require.
type AdCreative struct {
	MessageID   string        `json:"message_id"`
	CustomerID  string        `json:"customer_id"`
	HashedEmail string        `json:"hashed_email"` // SHA-256 of the trimmed, lower-cased address
	Headline    string        `json:"headline"`     // the rendered subject
	Description string        `json:"description"`  // the rendered preheader
	LandingURL  string        `json:"landing_url"`  // the first product's page, else the brand's site
	ImageURLs   []string      `json:"image_urls"`
	Products    []PayloadItem `json:"products"` // the product set
	Strategy    string        `json:"strategy"`
}

// PayloadItem is a product as onsite messages and ad creatives carry it.
type PayloadItem struct {
	ID       string `json:"id"`
	Title    string `json:"title"`
	URL      string `json:"url"`
	ImageURL string `json:"image_url"`
	Price    string `json:"price"`
	WasPrice string `json:"was_price,omitempty"`
}

func payloadItems(items []emailtemplate.Item) []PayloadItem {
	out := make([]PayloadItem, len(items))
	for i, it := range items {
		out[i] = PayloadItem{ID: it.SKU, Title: it.Title, URL: it.URL, ImageURL: it.ImageURL, Price: it.Price, WasPrice: it.WasPrice}
	}
	return out
}

func appendOnsite(buf *bytes.Buffer, msg *eventv1.Rendered, d *emailtemplate.Data, ps *parts, job *eventv1.Job) {
	m := OnsiteMessage{
		MessageID: msg.MessageId, CustomerID: msg.CustomerId, JobID: job.JobId, Campaign: job.Campaign,
		Title: ps.subject, Preheader: ps.preheader, HTML: ps.html.String(), Products: payloadItems(d.Items),
		Strategy: msg.Provenance.GetStrategy(), ExpiresAt: job.GetDeadline().AsTime().UTC(),
	}
	_ = json.NewEncoder(buf).Encode(m) // the types encode; writes to a bytes.Buffer do not fail
}

func appendAd(buf *bytes.Buffer, msg *eventv1.Rendered, d *emailtemplate.Data, ps *parts) {
	a := AdCreative{
		MessageID: msg.MessageId, CustomerID: msg.CustomerId, HashedEmail: hashedEmail(msg.Email),
		Headline: ps.subject, Description: ps.preheader, LandingURL: d.Brand.URL,
		ImageURLs: []string{}, Products: payloadItems(d.Items), Strategy: msg.Provenance.GetStrategy(),
	}
	for _, it := range d.Items {
		if it.ImageURL != "" {
			a.ImageURLs = append(a.ImageURLs, it.ImageURL)
		}
	}
	if len(d.Items) > 0 {
		a.LandingURL = d.Items[0].URL
	}
	_ = json.NewEncoder(buf).Encode(a)
}
