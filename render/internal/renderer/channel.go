package renderer

import (
	"bytes"
	"encoding/json"
	"time"

	"herald/shared/emailtemplate"
	"herald/shared/event"
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

// AdMember is the payload of an ad (Rendered.payload, JSON): the
// recipient's entry in the job's custom audience. Ad platforms' audience
// APIs (Meta's /{audience-id}/users) take hashed identifiers and nothing
// per person, so no creative is rendered for ads; the campaign's creative
// is made in the platform and targets the audience. HashedEmail is
// event.HashEmail of the address, the hash dispatch uploads.
type AdMember struct {
	MessageID   string `json:"message_id"`
	CustomerID  string `json:"customer_id"`
	HashedEmail string `json:"hashed_email"`
}

// PayloadItem is a product as onsite messages carry it.
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

func adPayload(msg *eventv1.Rendered) []byte {
	b, _ := json.Marshal(AdMember{MessageID: msg.MessageId, CustomerID: msg.CustomerId, HashedEmail: event.HashEmail(msg.Email)})
	return b // three strings cannot fail to encode
}
