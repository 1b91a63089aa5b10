package feedback

import (
	"encoding/json"
	"fmt"
	"strconv"

	"herald/ingest/internal/store"
	"herald/shared/event"
)

// sesEvent is the part of an SES event record that Herald reads: the
// eventType (notificationType in SES's older identity notifications), the
// mail's tags and the object of the event's type.
type sesEvent struct {
	EventType        string `json:"eventType"`
	NotificationType string `json:"notificationType"`
	Mail             struct {
		MessageID string              `json:"messageId"`
		Tags      map[string][]string `json:"tags"`
	} `json:"mail"`
	Bounce *struct {
		BounceType        string         `json:"bounceType"`
		BouncedRecipients []sesRecipient `json:"bouncedRecipients"`
	} `json:"bounce"`
	Complaint *struct {
		ComplainedRecipients []sesRecipient `json:"complainedRecipients"`
	} `json:"complaint"`
	Delivery *struct {
		Recipients []string `json:"recipients"`
	} `json:"delivery"`
}

type sesRecipient struct {
	EmailAddress string `json:"emailAddress"`
}

// ParseSES reads the SES event record that an SNS notification carries as
// its Message. The event id is the SNS MessageId, which SNS keeps across
// its retries; a bounce, complaint or delivery that names several
// recipients gives one report each, MessageId/<index>. Bounce (Permanent:
// Bounced; Transient or Undetermined: SoftBounce), Complaint and Delivery
// are acted on; every other event type (Send, Reject, Open, Click,
// DeliveryDelay…) is ignored — a delay is not a refusal, and SES goes on
// trying.
func ParseSES(snsMessageID, message string) (Batch, error) {
	var e sesEvent
	if err := json.Unmarshal([]byte(message), &e); err != nil {
		return Batch{}, fmt.Errorf("%w: SES event: %v", ErrMalformed, err)
	}
	typ := e.EventType
	if typ == "" {
		typ = e.NotificationType
	}
	var kinds []store.FeedbackKind
	switch typ {
	case "Bounce":
		if e.Bounce == nil {
			return Batch{}, fmt.Errorf("%w: SES Bounce event without a bounce object", ErrMalformed)
		}
		var kind store.FeedbackKind
		switch e.Bounce.BounceType {
		case "Permanent":
			kind = store.Bounced
		case "Transient", "Undetermined":
			kind = store.SoftBounce
		default:
			return Batch{}, fmt.Errorf("%w: SES bounceType %q", ErrMalformed, e.Bounce.BounceType)
		}
		kinds = repeat(kind, len(e.Bounce.BouncedRecipients))
	case "Complaint":
		if e.Complaint == nil {
			return Batch{}, fmt.Errorf("%w: SES Complaint event without a complaint object", ErrMalformed)
		}
		kinds = repeat(store.Complained, len(e.Complaint.ComplainedRecipients))
	case "Delivery":
		if e.Delivery == nil {
			return Batch{}, fmt.Errorf("%w: SES Delivery event without a delivery object", ErrMalformed)
		}
		kinds = repeat(store.Delivered, len(e.Delivery.Recipients))
	case "":
		return Batch{}, fmt.Errorf("%w: SES event without eventType", ErrMalformed)
	default:
		return Batch{Ignored: 1}, nil
	}
	if len(kinds) == 0 {
		return Batch{}, fmt.Errorf("%w: SES %s event names no recipient", ErrMalformed, typ)
	}
	key, keyErr := keyFromTags(oneTag(e.Mail.Tags, event.TagTenant), oneTag(e.Mail.Tags, event.TagDelivery))
	var b Batch
	for i, kind := range kinds {
		id := snsMessageID
		if len(kinds) > 1 {
			id += "/" + strconv.Itoa(i)
		}
		b.add(ProviderSES, id, key, keyErr, kind)
	}
	return b, nil
}

func repeat(k store.FeedbackKind, n int) []store.FeedbackKind {
	kinds := make([]store.FeedbackKind, n)
	for i := range kinds {
		kinds[i] = k
	}
	return kinds
}

// oneTag returns the tag's value if the mail has exactly one: SES gives
// each tag as a list, and Herald sets each once.
func oneTag(tags map[string][]string, name string) string {
	if v := tags[name]; len(v) == 1 {
		return v[0]
	}
	return ""
}
